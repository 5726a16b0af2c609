"""Short scheduler time slices for a background thread that shares a core with the event loop.

Linux's EEVDF scheduler (6.6+) lets the task it picked run out its time slice (about 1.4 ms by
default) before a task that just woke up gets the core, unless the sleeper asked for a shorter
slice. A database thread writing a usage batch would keep a request that arrived meanwhile
waiting for up to that long. Since Linux 6.12 a thread can ask for its own slice length
(``sched_attr.sched_runtime`` for a normal-policy task; 0.1 to 100 ms). The request changes no
priority or share of the CPU, so the thread is never starved: it just gives way sooner. It needs
no privilege; on other systems :func:`request_short_slices` does nothing and says so.

There is no ``os.sched_setattr``, so the system call goes through ``ctypes``
(docs/decisions/013-short-slices-for-the-database-thread.md).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import re
import struct
import sys
import threading

logger = logging.getLogger(__name__)

SHORT_SLICE_NS = 100_000  # the shortest slice the kernel accepts
_FAIR_POLICIES = (os.SCHED_OTHER, os.SCHED_BATCH) if hasattr(os, "SCHED_BATCH") else ()
_SYSCALL_NUMBERS = {"x86_64": 314, "aarch64": 274}  # sched_setattr
_MIN_KERNEL = (6, 12)
# struct sched_attr up to sched_period (SCHED_ATTR_SIZE_VER0): size, policy, flags, nice,
# priority, runtime, deadline, period.
_SCHED_ATTR = struct.Struct("=IIQiIQQQ")


def kernel_takes_slice_hints(release: str | None = None) -> bool:
    """True on Linux 6.12 or later (``release`` as ``uname -r`` prints it; this machine's by default)."""
    if release is None:
        if not sys.platform.startswith("linux"):
            return False
        release = platform.release()
    found = re.match(r"(\d+)\.(\d+)", release)
    return found is not None and (int(found[1]), int(found[2])) >= _MIN_KERNEL


def request_short_slices(slice_ns: int = SHORT_SLICE_NS) -> bool:
    """Ask for ``slice_ns`` time slices for the calling thread; True when the kernel took them.

    The thread keeps its policy and nice value. False (and nothing changed) on kernels that
    ignore slice hints, on other platforms, for a real-time thread, or when the call is refused
    (a seccomp filter).
    """
    number = _SYSCALL_NUMBERS.get(platform.machine())
    if number is None or not kernel_takes_slice_hints():
        return False
    thread = threading.get_native_id()
    try:
        policy = os.sched_getscheduler(thread)
        if policy not in _FAIR_POLICIES:
            return False
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        # sched_setattr also sets the policy and nice value: pass the thread's own, so they stay.
        packed = _SCHED_ATTR.pack(_SCHED_ATTR.size, policy, 0, nice, 0, slice_ns, 0, 0)
        attr = ctypes.create_string_buffer(packed)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(number, thread, attr, 0) != 0:
            error = ctypes.get_errno()
            logger.debug("sched_setattr refused (%s); default time slices", os.strerror(error))
            return False
    except (OSError, AttributeError) as exc:
        logger.debug("sched_setattr unavailable (%s); default time slices", exc)
        return False
    return True
