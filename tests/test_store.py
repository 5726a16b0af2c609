"""The store on real databases: every test runs on SQLite and on Postgres (``database_url``)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from aistats_gateway.ids import new_generation_id
from aistats_gateway.store.db import create_engine, default_sqlite_url
from aistats_gateway.store.migrate import current_revision, head_revision, migrate
from aistats_gateway.store.postgres_thread import ThreadedPostgresStore
from aistats_gateway.store.records import Charge, GenerationRecord
from aistats_gateway.store.repositories import AlreadyExists, NotFound, Store
from aistats_gateway.store.tables import ALL_TABLES, metadata

T = TypeVar("T")


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Store]:
    """SQLite through SQLAlchemy (the direct path has tests/test_direct_sqlite.py), Postgres as the
    server runs it: batches on the store's own thread and connection (postgres_thread.py)."""
    engine = create_engine(url)
    store = ThreadedPostgresStore(engine) if engine.dialect.name == "postgresql" else Store(engine)
    try:
        await migrate(engine)
        yield store
    finally:
        if isinstance(store, ThreadedPostgresStore):
            await store.close()
        await engine.dispose()


def with_store(url: str, body: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``body(store)`` on a freshly migrated store, in a new event loop."""

    async def main() -> T:
        async with open_store(url) as store:
            return await body(store)

    return asyncio.run(main())


def make_record(
    workspace_id: str, *, key_id: str | None = "k" * 12, cost: int = 0, **extra: Any
) -> GenerationRecord:
    fields: dict[str, Any] = {
        "id": new_generation_id(),
        "workspace_id": workspace_id,
        "key_id": key_id,
        "endpoint": "chat",
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "upstream_model": "gpt-4o-mini",
        "status": "completed",
        "streamed": False,
        "finish_reason": "stop",
        "input_tokens": 10,
        "cached_input_tokens": 2,
        "output_tokens": 5,
        "reasoning_tokens": 1,
        "cost_nano": cost,
        "latency_ms": 120,
        "ttft_ms": None,
        "error": None,
        "created_at": datetime.now(UTC).replace(microsecond=0),
    }
    fields.update(extra)
    return GenerationRecord(**fields)


def charge_for(record: GenerationRecord) -> Charge:
    return Charge(generation_id=record.id, workspace_id=record.workspace_id, amount_nano=record.cost_nano)


# -- migrations --------------------------------------------------------------------------------


def _schema_diff(connection: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


def test_migrate_creates_every_table_matching_the_metadata_and_is_idempotent(database_url: str) -> None:
    async def main() -> None:
        engine = create_engine(database_url)
        try:
            assert await current_revision(engine) is None
            await migrate(engine)
            await migrate(engine)  # second run: nothing to do, no error
            assert await current_revision(engine) == head_revision() is not None
            async with engine.connect() as conn:
                names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
                assert set(ALL_TABLES) <= names
                # The migration and tables.py describe the same schema.
                assert await conn.run_sync(_schema_diff) == []
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_concurrent_migrations_from_separate_engines_all_succeed(database_url: str) -> None:
    async def main() -> None:
        engines = [create_engine(database_url) for _ in range(4)]
        try:
            results = await asyncio.gather(*(migrate(engine) for engine in engines), return_exceptions=True)
            assert results == [None] * len(engines)
            assert await current_revision(engines[0]) == head_revision()
        finally:
            for engine in engines:
                await engine.dispose()

    asyncio.run(main())


def test_sqlite_engine_creates_its_directory_and_uses_wal_busy_timeout_and_foreign_keys(
    tmp_path: Path,
) -> None:
    url = default_sqlite_url(tmp_path / "nested" / "data")
    assert url.endswith("/nested/data/gateway.db")

    async def main() -> tuple[str, int, int]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
                timeout = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one()
                foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
                return journal, timeout, foreign_keys
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == ("wal", 5000, 1)
    assert (tmp_path / "nested" / "data" / "gateway.db").is_file()


def test_create_engine_rejects_an_unsupported_database() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        create_engine("mysql://localhost/db")


# -- workspaces --------------------------------------------------------------------------------


def test_workspace_names_are_unique_and_ensure_workspace_is_idempotent(database_url: str) -> None:
    async def body(store: Store) -> None:
        team = await store.create_workspace("team")
        assert team.id.startswith("ws_") and team.id == team.id.lower() and len(team.id) == 29
        assert team.created_at.tzinfo is not None
        with pytest.raises(AlreadyExists):
            await store.create_workspace("team")

        default = await store.ensure_workspace("default")
        assert await store.ensure_workspace("default") == default
        assert await store.ensure_workspace("team") == team

        assert await store.find_workspace("team") == team
        assert await store.find_workspace(team.id) == team
        assert await store.find_workspace("nope") is None
        assert {w.name for w in await store.list_workspaces()} == {"team", "default"}

        for workspace in (team, default):
            wallet = await store.get_wallet(workspace.id)
            assert (wallet.balance_nano, wallet.granted_total_nano, wallet.spent_total_nano) == (0, 0, 0)

    with_store(database_url, body)


def test_concurrent_ensure_workspace_creates_one_workspace(database_url: str) -> None:
    async def body(store: Store) -> None:
        results = await asyncio.gather(*(store.ensure_workspace("default") for _ in range(8)))
        assert len({w.id for w in results}) == 1
        assert len(await store.list_workspaces()) == 1

    with_store(database_url, body)


# -- API keys ----------------------------------------------------------------------------------


def test_api_keys_insert_list_load_and_revoke(database_url: str) -> None:
    async def body(store: Store) -> None:
        first = await store.ensure_workspace("default")
        second = await store.create_workspace("other")
        a = await store.insert_api_key("aaaaaaaaaaaa", first.id, "ci", "hash-a")
        b = await store.insert_api_key("bbbbbbbbbbbb", second.id, None, "hash-b")
        with pytest.raises(AlreadyExists):
            await store.insert_api_key("aaaaaaaaaaaa", first.id, None, "hash-x")
        with pytest.raises(NotFound):
            await store.insert_api_key("cccccccccccc", "ws_missing", None, "hash-c")

        assert await store.get_api_key("aaaaaaaaaaaa") == a
        assert a.revoked_at is None and a.created_at.tzinfo is not None
        assert [k.kid for k in await store.list_api_keys()] == [a.kid, b.kid]
        assert [k.kid for k in await store.list_api_keys(second.id)] == [b.kid]
        assert await store.count_api_keys() == 2

        assert await store.revoke_api_key(a.kid) is True
        assert await store.revoke_api_key(a.kid) is False  # already revoked
        assert await store.revoke_api_key("zzzzzzzzzzzz") is False  # unknown
        revoked = await store.get_api_key(a.kid)
        assert revoked is not None and revoked.revoked_at is not None

        assert [k.kid for k in await store.load_api_keys()] == [b.kid]
        assert len(await store.list_api_keys()) == 2  # revoked keys are still listed
        assert await store.count_api_keys() == 2

    with_store(database_url, body)


# -- wallets and ledger ------------------------------------------------------------------------


def test_grant_credits_updates_wallet_and_ledger_together(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        wallet = await store.grant_credits(ws.id, 5_000_000_000, note="first top-up")
        assert (wallet.balance_nano, wallet.granted_total_nano, wallet.spent_total_nano) == (
            5_000_000_000,
            5_000_000_000,
            0,
        )
        await store.grant_credits(ws.id, 250)
        assert await store.get_wallet(ws.id) == wallet.__class__(ws.id, 5_000_000_250, 5_000_000_250, 0)

        ledger = await store.list_ledger(ws.id)
        assert [(e["kind"], e["amount_nano"], e["note"], e["generation_id"]) for e in ledger] == [
            ("grant", 5_000_000_000, "first top-up", None),
            ("grant", 250, None, None),
        ]
        assert await store.ledger_sum(ws.id) == 5_000_000_250

        for bad in (0, -1):
            with pytest.raises(ValueError):
                await store.grant_credits(ws.id, bad)
        with pytest.raises(NotFound):
            await store.grant_credits("ws_missing", 1)
        assert await store.ledger_sum(ws.id) == 5_000_000_250  # failed grants left no entry
        assert [w.workspace_id for w in await store.load_wallets()] == [ws.id]

    with_store(database_url, body)


def test_write_batch_charges_a_generation_once_however_often_it_is_written(database_url: str) -> None:
    async def body(store: Store) -> None:
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
        assert await store.get_generation(record.id) == record
        assert (await store.key_usage(record.key_id or ""))["requests"] == 1

    with_store(database_url, body)


def test_zero_cost_generation_still_gets_its_ledger_entry(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        record = make_record(ws.id, cost=0, model="google/gemma-3-27b:free")
        await store.write_batch([record], [charge_for(record)])
        entries = await store.list_ledger(ws.id)
        assert [(e["kind"], e["amount_nano"], e["generation_id"]) for e in entries] == [
            ("charge", 0, record.id)
        ]
        assert await store.get_wallet(ws.id) == (await store.load_wallets())[0]
        assert (await store.get_wallet(ws.id)).balance_nano == 0

    with_store(database_url, body)


def test_ledger_sum_equals_the_balance_across_grants_and_charges(database_url: str) -> None:
    async def body(store: Store) -> None:
        a = await store.ensure_workspace("a")
        b = await store.ensure_workspace("b")
        await store.grant_credits(a.id, 10_000)
        await store.grant_credits(b.id, 7_000)
        rng = random.Random(7)
        for _ in range(5):
            records = [make_record(rng.choice((a.id, b.id)), cost=rng.randrange(0, 300)) for _ in range(20)]
            await store.write_batch(records, [charge_for(r) for r in records])
        for ws in (a, b):
            wallet = await store.get_wallet(ws.id)
            assert await store.ledger_sum(ws.id) == wallet.balance_nano
            assert wallet.balance_nano == wallet.granted_total_nano - wallet.spent_total_nano
            assert wallet.spent_total_nano > 0

    with_store(database_url, body)


def test_concurrent_write_batches_with_overlapping_charges_never_double_charge(database_url: str) -> None:
    async def body(store: Store) -> None:
        a = await store.ensure_workspace("a")
        b = await store.ensure_workspace("b")
        records = [make_record((a.id, b.id)[i % 2], cost=100 + i) for i in range(60)]
        charges = [charge_for(r) for r in records]
        rng = random.Random(3)

        async def writer() -> None:
            picked = rng.sample(range(len(records)), 40)  # overlapping subsets, shuffled order
            await store.write_batch([records[i] for i in picked], [charges[i] for i in picked])

        await asyncio.gather(*(writer() for _ in range(6)))
        await store.write_batch(records, charges)  # make sure every record was written once

        for ws in (a, b):
            mine = [c for c in charges if c.workspace_id == ws.id]
            wallet = await store.get_wallet(ws.id)
            assert wallet.spent_total_nano == sum(c.amount_nano for c in mine)
            assert wallet.balance_nano == -wallet.spent_total_nano == await store.ledger_sum(ws.id)
            generation_ids = [e["generation_id"] for e in await store.list_ledger(ws.id)]
            assert sorted(generation_ids) == sorted(c.generation_id for c in mine)

    with_store(database_url, body)


# -- generations -------------------------------------------------------------------------------


def test_generation_round_trips_and_key_usage_aggregates(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        other_tz = timezone(timedelta(hours=5))
        first = make_record(ws.id, key_id="key000000001", cost=10, streamed=True, ttft_ms=42)
        second = make_record(
            ws.id,
            key_id="key000000001",
            cost=2**40,  # does not fit in 32 bits
            input_tokens=7,
            output_tokens=3,
            status="failed",
            error="upstream 500",
            created_at=datetime(2025, 1, 2, 8, 0, tzinfo=other_tz),
        )
        third = make_record(ws.id, key_id="key000000002", cost=5)
        await store.write_batch([first, second, third], [])

        assert await store.get_generation(first.id) == first
        stored = await store.get_generation(second.id)
        assert stored is not None
        assert stored.created_at == second.created_at and stored.created_at.utcoffset() == timedelta(0)
        assert (stored.error, stored.cost_nano, stored.status) == ("upstream 500", 2**40, "failed")
        assert await store.get_generation(new_generation_id()) is None

        assert await store.key_usage("key000000001") == {
            "requests": 2,
            "cost_nano": 10 + 2**40,
            "input_tokens": 10 + 7,
            "output_tokens": 5 + 3,
        }
        assert await store.key_usage("unknown") == {
            "requests": 0,
            "cost_nano": 0,
            "input_tokens": 0,
            "output_tokens": 0,
        }
        assert await store.ledger_sum(ws.id) == 0  # no charges were given

    with_store(database_url, body)


# -- meta --------------------------------------------------------------------------------------


def test_claim_flag_is_true_for_exactly_one_caller(database_url: str) -> None:
    async def body(store: Store) -> None:
        results = await asyncio.gather(*(store.claim_flag("bootstrap_key_printed") for _ in range(6)))
        assert sorted(results) == [False] * 5 + [True]
        assert await store.claim_flag("bootstrap_key_printed") is False
        assert await store.claim_flag("another_flag") is True

    with_store(database_url, body)


def test_a_second_engine_sees_committed_writes(database_url: str) -> None:
    """Each Store method commits its own transaction (other processes see it at once)."""

    async def main() -> None:
        async with open_store(database_url) as store:
            ws = await store.ensure_workspace("default")
            await store.grant_credits(ws.id, 99)
            other = create_engine(database_url)
            try:
                async with other.connect() as conn:
                    balance = (
                        await conn.execute(
                            text("SELECT balance_nano FROM wallets WHERE workspace_id = :w"), {"w": ws.id}
                        )
                    ).scalar_one()
                assert balance == 99
            finally:
                await other.dispose()

    asyncio.run(main())
