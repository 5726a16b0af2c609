"""The SQLite store's dedicated-thread path (store/direct_sqlite.py) against the SQLAlchemy one.

Both write the same database file format: rows written by one are read back identically by the
other, and the batch contract (one transaction, idempotent, a charge moves the wallet once) holds.
"""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aistats_gateway.pipeline.auth import KeyCache
from aistats_gateway.store.db import close_store, create_engine, create_store
from aistats_gateway.store.direct_sqlite import DirectSqliteStore
from aistats_gateway.store.isolation import is_data_error
from aistats_gateway.store.migrate import migrate
from aistats_gateway.store.records import Charge
from aistats_gateway.store.repositories import Store
from aistats_gateway.store.short_slices import SHORT_SLICE_NS, kernel_takes_slice_hints
from aistats_gateway.store.sqlite_writer import (
    RecordsRefused,
    SqliteWriterProcess,
    WriterAddress,
)

from .test_short_slices import thread_slice_ns
from .test_store import charge_for, make_record

T = TypeVar("T")
EPOCH = "2026-01-01 00:00:00.000000"
SQLITE_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")


# Where batches are written: by the store's own thread, or by the writer process that
# `serve --workers N` starts (docs/decisions/011). Both must keep the same contract.
WRITERS = ["thread", "process"]


def with_direct(path: Path, body: Callable[[DirectSqliteStore], Awaitable[T]], writer: str = "thread") -> T:
    """``body(store)`` on a freshly migrated SQLite file through :func:`create_store`."""
    url = f"sqlite+aiosqlite:///{path}"

    async def migrated() -> None:
        engine = create_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    async def main(address: WriterAddress | None) -> T:
        store = create_store(url, address)
        assert isinstance(store, DirectSqliteStore)
        try:
            return await body(store)
        finally:
            await close_store(store)

    asyncio.run(migrated())
    if writer == "thread":
        return asyncio.run(main(None))
    process = SqliteWriterProcess(str(path))
    try:
        return asyncio.run(main(process.start()))
    finally:
        process.stop()


def raw_rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(query).fetchall()


def test_create_store_uses_the_direct_path_only_for_a_sqlite_file(tmp_path: Path) -> None:
    async def main() -> None:
        on_file = create_store(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
        in_memory = create_store("sqlite+aiosqlite:///:memory:")
        assert isinstance(on_file, DirectSqliteStore)
        assert type(in_memory) is Store
        for store in (on_file, in_memory):
            await close_store(store)

    asyncio.run(main())


@pytest.mark.parametrize("writer", WRITERS)
def test_batches_are_stored_exactly_as_the_sqlalchemy_path_stores_them(tmp_path: Path, writer: str) -> None:
    """Same records and charges through both paths: identical generation rows, ledger and wallets."""
    created = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)  # microsecond 0: still printed
    other_zone = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))

    def batch(workspace_id: str) -> tuple[list[Any], list[Charge]]:
        records = [
            make_record(
                workspace_id,
                cost=1_500,
                id="gen_a",
                created_at=created,
                attempts=[{"provider": "é", "status": 200, "latency_ms": 3}],
            ),
            make_record(
                workspace_id,
                cost=0,
                id="gen_b",
                created_at=other_zone,
                streamed=True,
                usage_estimated=True,
                key_id=None,
                error="x",
                finish_reason=None,
            ),
        ]
        return records, [charge_for(r) for r in records]

    async def write(store: Store) -> None:
        # Same workspace id in both files, so the rows can be compared whole.
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO workspaces (id, name, created_at) VALUES ('ws_same', 'same', ?)", (EPOCH,)
            )
            await conn.exec_driver_sql(
                "INSERT INTO wallets (workspace_id, balance_nano, granted_total_nano, spent_total_nano, "
                "updated_at) VALUES ('ws_same', 0, 0, 0, ?)",
                (EPOCH,),
            )
        await store.grant_credits("ws_same", 10_000)
        await store.write_batch(*batch("ws_same"))

    async def through_sqlalchemy() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'orm.db'}")
        try:
            await migrate(engine)
            await write(Store(engine))
        finally:
            await engine.dispose()

    asyncio.run(through_sqlalchemy())
    with_direct(tmp_path / "direct.db", write, writer)

    def snapshot(path: Path) -> dict[str, Any]:
        return {
            "generations": raw_rows(path, "SELECT * FROM generations ORDER BY id"),
            "ledger": raw_rows(
                path,
                "SELECT workspace_id, kind, amount_nano, generation_id, note FROM ledger_entries ORDER BY id",
            ),
            "wallets": raw_rows(
                path, "SELECT workspace_id, balance_nano, granted_total_nano, spent_total_nano FROM wallets"
            ),
            "timestamps": raw_rows(
                path, "SELECT created_at FROM ledger_entries UNION ALL SELECT updated_at FROM wallets"
            ),
        }

    orm, direct = snapshot(tmp_path / "orm.db"), snapshot(tmp_path / "direct.db")
    assert direct["generations"] == orm["generations"]
    assert direct["generations"][0][18] == "2026-11-26 10:00:00.000000"
    assert direct["generations"][1][18] == "2026-11-26 10:00:00.123456"  # stored in UTC
    assert direct["ledger"] == orm["ledger"]
    assert direct["wallets"] == orm["wallets"] == [("ws_same", 8_500, 10_000, 1_500)]
    assert all(SQLITE_TIMESTAMP.match(value) for (value,) in direct["timestamps"])


@pytest.mark.parametrize("writer", WRITERS)
def test_a_generation_is_charged_once_however_often_it_is_written(tmp_path: Path, writer: str) -> None:
    async def body(store: DirectSqliteStore) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 1_000_000)
        record = make_record(ws.id, cost=1_234)
        charge = charge_for(record)

        await store.write_batch([record], [charge])
        await store.write_batch([record], [charge])  # a retried batch
        await store.write_batch([record, record], [charge, charge])  # duplicated inside a batch

        wallet = await store.get_wallet(ws.id)
        assert (wallet.balance_nano, wallet.spent_total_nano) == (1_000_000 - 1_234, 1_234)
        charges = [e for e in await store.list_ledger(ws.id) if e["kind"] == "charge"]
        assert [(e["amount_nano"], e["generation_id"]) for e in charges] == [(-1_234, record.id)]
        assert await store.get_generation(record.id) == record  # read back through SQLAlchemy

    with_direct(tmp_path / "g.db", body, writer)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_failing_batch_writes_nothing_and_its_retry_writes_it_once(tmp_path: Path, writer: str) -> None:
    """A charge for an unknown workspace breaks the foreign key: the whole batch rolls back."""

    async def body(store: DirectSqliteStore) -> None:
        ws = await store.ensure_workspace("default")
        good = make_record(ws.id, cost=10)
        orphan = make_record("ws_missing", cost=5)
        # The writer process sends the error back as text: "IntegrityError: FOREIGN KEY ...",
        # marked as a refusal of the data, so the usage writer splits the batch (store/isolation.py).
        with pytest.raises((sqlite3.IntegrityError, RecordsRefused), match="FOREIGN KEY") as refused:
            await store.write_batch([good, orphan], [charge_for(good), charge_for(orphan)])
        assert is_data_error(refused.value)
        assert raw_rows(store_path, "SELECT count(*) FROM generations") == [(0,)]
        assert raw_rows(store_path, "SELECT count(*) FROM ledger_entries") == [(0,)]

        await store.write_batch([good, orphan], [charge_for(good)])
        await store.write_batch([good, orphan], [charge_for(good)])
        assert raw_rows(store_path, "SELECT count(*) FROM generations") == [(2,)]
        assert (await store.get_wallet(ws.id)).spent_total_nano == 10

    store_path = tmp_path / "g.db"
    with_direct(store_path, body, writer)


@pytest.mark.parametrize("writer", WRITERS)
def test_ledger_sum_equals_the_balance_after_concurrent_overlapping_batches(
    tmp_path: Path, writer: str
) -> None:
    async def body(store: DirectSqliteStore) -> None:
        a = await store.ensure_workspace("a")
        b = await store.ensure_workspace("b")
        await store.grant_credits(a.id, 100_000)
        records = [make_record((a.id, b.id)[i % 2], cost=100 + i) for i in range(60)]
        charges = [charge_for(r) for r in records]
        rng = random.Random(3)

        async def one_batch() -> None:
            picked = rng.sample(range(len(records)), 40)
            await store.write_batch([records[i] for i in picked], [charges[i] for i in picked])

        # The SQLAlchemy path writes into the same file at the same time (another process's writer).
        plain = Store(store.engine)
        await asyncio.gather(*(one_batch() for _ in range(4)), plain.write_batch(records[:30], charges[:30]))
        await store.write_batch(records, charges)
        for ws in (a, b):
            mine = [c for c in charges if c.workspace_id == ws.id]
            wallet = await store.get_wallet(ws.id)
            assert wallet.spent_total_nano == sum(c.amount_nano for c in mine)
            assert wallet.balance_nano == await store.ledger_sum(ws.id)
            assert wallet.balance_nano == wallet.granted_total_nano - wallet.spent_total_nano

    with_direct(tmp_path / "g.db", body, writer)


def test_batches_run_on_one_thread_that_is_not_the_event_loop(tmp_path: Path) -> None:
    seen: list[int] = []

    async def body(store: DirectSqliteStore) -> None:
        ws = await store.ensure_workspace("default")

        def traced(db: sqlite3.Connection) -> None:
            db.set_trace_callback(lambda _statement: seen.append(threading.get_ident()))

        await store._run(traced)
        for _ in range(3):
            record = make_record(ws.id, cost=1)
            await store.write_batch([record], [charge_for(record)])
        await store.load_wallets()
        assert seen and set(seen) != {threading.get_ident()}
        assert len(set(seen)) == 1
        (thread,) = set(seen)
        assert thread != threading.get_ident()

    with_direct(tmp_path / "g.db", body)


@pytest.mark.skipif(not kernel_takes_slice_hints(), reason="slice hints need Linux 6.12+")
def test_the_database_thread_runs_with_short_slices_and_the_loop_with_the_default(tmp_path: Path) -> None:
    """A request that wakes while a batch is being written waits at most one short slice."""
    slices: dict[str, int] = {}

    async def body(store: DirectSqliteStore) -> None:
        ws = await store.ensure_workspace("default")
        await store.write_batch([make_record(ws.id)], [])
        slices["database"] = await store._run(lambda _: thread_slice_ns())
        slices["loop"] = thread_slice_ns()

    with_direct(tmp_path / "g.db", body)
    if not slices["database"]:
        pytest.skip("this kernel does not show slices in /proc/thread-self/sched")
    assert slices["database"] == SHORT_SLICE_NS
    assert slices["loop"] > SHORT_SLICE_NS


def test_keys_and_wallets_load_like_the_sqlalchemy_path_and_unchanged_keys_are_reused(
    tmp_path: Path,
) -> None:
    async def body(store: DirectSqliteStore) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 5_000)
        await store.insert_api_key("aaaaaaaaaaaa", ws.id, "one", "ab" * 32, limits={"rpm": 5})
        await store.insert_api_key("bbbbbbbbbbbb", ws.id, None, "cd" * 32, kind="management")
        plain = Store(store.engine)

        first = await store.load_api_keys()
        by_kid = {row.kid: row for row in await plain.load_api_keys()}
        assert {row.kid: row for row in first} == by_kid
        assert await store.load_wallets() == await plain.load_wallets()

        cache = KeyCache(b"pepper")
        cache.replace(first)
        entry = cache._keys["aaaaaaaaaaaa"]
        again = await store.load_api_keys()
        assert again is first  # nothing changed: no rows parsed again
        cache.replace(again)
        assert cache._keys["aaaaaaaaaaaa"] is entry  # and the cache kept its entry

        assert await store.revoke_api_key("bbbbbbbbbbbb")
        after = await store.load_api_keys()
        assert [row.kid for row in after] == ["aaaaaaaaaaaa"]
        cache.replace(after)
        assert len(cache) == 1 and cache._keys["aaaaaaaaaaaa"] is entry

    with_direct(tmp_path / "g.db", body)
