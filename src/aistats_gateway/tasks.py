"""Stopping background tasks reliably.

A cancellation can be swallowed on its way through a library: on Python 3.11 a cancel that
races redis-py's socket timeout comes out as ``TimeoutError``, which a sync loop treats as an
outage and carries on. ``await task`` after one ``cancel()`` then never returns and shutdown
hangs. :func:`cancel_and_wait` cancels again until the task is really done, with a bound.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[object] | asyncio.Task[None], timeout_s: float = 5.0) -> None:
    """Cancel ``task`` (repeatedly, if it swallows cancellation) and wait for it, at most ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error("background task %s did not stop within %.1fs", task.get_name(), timeout_s)
            return
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.1, remaining))
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s ended with an error", task.get_name(), exc_info=task.exception())
