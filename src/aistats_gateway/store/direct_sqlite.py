"""The SQLite store's background work on its own thread, through the raw ``sqlite3`` driver.

The usage writer's batches and the state refresher's reloads run all the time, next to the
requests. Through SQLAlchemy + aiosqlite each statement costs setup on the event loop (bind
processing per row, result metadata, a thread hop per call), and a batch of a few hundred rows
held the loop for milliseconds: that was most of the gateway's added p99 at one connection
(docs/decisions/009-background-database-work-off-the-loop.md). :class:`DirectSqliteStore` keeps
every other query on SQLAlchemy and runs these three on one dedicated thread with its own
``sqlite3`` connection, one thread hop per call:

- :meth:`write_batch`: one transaction (:func:`.sqlite_batches.write_rows`), ``executemany`` in
  chunks of ``YIELD_EVERY_ROWS`` with the core offered back to the event loop between chunks.
  Rows are built lazily while ``executemany`` walks them, and ``sqlite3`` releases the GIL around
  every step, so the thread holds the GIL for one row at a time; on the loop a batch costs a
  dict, a sort and one hop. Under ``serve --workers N`` the thread builds the rows the same way
  and sends them to the writer process instead (:mod:`.sqlite_writer`, decision 011).
- :meth:`load_api_keys` and :meth:`load_wallets`: raw rows; unchanged keys return the very
  same list, so the key cache does not rebuild anything.

Rows are stored exactly as SQLAlchemy stores them (see :mod:`.sqlite_batches`), so both paths read
each other's rows; tests/test_direct_sqlite.py compares the two byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, TypeVar

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from .records import ApiKeyRow, Charge, GenerationRecord, WalletRow, unique_sorted
from .repositories import Store
from .short_slices import request_short_slices
from .sqlite_batches import (
    GENERATION_COLUMNS,
    YIELD_EVERY_ROWS,
    YIELD_EVERY_ROWS_SHORT_SLICES,
    ChargeRow,
    WriterFileLock,
    generation_row,
    open_write_connection,
    write_rows,
)
from .sqlite_writer import WriterAddress, WriterClient, encode_batch
from .tables import api_keys, generations

T = TypeVar("T")

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
assert set(_KEY_COLUMNS) <= {column.name for column in api_keys.c}
assert set(GENERATION_COLUMNS) <= {column.name for column in generations.c}


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _optional_timestamp(text: str | None) -> datetime | None:
    return None if text is None else _timestamp(text)


class DirectSqliteStore(Store):
    """A :class:`Store` whose batch writes and state reloads run on one ``sqlite3`` thread."""

    def __init__(self, engine: AsyncEngine, path: str, writer: WriterAddress | None = None) -> None:
        super().__init__(engine)
        self._path = path
        # With a writer process (``serve``), batches go to it; without one (an app in a test),
        # this store's thread writes them itself.
        self._writer = WriterClient(writer) if writer is not None else None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None  # only touched on the executor's thread
        self._rows_per_yield = YIELD_EVERY_ROWS  # set when the thread opens its connection
        self._file_lock = WriterFileLock(path)
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
            # Opened on the executor's thread: ask for short slices for it (short_slices.py).
            short = request_short_slices()
            self._rows_per_yield = YIELD_EVERY_ROWS_SHORT_SLICES if short else YIELD_EVERY_ROWS
            self._connection = open_write_connection(self._path)
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
        if self._writer is not None:
            self._writer.close()
        self._file_lock.close()

    # -- the usage writer ---------------------------------------------------------------------

    async def write_batch(self, generations_: list[GenerationRecord], charges: list[Charge]) -> None:
        """:meth:`Store.write_batch` (same contract: one transaction, idempotent, safe to retry)."""
        ordered_generations = unique_sorted(generations_, attrgetter("id"))
        ordered_charges = unique_sorted(charges, attrgetter("generation_id"))
        if not ordered_generations and not ordered_charges:
            return
        if self._writer is not None:
            writer = self._writer
            await self._run(lambda _: writer.write(_encoded_batch(ordered_generations, ordered_charges)))
        else:
            await self._run(lambda db: self._write_here(db, ordered_generations, ordered_charges))

    def _write_here(
        self, db: sqlite3.Connection, records: list[GenerationRecord], charges: list[Charge]
    ) -> None:
        with self._file_lock:
            charge_rows = [_charge_tuple(charge) for charge in charges]
            write_rows(db, records, charge_rows, generation_row, self._rows_per_yield)

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


def _charge_tuple(charge: Charge) -> ChargeRow:
    return (charge.generation_id, charge.workspace_id, charge.amount_nano)


def _encoded_batch(records: list[GenerationRecord], charges: list[Charge]) -> bytes:
    """A batch as the writer process takes it: records encoded ``YIELD_EVERY_ROWS`` at a time
    with the core offered back in between (rows are built in the writer process)."""
    chunks = []
    for start in range(0, len(records), YIELD_EVERY_ROWS):
        chunks.append(orjson.dumps(records[start : start + YIELD_EVERY_ROWS]))
        os.sched_yield()
    return encode_batch(chunks, charges)
