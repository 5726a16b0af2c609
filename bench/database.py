"""The database a bench gateway runs on: a fresh SQLite file (the default) or a fresh Postgres
database on the machine's server (``bench/run.py --database postgres``).

Postgres runs on the machine, outside the process tree the bench measures, so its work would
land on whichever core is free, the gateway's included. :class:`PostgresForBench` pins every
Postgres process to the load core while the bench runs (the postmaster too, so new backends
inherit it) and puts the old affinity back afterwards; the gateway's core then holds only the
gateway, as on SQLite. Pinning another user's processes needs root; without it the run goes on
unpinned and says so.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from types import TracebackType

PG_HOST = os.environ.get("AISTATS_BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("AISTATS_BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("AISTATS_BENCH_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("AISTATS_BENCH_PG_DB", "test")


def postgres_pids() -> list[int]:
    """Every running process named ``postgres`` (the postmaster and its backends)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile
    return pids


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_ADMIN_DB, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class PostgresForBench:
    """Fresh databases for the run's gateways, dropped at the end; Postgres pinned to ``core``."""

    def __init__(self, core: int) -> None:
        self._core = core
        self._databases: list[str] = []
        self._affinity: dict[int, set[int]] = {}
        self.note = ""

    def __enter__(self) -> PostgresForBench:
        pids = postgres_pids()
        if not pids:
            raise RuntimeError(f"--database postgres: no postgres process runs here ({PG_HOST}:{PG_PORT})")
        refused = 0
        for pid in pids:
            try:
                self._affinity[pid] = os.sched_getaffinity(pid)
                os.sched_setaffinity(pid, {self._core})
            except PermissionError:
                refused += 1
            except ProcessLookupError:
                continue
        self.note = (
            f"Postgres {PG_HOST}:{PG_PORT} pinned to core {self._core}"
            if not refused
            else f"Postgres {PG_HOST}:{PG_PORT} NOT pinned ({refused} processes refused: not root)"
        )
        return self

    def database_url(self, label: str) -> str:
        """A new empty database for one gateway (migrated by its CLI)."""
        name = f"aistats_bench_{label}_{uuid.uuid4().hex[:8]}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        self._databases.append(name)
        return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for name in self._databases:
            try:
                asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as error:  # the run's results stand; say what was left behind
                print(f"bench: could not drop Postgres database {name}: {error}", flush=True)
        for pid, cores in self._affinity.items():
            try:
                os.sched_setaffinity(pid, cores)
            except (ProcessLookupError, PermissionError):
                continue
        # Backends started during the run inherited the pinned affinity from the postmaster.
        usual = max(self._affinity.values(), key=list(self._affinity.values()).count, default=None)
        for pid in postgres_pids():
            if pid not in self._affinity and usual is not None:
                try:
                    os.sched_setaffinity(pid, usual)
                except (ProcessLookupError, PermissionError):
                    continue
