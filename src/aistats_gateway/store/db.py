"""Async engine creation for the two supported databases: SQLite (aiosqlite) and Postgres (asyncpg)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import URL, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .direct_sqlite import DirectSqliteStore
from .postgres_thread import CONNECT_TIMEOUT_S as PG_CONNECT_TIMEOUT_S
from .postgres_thread import ThreadedPostgresStore
from .records import json_text
from .repositories import Store
from .sqlite_writer import WriterAddress

SQLITE_BUSY_TIMEOUT_MS = 5000
PG_POOL_SIZE = 10
PG_MAX_OVERFLOW = 5

# A bare driver name means "the async driver we ship".
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def default_sqlite_url(data_dir: Path) -> str:
    """The embedded database: ``gateway.db`` in the data dir."""
    return f"sqlite+aiosqlite:///{Path(data_dir).expanduser().resolve() / 'gateway.db'}"


def normalize_url(url: str) -> URL:
    """Parse ``url`` and swap a bare ``sqlite://`` / ``postgresql://`` for the async driver."""
    parsed = make_url(url)
    drivername = _ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    if drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "use sqlite+aiosqlite:///path or postgresql+asyncpg://..."
        )
    return parsed.set(drivername=drivername)


def create_engine(url: str) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url``, configured for the gateway's access pattern.

    SQLite: the parent directory is created; every connection runs in WAL mode with a 5 s
    busy timeout and foreign keys on. Postgres: a bounded, pre-pinged pool.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite_engine(parsed)
    return create_async_engine(
        parsed,
        json_serializer=json_text,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_MAX_OVERFLOW,
        pool_pre_ping=True,
        # A blackholed database host must fail a writer attempt in seconds (so records spill to
        # the spool), not after asyncpg's default 60 s.
        connect_args={"timeout": PG_CONNECT_TIMEOUT_S},
    )


def sqlite_file_path(url: str) -> str | None:
    """The file behind a SQLite ``url`` (None for Postgres, ``:memory:`` and ``file:`` URIs)."""
    parsed = normalize_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if str(database).startswith("file:"):
        return None
    return str(Path(database).expanduser())


def create_store(url: str, sqlite_writer: WriterAddress | None = None) -> Store:
    """The server's :class:`Store` for ``url``.

    On a SQLite file the usage writer's batches and the refresher's reloads run on a dedicated
    ``sqlite3`` thread (:class:`DirectSqliteStore`, docs/decisions/009); with ``sqlite_writer``
    (``serve`` started a writer process, docs/decisions/011) that thread sends the batches to it
    instead of writing them. Every other query, and Postgres entirely, goes through SQLAlchemy.
    Close it with :func:`close_store`.
    """
    engine = create_engine(url)
    path = sqlite_file_path(url)
    if path is not None:
        return DirectSqliteStore(engine, path, sqlite_writer)
    if engine.dialect.name == "postgresql":
        return ThreadedPostgresStore(engine)
    return Store(engine)


async def close_store(store: Store) -> None:
    """Release a store from :func:`create_store`: its dedicated thread, then the engine's pool."""
    if isinstance(store, DirectSqliteStore | ThreadedPostgresStore):
        await store.close()
    await store.engine.dispose()


def _create_sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, json_serializer=json_text)
    event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    return engine


def _switch_to_wal(cursor: Any) -> None:
    """Put the file in WAL mode (persistent), retrying while another process holds the lock.

    SQLite does not apply the busy timeout to a journal-mode change, so two processes opening a
    new database at once can see "database is locked" here; the switch is retried instead.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching a new file to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
