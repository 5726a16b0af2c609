"""One batch of usage records and charges written to a SQLite file with the raw ``sqlite3`` driver.

Used by the worker's database thread (:class:`~.direct_sqlite.DirectSqliteStore`) and by the
writer process of ``serve --workers N`` (:mod:`.sqlite_writer`), so both write the very same
statements. Values are stored exactly as SQLAlchemy stores them on SQLite (UTC timestamps as
``YYYY-MM-DD HH:MM:SS.ffffff``, JSON as :func:`~.records.json_text`, booleans as 0/1). No SQLAlchemy here:
the writer process imports only this.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from .records import GENERATION_COLUMNS, GenerationRecord, json_text

BUSY_TIMEOUT_S = 5.0
_LOCK_POLL_S = 0.001
# On one core the thread's SQL competes with the event loop for the CPU, and the scheduler would
# let a whole batch run its time slice while a request waits: the thread offers the core back
# (sched_yield) after every few rows, so a waiting request runs first.
YIELD_EVERY_ROWS = 32
# With short time slices (store/short_slices.py) offering the core back more often pays: the
# thread's deadline moves by its own short slice per yield, not by the default ~1.4 ms.
YIELD_EVERY_ROWS_SHORT_SLICES = 8
# As Store.write_batch: the record's fields name the columns written.
_ATTEMPTS_INDEX = GENERATION_COLUMNS.index("attempts")
_CREATED_INDEX = GENERATION_COLUMNS.index("created_at")
_BOOL_INDEXES = tuple(GENERATION_COLUMNS.index(name) for name in ("streamed", "usage_estimated"))
_generation_values = attrgetter(*GENERATION_COLUMNS)

_INSERT_GENERATION = (
    f"INSERT INTO generations ({', '.join(GENERATION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(GENERATION_COLUMNS))}) ON CONFLICT (id) DO NOTHING"
)
_INSERT_CHARGE = (
    "INSERT INTO ledger_entries (workspace_id, kind, amount_nano, generation_id, note, created_at) "
    "VALUES (?, 'charge', ?, ?, NULL, ?)"
)
_CHARGE_WALLET = (
    "UPDATE wallets SET balance_nano = balance_nano - ?, spent_total_nano = spent_total_nano + ?, "
    "updated_at = ? WHERE workspace_id = ?"
)
# SQLite's default limit of host parameters in one statement is 32766 (999 before 3.32).
_IN_CHUNK = 500


def sqlite_timestamp(value: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite ``DATETIME`` stores it: UTC, microseconds always."""
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    # isoformat is ~2x faster than strftime; [:26] drops a "+00:00" suffix.
    return value.isoformat(" ", "microseconds")[:26]


def generation_row(record: GenerationRecord) -> tuple[Any, ...]:
    """A record as the ``generations`` row SQLAlchemy would store."""
    return _stored(list(_generation_values(record)))


def generation_row_from_json(record: dict[str, Any]) -> tuple[Any, ...]:
    """The same row from a record that crossed to the writer process as JSON (orjson's form)."""
    row = [record[name] for name in GENERATION_COLUMNS]
    row[_CREATED_INDEX] = datetime.fromisoformat(row[_CREATED_INDEX])
    return _stored(row)


def _stored(row: list[Any]) -> tuple[Any, ...]:
    row[_CREATED_INDEX] = sqlite_timestamp(row[_CREATED_INDEX])
    row[_ATTEMPTS_INDEX] = json_text(row[_ATTEMPTS_INDEX])
    for index in _BOOL_INDEXES:
        row[index] = 1 if row[index] else 0
    return tuple(row)


def open_write_connection(path: str) -> sqlite3.Connection:
    """A ``sqlite3`` connection for batches and reloads (autocommit; transactions are explicit)."""
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    # As db._configure_sqlite_connection: the file is already in WAL mode (migrations ran).
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


class WriterFileLock:
    """An exclusive ``flock`` next to the database, taken around every batch transaction.

    SQLite's own busy handler polls with sleeps growing to 100 ms, so two processes writing
    often can leave one waiting long after the lock is free; this lock is polled every
    millisecond instead, and given up after ``timeout`` seconds (``TimeoutError``: the batch is
    retried like any failed write). Writes through SQLAlchemy (management, jobs) still rely on
    SQLite's busy timeout.
    """

    def __init__(self, database_path: str, timeout: float = BUSY_TIMEOUT_S) -> None:
        self._path = database_path + "-writer.lock"
        self._timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> None:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"another process held {self._path} for {self._timeout:g} s") from None
                time.sleep(_LOCK_POLL_S)

    def __exit__(self, *_: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


ChargeRow = tuple[str, str, int]  # (generation_id, workspace_id, amount_nano)


def write_rows(
    db: sqlite3.Connection,
    generations_: Sequence[Any],
    charges: Sequence[ChargeRow],
    to_row: Callable[[Any], Sequence[Any]] | None = None,
    rows_per_yield: int = YIELD_EVERY_ROWS,
) -> None:
    """One batch in one ``BEGIN IMMEDIATE`` transaction (the write lock is held from the start,
    so the check for charges already written cannot race another writer).

    ``generations_`` are rows in column order, or records that ``to_row`` turns into rows while
    ``executemany`` walks them. Only charges not in the ledger yet are inserted and move wallets.
    The core is offered back (``sched_yield``) after every ``rows_per_yield`` rows.
    """
    now = sqlite_timestamp(datetime.now(UTC))
    db.execute("BEGIN IMMEDIATE")
    try:
        for start in range(0, len(generations_), rows_per_yield):
            chunk = generations_[start : start + rows_per_yield]
            db.executemany(_INSERT_GENERATION, map(to_row, chunk) if to_row is not None else chunk)
            os.sched_yield()
        if charges:
            written = _charged_already(db, [generation_id for generation_id, _, _ in charges])
            new = [charge for charge in charges if charge[0] not in written]
            for start in range(0, len(new), rows_per_yield):
                db.executemany(_INSERT_CHARGE, _charge_rows(new[start : start + rows_per_yield], now))
                os.sched_yield()
            spent: dict[str, int] = {}
            for _, workspace_id, amount_nano in new:
                spent[workspace_id] = spent.get(workspace_id, 0) + amount_nano
            db.executemany(
                _CHARGE_WALLET,
                [(amount, amount, now, workspace) for workspace, amount in sorted(spent.items()) if amount],
            )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _charge_rows(charges: Sequence[ChargeRow], now: str) -> Iterator[tuple[Any, ...]]:
    for generation_id, workspace_id, amount_nano in charges:
        yield (workspace_id, -amount_nano, generation_id, now)


def _charged_already(db: sqlite3.Connection, generation_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(generation_ids), _IN_CHUNK):
        chunk = generation_ids[start : start + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT generation_id FROM ledger_entries WHERE generation_id IN ({marks})"
        found.update(row[0] for row in db.execute(query, chunk))
    return found
