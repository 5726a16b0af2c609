"""Shared fixtures: real databases (SQLite file, Postgres on 127.0.0.1:5432) with skip rules.

A test that needs Postgres is skipped with a visible reason when the server is absent, and
fails instead when ``CI`` is set (DESIGN.md quality rules).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_HOST = os.environ.get("AISTATS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("AISTATS_TEST_PG_PORT", "5432"))
PG_ADMIN_DB = os.environ.get("AISTATS_TEST_PG_DB", "test")
PG_USER = os.environ.get("AISTATS_TEST_PG_USER", "postgres")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or fail under CI) when a real service is not listening."""
    if _port_open(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_ADMIN_DB)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh Postgres database with a random name, dropped after the test."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    name = f"aistats_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on Postgres."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


from tests.e2e_fixtures import fake_server, live  # noqa: E402, F401  (shared end-to-end fixtures)
