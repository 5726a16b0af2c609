"""Short scheduler slices for the database thread (store/short_slices.py), on the real kernel."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from aistats_gateway.store.short_slices import SHORT_SLICE_NS, kernel_takes_slice_hints, request_short_slices

T = TypeVar("T")
needs_slice_hints = pytest.mark.skipif(not kernel_takes_slice_hints(), reason="slice hints need Linux 6.12+")


def thread_slice_ns() -> int:
    """The calling thread's slice from /proc (0 when the kernel does not show it)."""
    sched = Path("/proc/thread-self/sched")
    if not sched.exists():
        return 0
    for line in sched.read_text().splitlines():
        if line.startswith("se.slice"):
            return int(line.split(":")[1])
    return 0


def on_new_thread(work: Callable[[], T]) -> T:
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(work()))
    thread.start()
    thread.join()
    return results[0]


@pytest.mark.parametrize(
    ("release", "takes"),
    [("6.18.44-fc-v657", True), ("6.12.0", True), ("6.11.9-200.fc40.x86_64", False),
     ("5.15.0-91-generic", False), ("7.0.1", True), ("10.2", True), ("unknown", False)],
)  # fmt: skip
def test_slice_hints_are_asked_for_from_linux_6_12_on(release: str, takes: bool) -> None:
    assert kernel_takes_slice_hints(release) is takes


@needs_slice_hints
def test_a_thread_that_asks_gets_short_slices_and_others_keep_theirs() -> None:
    def ask() -> tuple[bool, int]:
        return request_short_slices(), thread_slice_ns()

    taken, slice_ns = on_new_thread(ask)
    assert taken
    if slice_ns:  # shown when the kernel has scheduler debugging
        assert slice_ns == SHORT_SLICE_NS
        assert thread_slice_ns() > SHORT_SLICE_NS, "the calling thread only"


@needs_slice_hints
def test_asking_for_short_slices_keeps_the_thread_nice_value_and_policy() -> None:
    def ask() -> tuple[int, int]:
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, 7)
        os.sched_setscheduler(me, os.SCHED_BATCH, os.sched_param(0))
        assert request_short_slices()
        return os.getpriority(os.PRIO_PROCESS, me), os.sched_getscheduler(me)

    assert on_new_thread(ask) == (7, os.SCHED_BATCH)
