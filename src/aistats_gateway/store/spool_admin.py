"""What an operator does with the spool: see what it holds, and retry refused records.

The gateway replays pending segments by itself; records the database refused on their own are
kept under ``refused/`` for a human (:meth:`.spool.Spool.set_aside`). :func:`retry_refused` writes
them again, one record per transaction (a record still refused does not hold up the others),
through the same idempotent ``Store.write_batch`` the writer uses, so a record that is already
stored, or a retry run twice, changes nothing. Written records leave their file; the others stay
with the database's latest reason. Safe while gateways run: they only ever add new files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import orjson

from .isolation import is_data_error
from .repositories import Store
from .spool import (
    OWNER_PREFIX,
    QUARANTINE_SUFFIX,
    REFUSED_DIR,
    SEGMENT_GLOB,
    SEGMENT_SUFFIX,
    decode_item,
    fsync_dir,
    refused_line,
    try_lock,
)

_RETRY_LOCK = ".retry.lock"


@dataclass(slots=True)
class RefusedFile:
    """One file of ``refused/``."""

    path: Path
    records: int
    unreadable: int  # lines that are not records (kept, never retried)
    reason: str  # the database's reason on its first record
    modified: datetime


@dataclass(slots=True)
class SpoolReport:
    """What a spool root holds."""

    root: Path
    pending_segments: int = 0
    pending_records: int = 0
    pending_bytes: int = 0
    writer_folders: int = 0
    refused: list[RefusedFile] = field(default_factory=list)
    quarantined: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "pending": {
                "segments": self.pending_segments,
                "records": self.pending_records,
                "bytes": self.pending_bytes,
                "writer_folders": self.writer_folders,
            },
            "refused": [
                {
                    "file": str(item.path),
                    "records": item.records,
                    "unreadable_lines": item.unreadable,
                    "reason": item.reason,
                    "modified": item.modified.isoformat(),
                }
                for item in self.refused
            ],
            "quarantined": [str(path) for path in self.quarantined],
        }


def spool_report(root: Path) -> SpoolReport:
    """Count what ``root`` holds; reads only (takes no lock, so a running gateway is not disturbed)."""
    report = SpoolReport(root)
    if not root.is_dir():
        return report
    for folder in sorted(root.glob(f"{OWNER_PREFIX}*")):
        if not folder.is_dir():
            continue
        report.writer_folders += 1
        for segment in sorted(folder.glob(SEGMENT_GLOB)):
            with contextlib.suppress(FileNotFoundError):  # replayed meanwhile
                data = segment.read_bytes()
                report.pending_segments += 1
                report.pending_bytes += len(data)
                report.pending_records += data.count(b"\n")
        report.quarantined.extend(sorted(folder.glob(f"*{QUARANTINE_SUFFIX}")))
    report.refused = [_describe(path) for path in refused_files(root)]
    return report


def refused_files(root: Path) -> list[Path]:
    """The files of ``root/refused``, oldest first (their names are ULIDs)."""
    return sorted((root / REFUSED_DIR).glob(f"*{SEGMENT_SUFFIX}"))


def _describe(path: Path) -> RefusedFile:
    records = unreadable = 0
    reason = ""
    for line in _lines(path):
        try:
            decode_item(line)
        except ValueError:
            unreadable += 1
            continue
        records += 1
        if not reason:
            reason = str(orjson.loads(line).get("error", ""))
    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return RefusedFile(path, records, unreadable, reason, modified)


def _lines(path: Path) -> Iterator[bytes]:
    return (line for line in path.read_bytes().split(b"\n") if line.strip())


@dataclass(slots=True)
class RetryOutcome:
    """What :func:`retry_refused` did to one file."""

    path: Path
    written: int = 0
    still_refused: int = 0
    unreadable: int = 0
    reason: str = ""  # the database's latest reason for a record still refused
    removed: bool = False  # every record was written: the file is gone


class RetryBusy(Exception):
    """Another ``retry-refused`` holds the spool's retry lock."""


class DatabaseUnavailable(Exception):
    """A write failed for a reason other than the record's data (the database is down, locked…);
    ``outcomes`` holds what was done before it (files are saved as they stand)."""

    def __init__(self, error: Exception, outcomes: list[RetryOutcome]) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.outcomes = outcomes


async def retry_refused(store: Store, root: Path, paths: list[Path] | None = None) -> list[RetryOutcome]:
    """Write the records of ``paths`` (default: every file of ``root/refused``) again.

    Raises :class:`RetryBusy` when another retry runs, :class:`DatabaseUnavailable` when the
    database fails for a reason other than a record's data (what was written so far stays written
    and leaves its file).
    """
    with _retry_lock(root):
        outcomes: list[RetryOutcome] = []
        for path in paths if paths is not None else refused_files(root):
            outcome = RetryOutcome(path)
            outcomes.append(outcome)
            keep: list[bytes] = []
            lines = list(_lines(path))
            try:
                for index, line in enumerate(lines):
                    try:
                        record, charge = decode_item(line)
                    except ValueError:
                        outcome.unreadable += 1
                        keep.append(line + b"\n")
                        continue
                    try:
                        await store.write_batch([record], [charge] if charge is not None else [])
                    except Exception as exc:
                        if not is_data_error(exc):
                            keep.extend(item + b"\n" for item in lines[index:])
                            raise DatabaseUnavailable(exc, outcomes) from exc
                        outcome.still_refused += 1
                        outcome.reason = f"{type(exc).__name__}: {exc}"
                        keep.append(refused_line(record, charge, outcome.reason))
                    else:
                        outcome.written += 1
            finally:
                outcome.removed = _save(path, keep)
        return outcomes


def _save(path: Path, lines: list[bytes]) -> bool:
    """Replace ``path`` with ``lines`` durably (write aside, fsync, rename); delete it when empty."""
    if not lines:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return True
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        file.write(b"".join(lines))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)
    return False


@contextlib.contextmanager
def _retry_lock(root: Path) -> Iterator[None]:
    directory = root / REFUSED_DIR
    if not directory.is_dir():
        yield
        return
    handle: IO[bytes] | None = try_lock(directory / _RETRY_LOCK)
    if handle is None:
        raise RetryBusy(f"another retry of {directory} is running")
    try:
        yield
    finally:
        handle.close()
