"""The SQLite store's background work on its own thread, through the raw ``sqlite3`` driver.

The usage writer's batches and the state refresher's reloads run all the time, next to the
requests. Through SQLAlchemy + aiosqlite each statement costs setup on the event loop (bind
processing per row, result metadata, a thread hop per call), and a batch of a few hundred rows
held the loop for milliseconds: that was most of the gateway's added p99 at one connection
(docs/decisions/009-background-database-work-off-the-loop.md). :class:`DirectSqliteStore` keeps
every other query on SQLAlchemy and runs these three on one dedicated thread with its own
``sqlite3`` connection, one thread hop per call:

- :meth:`write_batch`: one ``BEGIN IMMEDIATE`` transaction, ``executemany`` per table in chunks
  of ``YIELD_EVERY_ROWS`` with the core offered back to the event loop between chunks. Rows are
  built lazily while ``executemany`` walks them, and ``sqlite3`` releases the GIL around every
  step, so the thread holds the GIL for one row at a time; on the loop a batch costs a dict, a
  sort and one hop.
- :meth:`load_api_keys` and :meth:`load_wallets`: raw rows; unchanged keys return the very
  same list, so the key cache does not rebuild anything.

Values are stored exactly as SQLAlchemy stores them on SQLite (UTC timestamps as
``YYYY-MM-DD HH:MM:SS.ffffff``, JSON via ``json.dumps``, booleans as 0/1), so both paths read
each other's rows; tests/test_direct_sqlite.py compares the two byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from .records import ApiKeyRow, Charge, GenerationRecord, WalletRow
from .repositories import Store
from .tables import api_keys, generations

T = TypeVar("T")

BUSY_TIMEOUT_S = 5.0
# On one core the thread's SQL competes with the event loop for the CPU, and the scheduler would
# let a whole batch run its time slice while a request waits: the thread offers the core back
# (sched_yield) after every few rows, so a waiting request runs first.
YIELD_EVERY_ROWS = 32
# As Store.write_batch: the record's fields name the columns written.
_GENERATION_COLUMNS = tuple(field.name for field in fields(GenerationRecord))
_ATTEMPTS_INDEX = _GENERATION_COLUMNS.index("attempts")
_CREATED_INDEX = _GENERATION_COLUMNS.index("created_at")
_BOOL_INDEXES = tuple(_GENERATION_COLUMNS.index(name) for name in ("streamed", "usage_estimated"))
_generation_values = attrgetter(*_GENERATION_COLUMNS)

_INSERT_GENERATION = (
    f"INSERT INTO generations ({', '.join(_GENERATION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_GENERATION_COLUMNS))}) ON CONFLICT (id) DO NOTHING"
)
_INSERT_CHARGE = (
    "INSERT INTO ledger_entries (workspace_id, kind, amount_nano, generation_id, note, created_at) "
    "VALUES (?, 'charge', ?, ?, NULL, ?)"
)
_CHARGE_WALLET = (
    "UPDATE wallets SET balance_nano = balance_nano - ?, spent_total_nano = spent_total_nano + ?, "
    "updated_at = ? WHERE workspace_id = ?"
)
_KEY_COLUMNS = (
    "kid",
    "workspace_id",
    "name",
    "secret_hash",
    "created_at",
    "revoked_at",
    "kind",
    "limits",
    "updated_at",
)
_LOAD_KEYS = f"SELECT {', '.join(_KEY_COLUMNS)} FROM api_keys WHERE revoked_at IS NULL ORDER BY kid"
_LOAD_WALLETS = "SELECT workspace_id, balance_nano, granted_total_nano, spent_total_nano FROM wallets"
# SQLite's default limit of host parameters in one statement is 32766 (999 before 3.32).
_IN_CHUNK = 500

assert set(_KEY_COLUMNS) <= {column.name for column in api_keys.c}
assert set(_GENERATION_COLUMNS) <= {column.name for column in generations.c}


def sqlite_timestamp(value: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite ``DATETIME`` stores it: UTC, microseconds always."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _optional_timestamp(text: str | None) -> datetime | None:
    return None if text is None else _timestamp(text)


def _generation_row(record: GenerationRecord) -> tuple[Any, ...]:
    row = list(_generation_values(record))
    row[_CREATED_INDEX] = sqlite_timestamp(row[_CREATED_INDEX])
    row[_ATTEMPTS_INDEX] = json.dumps(row[_ATTEMPTS_INDEX])
    for index in _BOOL_INDEXES:
        row[index] = 1 if row[index] else 0
    return tuple(row)


class DirectSqliteStore(Store):
    """A :class:`Store` whose batch writes and state reloads run on one ``sqlite3`` thread."""

    def __init__(self, engine: AsyncEngine, path: str) -> None:
        super().__init__(engine)
        self._path = path
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None  # only touched on the executor's thread
        self._keys_raw: list[tuple[Any, ...]] | None = None
        self._keys: list[ApiKeyRow] = []
        self._trace: Callable[[str], None] | None = None
        self._traced: Callable[[str], None] | None = None  # the callback the connection has

    @property
    def path(self) -> str:
        return self._path

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on the database thread (one hop each way)."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aistats-sqlite")
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            connection = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            # As db._configure_sqlite_connection: the file is already in WAL mode (migrations ran).
            connection.execute("PRAGMA foreign_keys=ON")
            self._connection = connection
            self._traced = None
        if self._trace is not self._traced:
            self._connection.set_trace_callback(self._trace)
            self._traced = self._trace
        return work(self._connection)

    def trace(self, callback: Callable[[str], None] | None) -> None:
        """Call ``callback(sql)`` for every statement this store's thread runs from its next call
        on (None stops it); like SQLAlchemy's ``before_cursor_execute`` for the other queries."""
        self._trace = callback

    async def close(self) -> None:
        """Close the connection and stop the thread (the next call starts them again)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self._close_connection)
        executor.shutdown(wait=False)

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- the usage writer ---------------------------------------------------------------------

    async def write_batch(self, generations_: list[GenerationRecord], charges: list[Charge]) -> None:
        """:meth:`Store.write_batch` (same contract: one transaction, idempotent, safe to retry)."""
        unique_generations = {record.id: record for record in reversed(generations_)}  # first wins
        unique_charges = {charge.generation_id: charge for charge in reversed(charges)}
        if not unique_generations and not unique_charges:
            return
        ordered_generations = [unique_generations[key] for key in sorted(unique_generations)]
        ordered_charges = [unique_charges[key] for key in sorted(unique_charges)]
        await self._run(lambda db: _write_batch(db, ordered_generations, ordered_charges))

    # -- the state refresher ------------------------------------------------------------------

    async def load_api_keys(self) -> list[ApiKeyRow]:
        """Every non-revoked key; the same list object as last time when nothing changed."""
        raw = await self._run(lambda db: db.execute(_LOAD_KEYS).fetchall())
        if raw != self._keys_raw:
            self._keys = [
                ApiKeyRow(
                    kid=kid,
                    workspace_id=workspace_id,
                    name=name,
                    secret_hash=secret_hash,
                    created_at=_timestamp(created_at),
                    revoked_at=_optional_timestamp(revoked_at),
                    kind=kind,
                    limits=json.loads(limits) if limits is not None else None,
                    updated_at=_optional_timestamp(updated_at),
                )
                for (
                    kid,
                    workspace_id,
                    name,
                    secret_hash,
                    created_at,
                    revoked_at,
                    kind,
                    limits,
                    updated_at,
                ) in raw
            ]
            self._keys_raw = raw
        return self._keys

    async def load_wallets(self) -> list[WalletRow]:
        """Every wallet, in one query."""
        raw = await self._run(lambda db: db.execute(_LOAD_WALLETS).fetchall())
        return [WalletRow(*row) for row in raw]


def _write_batch(db: sqlite3.Connection, records: list[GenerationRecord], charges: list[Charge]) -> None:
    """The batch in one ``BEGIN IMMEDIATE`` transaction (the write lock is held from the start,
    so the check for charges already written cannot race another writer)."""
    now = sqlite_timestamp(datetime.now(UTC))
    db.execute("BEGIN IMMEDIATE")
    try:
        for start in range(0, len(records), YIELD_EVERY_ROWS):
            db.executemany(
                _INSERT_GENERATION, map(_generation_row, records[start : start + YIELD_EVERY_ROWS])
            )
            os.sched_yield()
        if charges:
            written = _charged_already(db, [charge.generation_id for charge in charges])
            new = [charge for charge in charges if charge.generation_id not in written]
            for start in range(0, len(new), YIELD_EVERY_ROWS):
                db.executemany(_INSERT_CHARGE, _charge_rows(new[start : start + YIELD_EVERY_ROWS], now))
                os.sched_yield()
            spent: dict[str, int] = {}
            for charge in new:
                spent[charge.workspace_id] = spent.get(charge.workspace_id, 0) + charge.amount_nano
            db.executemany(
                _CHARGE_WALLET,
                [(amount, amount, now, workspace) for workspace, amount in sorted(spent.items()) if amount],
            )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _charge_rows(charges: list[Charge], now: str) -> Iterator[tuple[Any, ...]]:
    for charge in charges:
        yield (charge.workspace_id, -charge.amount_nano, charge.generation_id, now)


def _charged_already(db: sqlite3.Connection, generation_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(generation_ids), _IN_CHUNK):
        chunk = generation_ids[start : start + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT generation_id FROM ledger_entries WHERE generation_id IN ({marks})"
        found.update(row[0] for row in db.execute(query, chunk))
    return found
