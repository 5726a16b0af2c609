"""The Postgres store's usage batches on their own thread, event loop and asyncpg connection.

A batch is a few hundred rows built and encoded in Python and Cython; on the request loop that
held requests back for ~1.7 ms per batch even in 32-row chunks (docs/decisions/009). Here the
same statements (:mod:`.postgres_batches`) run on a second event loop in a daemon thread with a
connection of its own; the request loop only hands the batch over and awaits the result, as the
SQLite store does with its database thread. Everything else stays on SQLAlchemy's pool.

The connection is opened on first use with the engine's URL, and dropped after any error that is
not the server refusing a statement, so the next batch (the writer retries) reconnects. Every
command has a timeout, so a database that stops answering fails the batch (and the writer spools)
instead of hanging it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import asyncpg
import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine

from . import postgres_batches
from .records import Charge, GenerationRecord
from .repositories import Store

# A blackholed database host must fail a connection attempt in seconds (so records spill to the
# spool), not after asyncpg's default 60 s; the SQLAlchemy pool (db.py) uses the same bound.
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0


class _LoopThread:
    """An event loop running forever on a daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = uvloop.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name=self._name, daemon=True)
                self._thread.start()
            return self._loop

    @property
    def running(self) -> bool:
        return self._loop is not None

    def stop(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)
        if not thread.is_alive():
            loop.close()


class ThreadedPostgresStore(Store):
    """A :class:`Store` whose usage batches run on a dedicated thread with their own connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        # asyncpg takes the libpq-style URL SQLAlchemy was given, without the "+asyncpg" driver.
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._thread = _LoopThread("aistats-postgres")
        self._connection: Any = None  # asyncpg.Connection, only touched on the thread's loop
        self._one_at_a_time: asyncio.Lock | None = None

    async def write_batch(self, generations_: list[GenerationRecord], charges: list[Charge]) -> None:
        """:meth:`Store.write_batch`, same contract, run on the database thread."""
        if not generations_ and not charges:
            return
        future = asyncio.run_coroutine_threadsafe(self._write(generations_, charges), self._thread.loop())
        await asyncio.wrap_future(future)

    async def _write(self, records: list[GenerationRecord], charges: list[Charge]) -> None:
        if self._one_at_a_time is None:  # made here: it belongs to the thread's loop
            self._one_at_a_time = asyncio.Lock()
        async with self._one_at_a_time:  # one connection carries one transaction at a time
            connection = await self._connect()
            try:
                async with connection.transaction():
                    await postgres_batches.write_batch(connection, records, charges)
            except asyncpg.PostgresError:
                raise  # the server refused a statement: rolled back, the connection is fine
            except BaseException:
                await self._drop()  # broken or timed out: the next batch opens a new connection
                raise

    async def _connect(self) -> Any:
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(
                self._dsn, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S
            )
        return self._connection

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def close(self) -> None:
        """Close the batch connection and stop the thread (the next batch starts them again)."""
        if not self._thread.running:
            return
        future = asyncio.run_coroutine_threadsafe(self._close_connection(), self._thread.loop())
        try:
            await asyncio.wrap_future(future)
        finally:
            self._thread.stop()

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        self._one_at_a_time = None  # the next thread's loop makes its own
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                connection.terminate()
