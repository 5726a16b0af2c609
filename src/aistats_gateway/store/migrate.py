"""Schema migrations: upgrade the database to the newest Alembic revision.

No ``alembic.ini`` is needed: the Alembic ``Config`` is built here, pointing at the
``migrations`` directory shipped inside the package.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Postgres advisory lock id held (per transaction) while migrating: b"aistats\x01" as an int64.
MIGRATION_LOCK_KEY = int.from_bytes(b"aistats\x01", "big")


def alembic_config() -> Config:
    """An Alembic ``Config`` for the packaged migrations (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    """The newest revision the packaged migrations know."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the database to head. Idempotent, and safe when several processes start at once.

    Everything runs in one transaction that first takes a migration lock (a transaction-level
    advisory lock on Postgres, ``BEGIN IMMEDIATE`` on SQLite), so a second process waits, then
    finds the schema at head and does nothing.
    """
    async with engine.begin() as conn:
        await _take_migration_lock(conn)
        await conn.run_sync(_upgrade_to_head)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current_revision)


async def _take_migration_lock(conn: AsyncConnection) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif dialect == "sqlite":
        # The sqlite3 driver has not begun a transaction yet (it does so lazily before DML);
        # take the write lock now so the version check and the DDL are atomic together.
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade_to_head(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
