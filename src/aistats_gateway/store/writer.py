"""The batched writer: generation rows and charges are written behind the response, in batches.

The request path calls ``submit`` (synchronous, never touches the database). A background
task collects up to ``max_batch`` items, or whatever arrived within ``max_delay`` of the oldest
one, and writes them with ``Store.write_batch`` in one transaction. A failed batch is kept and
retried with backoff until it is written, so no record is ever dropped; ``write_batch`` is
idempotent, so a retry after an unclear failure cannot charge twice.

Backpressure: when the database is up but slower than the traffic, the queue would grow without
bound (RSS climbing under a sustained load). Above ``high_water`` queued records the request path
waits (:meth:`wait_for_room`) until the writer is back under ``max_batch``, which throttles
intake to what the database can record. While writes are *failing* nobody is held back: the
gateway keeps serving on cached keys and the queue absorbs the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from .records import Charge, GenerationRecord
from .repositories import Store

logger = logging.getLogger(__name__)

# While stopping, retries are bounded in number and each waits at most this long (seconds).
_DRAIN_RETRY_DELAY_CAP = 1.0


class _Item(NamedTuple):
    record: GenerationRecord
    charge: Charge | None
    enqueued_at: float  # time.monotonic()


class BatchedWriter:
    """Writes submitted generation records and charges to the store in batches."""

    def __init__(
        self,
        store: Store,
        max_batch: int = 500,
        max_delay: float = 0.05,
        on_flushed: Callable[[list[Charge]], None] | None = None,
        *,
        retry_initial_delay: float = 0.1,
        retry_max_delay: float = 5.0,
        drain_attempts: int = 5,
        warn_depth: int = 10_000,
        high_water: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._store = store
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._on_flushed = on_flushed
        self._retry_initial_delay = retry_initial_delay
        self._retry_max_delay = retry_max_delay
        self._drain_attempts = drain_attempts
        self._warn_depth = warn_depth
        self._next_warn_depth = warn_depth
        self._high_water = high_water if high_water is not None else 5 * max_batch
        self._room = asyncio.Event()
        self._room.set()
        self._failing = False

        self._queue: deque[_Item] = deque()
        self._in_flight: list[_Item] = []
        self._pending: dict[str, GenerationRecord] = {}
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.flush_count = 0

    # -- request path -------------------------------------------------------------------------

    def submit(self, record: GenerationRecord, charge: Charge | None) -> None:
        """Queue a generation record (and its charge, if any). Never blocks, never drops."""
        self._queue.append(_Item(record, charge, time.monotonic()))
        self._pending[record.id] = record
        queued = len(self._queue)
        if queued == 1 or queued >= self._max_batch:
            self._wakeup.set()
        depth = self.queue_depth
        if depth >= self._high_water and not self._failing:
            self._room.clear()
        if depth >= self._next_warn_depth:
            logger.warning("usage writer is behind: %d records waiting to be written", depth)
            self._next_warn_depth *= 2
        if self._task is None and self._stop_requested.is_set():
            logger.error("record %s submitted to a stopped usage writer; it waits for a restart", record.id)

    def pending(self, generation_id: str) -> GenerationRecord | None:
        """A record that was submitted but is not written yet (None once it is in the database)."""
        return self._pending.get(generation_id)

    @property
    def backlogged(self) -> bool:
        """True while new requests should wait for the writer (see :meth:`wait_for_room`)."""
        return not self._room.is_set()

    async def wait_for_room(self) -> None:
        """Return once the queue is back under one batch (immediately when it is)."""
        await self._room.wait()

    @property
    def queue_depth(self) -> int:
        """Records submitted but not yet committed (queued plus the batch being written)."""
        return len(self._queue) + len(self._in_flight)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Launch the background task (call from inside the running event loop)."""
        if self._task is not None:
            return
        self._stop_requested.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-writer")

    async def stop(self) -> None:
        """Write everything still queued, then stop the background task.

        While draining, a failing batch is retried at most ``drain_attempts`` times; if it
        still fails, the unwritten records stay queued (see ``queue_depth``) and are logged.
        """
        self._stop_requested.set()
        self._wakeup.set()
        if self._task is None:
            if not self._queue:
                return
            self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-writer")
        task, self._task = self._task, None
        await task
        if self.queue_depth:
            logger.error("usage writer stopped with %d records NOT written", self.queue_depth)

    # -- background task ----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            stopping = self._stop_requested.is_set()
            if not self._queue:
                if stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if not stopping and len(self._queue) < self._max_batch:
                wait = self._queue[0].enqueued_at + self._max_delay - time.monotonic()
                if wait > 0:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), wait)
                    continue
            count = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(count)]
            if not await self._write(batch):
                return

    async def _write(self, batch: list[_Item]) -> bool:
        """Write one batch, retrying until it commits; False if draining gave up on it."""
        self._in_flight = batch
        records = [item.record for item in batch]
        charges = [item.charge for item in batch if item.charge is not None]
        delay = self._retry_initial_delay
        failures_while_stopping = 0
        while True:
            try:
                await self._store.write_batch(records, charges)
                break
            except Exception:
                self._failing = True
                self._room.set()  # an outage must not stall serving; the queue absorbs it
                if self._stop_requested.is_set():
                    failures_while_stopping += 1
                    if failures_while_stopping >= self._drain_attempts:
                        logger.exception(
                            "usage writer: giving up on a batch of %d while stopping", len(batch)
                        )
                        self._queue.extendleft(reversed(batch))
                        self._in_flight = []
                        return False
                logger.exception(
                    "usage writer: writing %d records failed; retrying in %.2fs", len(batch), delay
                )
                # Sleep, but wake early when a stop is requested so draining starts promptly.
                if not self._stop_requested.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop_requested.wait(), delay)
                else:
                    await asyncio.sleep(min(delay, _DRAIN_RETRY_DELAY_CAP))
                delay = min(delay * 2, self._retry_max_delay)
        self._in_flight = []
        self._failing = False
        if len(self._queue) <= self._max_batch:
            self._room.set()
        for record in records:
            if self._pending.get(record.id) is record:
                del self._pending[record.id]
        if not self._queue:
            self._next_warn_depth = self._warn_depth
        self.flush_count += 1
        if self._on_flushed is not None:
            try:
                self._on_flushed(charges)
            except Exception:
                logger.exception("usage writer: on_flushed callback failed")
        return True
