"""The on-disk spool: usage records the database could not take yet, kept durably until it can.

Layout under the spool root (``<data_dir>/spool``)::

    w-<ulid>/            one directory per writer (process), created on its first spill
      lock               held with flock(LOCK_EX) while that process lives
      seg-00000001.jsonl append-only segments, one orjson object per line: {"r": record, "c": charge}
    refused/<ulid>.jsonl records the database refused on their own (:meth:`Spool.set_aside`),
                         same lines plus "error"; never replayed automatically, kept for a human
                         (``aistats-gateway spool retry-refused``, store/spool_admin.py)

Each append writes whole lines and fsyncs before returning, so a record reported as spooled
survives a crash. A crash in the middle of an append can leave a torn last line; reading skips
it with a warning and keeps every earlier line. A writer only appends to its own directory;
the directory of a writer that died (its lock is free) is claimed by the next writer that looks
(:meth:`Spool.claim_orphans`) and replayed by it.

Every method does blocking file IO: the batched writer calls them through ``asyncio.to_thread``
(except the tiny ``remove``), and only from its own task, so there is no concurrent use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

import orjson

from ..ids import new_ulid
from .records import Charge, GenerationRecord

try:  # POSIX; without it (Windows) spools of dead processes are not adopted automatically
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
REFUSED_DIR = "refused"
QUARANTINE_SUFFIX = ".bad"  # a segment with a corrupt line in its middle is kept, renamed, for a human
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
OWNER_PREFIX = "w-"  # a writer's folder: w-<ulid>
_LOCK_NAME = "lock"
SEGMENT_GLOB = f"seg-*{SEGMENT_SUFFIX}"  # a writer folder's segments
_GENERATION_FIELDS = frozenset(GenerationRecord.__dataclass_fields__)

SpooledItem = tuple[GenerationRecord, Charge | None]


@dataclass(slots=True)
class Segment:
    """One spool file waiting to be replayed."""

    path: Path
    own: bool  # written by this process (its charges are in this process's unflushed total)
    size: int = 0
    records: int = 0


@dataclass(slots=True)
class SegmentContents:
    """What :meth:`Spool.read` found in a segment."""

    items: list[SpooledItem] = field(default_factory=list)
    torn_tail: bool = False  # the last line was cut short (a crash mid-append): skipped
    corrupt_lines: int = 0  # unreadable lines before the last one: the file is quarantined


def encode_item(record: GenerationRecord, charge: Charge | None) -> bytes:
    """One spool line (with its newline)."""
    return _json_line(record, charge)


def refused_line(record: GenerationRecord, charge: Charge | None, error: str) -> bytes:
    """A line of ``refused/``: a spool line with the database's reason added."""
    return _json_line(record, charge, error=error)


def _json_line(record: GenerationRecord, charge: Charge | None, **extra: str) -> bytes:
    try:
        return orjson.dumps({"r": record, "c": charge, **extra}) + b"\n"
    except TypeError:
        # An integer beyond 64 bits, which orjson does not write: the standard library writes any
        # value, so the record is kept (read back, such a number is a float the database refuses).
        doc = {"r": asdict(record), "c": asdict(charge) if charge is not None else None, **extra}
        return json.dumps(doc, default=str, ensure_ascii=False).encode() + b"\n"


def decode_item(line: bytes) -> SpooledItem:
    """The record and charge of one spool line; ``ValueError`` when the line is not one."""
    try:
        doc = orjson.loads(line)
        raw = doc["r"]
        fields = {name: value for name, value in raw.items() if name in _GENERATION_FIELDS}
        fields["created_at"] = datetime.fromisoformat(fields["created_at"])
        record = GenerationRecord(**fields)
        raw_charge = doc["c"]
        charge = None if raw_charge is None else Charge(**raw_charge)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a spooled usage record: {exc}") from exc
    return record, charge


class Spool:
    """Append-only, fsync'd, size-bounded files of usage records, replayed oldest first."""

    def __init__(self, root: Path, max_bytes: int, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._segment_bytes = max(1, min(segment_bytes, max_bytes))
        self._dir: Path | None = None  # this writer's directory, created on the first append
        self._lock: IO[bytes] | None = None
        self._seq = 0
        self._current: Segment | None = None
        self._current_file: IO[bytes] | None = None
        self._pending: deque[Segment] = deque()  # sealed own segments, oldest first
        self._orphans: deque[Segment] = deque()  # claimed segments of dead writers, oldest first
        self._orphan_dirs: dict[Path, IO[bytes] | None] = {}  # claimed dir -> its held lock
        self._full = False
        self.bytes = 0  # own records not replayed yet (the bound applies to these)
        self.records = 0

    # -- state ----------------------------------------------------------------------------------

    @property
    def has_pending(self) -> bool:
        """Anything on disk to replay (own or claimed from a dead writer)."""
        return bool(self._orphans or self._pending or (self._current is not None and self._current.records))

    @property
    def full(self) -> bool:
        """The last append did not fit whole; stays true until a replayed segment frees room."""
        return self._full

    # -- writing ---------------------------------------------------------------------------------

    def append(self, items: list[SpooledItem]) -> int:
        """Durably append as many of ``items`` as fit under the bound, in order; how many did."""
        lines = [encode_item(record, charge) for record, charge in items]
        index = 0
        while index < len(lines) and self.bytes + len(lines[index]) <= self.max_bytes:
            segment = self._open_segment()
            if segment.size and segment.size + len(lines[index]) > self._segment_bytes:
                self._seal()  # this segment is full, the spool is not: go on in a new one
                continue
            end, size = index, 0
            while end < len(lines):
                grown = size + len(lines[end])
                first_line = segment.size == 0 and size == 0  # an oversized line gets a segment alone
                fits_segment = first_line or segment.size + grown <= self._segment_bytes
                if not fits_segment or self.bytes + grown > self.max_bytes:
                    break
                size, end = grown, end + 1
            assert self._current_file is not None
            try:
                self._current_file.write(b"".join(lines[index:end]))
                self._current_file.flush()
                os.fsync(self._current_file.fileno())
            except OSError:
                # A partial write ends this segment with a torn line (skipped on replay); those
                # records stay with the caller, and the next append starts a new segment.
                self._seal()
                raise
            segment.size += size
            segment.records += end - index
            self.bytes += size
            self.records += end - index
            index = end
            if segment.size >= self._segment_bytes:
                self._seal()
        self._full = index < len(lines)
        return index

    def set_aside(self, items: list[SpooledItem], error: str) -> Path:
        """Durably keep records the database refused on their own, out of the replay queue.

        One new file under ``refused/`` per call, lines as in a segment with the error added;
        they are not counted against ``max_bytes`` and never replayed automatically.
        """
        directory = self.root / REFUSED_DIR
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{new_ulid()}{SEGMENT_SUFFIX}"
        lines = [refused_line(record, charge, error) for record, charge in items]
        with open(path, "xb") as file:
            file.write(b"".join(lines))
            file.flush()
            os.fsync(file.fileno())
        fsync_dir(directory)
        return path

    def _open_segment(self) -> Segment:
        if self._current is not None:
            return self._current
        directory = self._own_dir()
        self._seq += 1
        path = directory / f"seg-{self._seq:08d}{SEGMENT_SUFFIX}"
        self._current_file = open(path, "ab")  # noqa: SIM115 (kept open across appends)
        fsync_dir(directory)
        self._current = Segment(path, own=True)
        return self._current

    def _own_dir(self) -> Path:
        if self._dir is None:
            directory = self.root / f"{OWNER_PREFIX}{new_ulid()}"
            directory.mkdir(parents=True)
            self._lock = open(directory / _LOCK_NAME, "ab")  # noqa: SIM115 (held for the process's life)
            if fcntl is not None:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fsync_dir(self.root)
            self._dir = directory
        return self._dir

    def _seal(self) -> None:
        if self._current_file is not None:
            self._current_file.close()
            self._current_file = None
        if self._current is not None:
            if self._current.records:
                self._pending.append(self._current)
            else:
                self._current.path.unlink(missing_ok=True)
            self._current = None

    def seal(self) -> None:
        """Close the segment being appended to; it becomes replayable (on stop, and by ``next_segment``)."""
        self._seal()

    # -- replay ----------------------------------------------------------------------------------

    def next_segment(self) -> Segment | None:
        """The oldest segment to replay: claimed orphans first, then this writer's own."""
        if self._orphans:
            return self._orphans[0]
        if not self._pending and self._current is not None and self._current.records:
            self._seal()
        return self._pending[0] if self._pending else None

    def read(self, segment: Segment) -> SegmentContents:
        """Decode a segment; a torn last line is skipped, other bad lines are counted."""
        contents = SegmentContents()
        data = segment.path.read_bytes()
        lines = data.split(b"\n")
        # A complete file ends with a newline, so the last element is empty; anything else is torn.
        last = len(lines) - 1
        for index, line in enumerate(lines):
            if not line:
                continue
            try:
                contents.items.append(decode_item(line))
            except ValueError as exc:
                if index == last:
                    contents.torn_tail = True
                    logger.warning(
                        "spool %s: skipped a torn last line (%d bytes; a crash cut it short): %s",
                        segment.path,
                        len(line),
                        exc,
                    )
                else:
                    contents.corrupt_lines += 1
                    logger.error("spool %s: unreadable line %d skipped: %s", segment.path, index + 1, exc)
        return contents

    def remove(self, segment: Segment, *, quarantine: bool = False) -> None:
        """Forget a replayed segment: deleted, or renamed ``*.bad`` when ``quarantine``."""
        if quarantine:
            target = segment.path.with_suffix(segment.path.suffix + QUARANTINE_SUFFIX)
            segment.path.rename(target)
            logger.error("spool segment had unreadable lines; kept for inspection as %s", target)
        else:
            segment.path.unlink(missing_ok=True)
        if self._orphans and self._orphans[0] is segment:
            self._orphans.popleft()
            self._release_finished_orphans()
            return
        if self._pending and self._pending[0] is segment:
            self._pending.popleft()
            self.bytes -= segment.size
            self.records -= segment.records
            self._full = False

    # -- dead writers' spools -------------------------------------------------------------------

    def claim_orphans(self) -> int:
        """Adopt the spool directories of writers that are gone; how many segments that added."""
        if fcntl is None or not self.root.is_dir():
            return 0
        added = 0
        for directory in sorted(self.root.iterdir()):
            if (
                not directory.is_dir()
                or not directory.name.startswith(OWNER_PREFIX)
                or directory == self._dir
                or directory in self._orphan_dirs
            ):
                continue
            lock = try_lock(directory / _LOCK_NAME)
            if lock is None:
                continue  # its writer is alive
            segments = sorted(directory.glob(SEGMENT_GLOB))
            self._orphan_dirs[directory] = lock
            for path in segments:
                self._orphans.append(Segment(path, own=False, size=path.stat().st_size))
            added += len(segments)
            if not segments:
                self._release_finished_orphans()
        return added

    @property
    def orphan_segments(self) -> int:
        return len(self._orphans)

    def _release_finished_orphans(self) -> None:
        busy = {segment.path.parent for segment in self._orphans}
        for directory in [d for d in self._orphan_dirs if d not in busy]:
            lock = self._orphan_dirs.pop(directory)
            # Only the lock file (and quarantined segments, which stay) can be left.
            (directory / _LOCK_NAME).unlink(missing_ok=True)
            if lock is not None:
                lock.close()
            with contextlib.suppress(OSError):  # a quarantined segment is still there
                directory.rmdir()

    def close(self) -> None:
        """Seal the open segment and release every lock: what is left becomes adoptable by anyone.

        Called when the writer stops (the process is about to exit). The directory is removed
        when nothing is left in it; otherwise the next writer to start claims and replays it.
        """
        self._seal()
        if self._dir is not None and not self._pending:
            (self._dir / _LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self._dir.rmdir()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        for lock in self._orphan_dirs.values():
            if lock is not None:
                lock.close()
        self._dir = None
        self._pending.clear()
        self._orphan_dirs.clear()
        self._orphans.clear()
        self.bytes = self.records = 0
        self._full = False


def try_lock(path: Path) -> IO[bytes] | None:
    """The lock file opened and exclusively locked, or None when another process holds it (or it
    cannot be opened). Without ``flock`` (not POSIX) the file is opened but not locked."""
    try:
        handle = open(path, "ab")  # noqa: SIM115 (returned, held by the caller)
    except OSError:
        return None
    if fcntl is None:  # pragma: no cover
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable (POSIX); best effort elsewhere."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def spool_root(data_dir: Path) -> Path:
    """Where the spool of a data dir lives: ``<data_dir>/spool``."""
    return Path(data_dir) / "spool"


def spool_for(data_dir: Path, max_mb: int) -> Spool | None:
    """The spool under ``<data_dir>/spool`` bounded to ``max_mb`` MiB; None when ``max_mb`` is 0."""
    if max_mb <= 0:
        return None
    return Spool(spool_root(data_dir), max_mb * 1024 * 1024)
