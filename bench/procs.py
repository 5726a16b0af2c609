"""Processes of the bench: start them pinned to a core in their own session, measure, stop.

CPU and memory are read from /proc and summed over the whole process tree, because uvicorn,
LiteLLM and nginx may fork workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(root: int) -> float:
    """User + system CPU time of ``root``'s process tree, in seconds (from /proc/<pid>/stat)."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # After the name: state(0) ppid(1) … utime(11) stime(12), i.e. fields 14 and 15 of stat.
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def core_busy_seconds(core: int) -> float:
    """Time core ``core`` ran processes since boot, anyone's (from /proc/stat), in seconds.

    Soft interrupts are left out: on loopback they are mostly the network work of the very
    process under test, which its own /proc/<pid>/stat does not show.
    """
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            user, nice, system = (int(v) for v in line.split()[1:4])
            return (user + nice + system) / CLOCK_TICKS
    raise ValueError(f"no cpu{core} in /proc/stat")


def rss_bytes(root: int) -> int:
    """Resident memory (VmRSS) summed over ``root``'s process tree, in bytes."""
    total = 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def wait_quiet(root: int, *, window: float = 0.5, busy: float = 0.05, limit: float = 120.0) -> float:
    """Wait until ``root``'s tree uses less than ``busy`` of a core over ``window`` seconds.

    Work a target defers past the end of the load (a backlog of usage records, logging, garbage
    collection) is part of what the requests cost. Returns the seconds waited (at most ``limit``).
    """
    started = time.monotonic()
    previous = cpu_seconds(root)
    while time.monotonic() - started < limit:
        time.sleep(window)
        now = cpu_seconds(root)
        if now - previous < busy * window:
            return time.monotonic() - started - window
        previous = now
    return limit


class StartError(RuntimeError):
    """A process of the bench did not start or did not become ready."""


@dataclass
class Proc:
    """One started process (the leader of its own session and process group)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the whole process group, then SIGKILL it if it is still there after ``grace``."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(5)


class ProcessSet:
    """Starts processes and stops every one of them on exit, also when the run fails."""

    def __init__(self) -> None:
        self._procs: list[Proc] = []

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        core: int | str | None,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        """Start ``argv`` (under ``taskset -c core`` when ``core`` is given) in a new session.

        ``core`` is one core or a ``taskset`` list such as ``"0,1"``.
        """
        command = [*(["taskset", "-c", str(core)] if core is not None else []), *argv]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        while self._procs:
            self._procs.pop().stop()


def wait_http(proc: Proc, url: str, timeout: float) -> None:
    """Wait until ``url`` answers any HTTP status; fail early if the process died."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StartError(f"{proc.name} exited with status {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.HTTPError as exc:
            last_error = repr(exc)
        time.sleep(0.2)
    raise StartError(
        f"{proc.name} did not answer {url} within {timeout:g}s ({last_error}):\n{proc.log_tail()}"
    )
