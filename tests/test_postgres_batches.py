"""The Postgres batch through raw asyncpg (store/postgres_batches.py) against the SQLAlchemy one.

Both must store the same rows; the batch contract itself (one transaction, charged once,
concurrent batches) is in tests/test_store.py, which runs on Postgres through this path.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aistats_gateway.store.db import create_engine
from aistats_gateway.store.migrate import migrate
from aistats_gateway.store.postgres_thread import ThreadedPostgresStore
from aistats_gateway.store.records import GenerationRecord

from .test_store import charge_for, make_record

_COLUMNS = (
    "workspace_id, key_id, endpoint, model, provider, upstream_model, status, streamed, finish_reason, "
    "input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nano, latency_ms, ttft_ms, "
    "error, created_at, attempts::text, usage_estimated"
)


def _variants(workspace_id: str, prefix: str) -> list[GenerationRecord]:
    naive = datetime(2026, 11, 26, 10, 0, 0)  # no zone: taken as UTC by both paths
    other_zone = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    return [
        make_record(
            workspace_id,
            cost=1_500,
            id=f"{prefix}1",
            created_at=naive,
            attempts=[{"provider": "é", "status": 200, "latency_ms": 3, "error": None}],
        ),
        make_record(
            workspace_id,
            cost=0,
            id=f"{prefix}2",
            created_at=other_zone,
            streamed=True,
            usage_estimated=True,
            key_id=None,
            error="x",
            finish_reason=None,
        ),
        make_record(
            workspace_id, cost=7, id=f"{prefix}3", created_at=datetime(2026, 1, 1, tzinfo=UTC), attempts=None
        ),
    ]


def test_the_asyncpg_batch_stores_what_the_sqlalchemy_batch_stores(postgres_url: str) -> None:
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        engine = create_engine(postgres_url)
        store = ThreadedPostgresStore(engine)
        try:
            await migrate(engine)
            orm_ws = await store.ensure_workspace("orm")
            raw_ws = await store.ensure_workspace("raw")
            for ws in (orm_ws, raw_ws):
                await store.grant_credits(ws.id, 10_000)
            orm = _variants(orm_ws.id, "gen_orm_")
            raw = _variants(raw_ws.id, "gen_raw_")
            await store._write_batch_sqlalchemy(orm, [charge_for(r) for r in orm])
            await store.write_batch(raw, [charge_for(r) for r in raw])
            await store.write_batch(raw, [charge_for(r) for r in raw])  # a retry changes nothing
            async with engine.connect() as conn:

                async def rows(query: str, ws: str) -> list[Any]:
                    result = await conn.exec_driver_sql(query, (ws,))
                    return [tuple(row[1:]) for row in result]  # without the workspace id

                generations = [
                    await rows(
                        f"SELECT {_COLUMNS} FROM generations WHERE workspace_id = $1 ORDER BY id", ws.id
                    )
                    for ws in (orm_ws, raw_ws)
                ]
                ledger = [
                    await rows(
                        "SELECT workspace_id, kind, amount_nano, right(generation_id, 1), note "
                        "FROM ledger_entries WHERE workspace_id = $1 ORDER BY id",
                        ws.id,
                    )
                    for ws in (orm_ws, raw_ws)
                ]
                wallets = [
                    await rows(
                        "SELECT workspace_id, balance_nano, granted_total_nano, spent_total_nano "
                        "FROM wallets WHERE workspace_id = $1",
                        ws.id,
                    )
                    for ws in (orm_ws, raw_ws)
                ]
            return generations, ledger, wallets
        finally:
            await store.close()
            await engine.dispose()

    generations, ledger, wallets = asyncio.run(main())
    assert generations[0] == generations[1]
    assert len(generations[0]) == 3
    assert generations[0][0][16] == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert generations[0][1][16] == datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
    assert generations[0][2][17] == "null"  # attempts None: JSON null, as SQLAlchemy stores it
    assert ledger[0] == ledger[1]
    assert wallets[0] == wallets[1] == [(10_000 - 1_507, 10_000, 1_507)]


def _with_threaded_store(postgres_url: str, body: Any) -> Any:
    async def main() -> Any:
        engine = create_engine(postgres_url)
        store = ThreadedPostgresStore(engine)
        try:
            await migrate(engine)
            return await body(store)
        finally:
            await store.close()
            await engine.dispose()

    return asyncio.run(main())


def test_postgres_batches_run_on_their_own_thread_and_connection(postgres_url: str) -> None:
    async def body(store: ThreadedPostgresStore) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 1_000)
        record = make_record(ws.id, cost=10)
        await store.write_batch([record], [charge_for(record)])
        async with store.engine.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            connections = (await conn.exec_driver_sql(query)).scalar()
        assert connections is not None and connections >= 2  # the pool's connection and the batch thread's
        assert "aistats-postgres" in {thread.name for thread in threading.enumerate()}
        assert (await store.load_wallets())[0].balance_nano == 990
        await store.close()
        assert "aistats-postgres" not in {thread.name for thread in threading.enumerate()}
        again = make_record(ws.id, cost=5)  # after close, the next batch starts them again
        await store.write_batch([again], [charge_for(again)])
        assert (await store.load_wallets())[0].balance_nano == 985

    _with_threaded_store(postgres_url, body)


def test_a_killed_batch_connection_is_replaced_and_the_batch_lands_once(postgres_url: str) -> None:
    others = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"

    async def body(store: ThreadedPostgresStore) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 1_000)
        first = make_record(ws.id, cost=10)
        await store.write_batch([first], [charge_for(first)])
        async with store.engine.connect() as conn:  # the server drops every other connection
            killed = {row[0] for row in await conn.exec_driver_sql(others)}
            await conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM ({others}) AS o")
            for _ in range(100):  # until they are gone (a new transaction sees a new snapshot)
                await conn.commit()
                if not killed & {row[0] for row in await conn.exec_driver_sql(others)}:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"backends {killed} still running")
        second = make_record(ws.id, cost=20)
        try:  # the dead connection may fail this batch once (then the writer retries it)
            await store.write_batch([second], [charge_for(second)])
        except Exception:  # asyncpg's or the socket's error, either is fine
            await store.write_batch([second], [charge_for(second)])
        await store.write_batch([second], [charge_for(second)])  # a repeat: charged once
        assert (await store.load_wallets())[0].balance_nano == 970
        async with store.engine.connect() as conn:
            now = {row[0] for row in await conn.exec_driver_sql(others)}
        assert now and not now & killed  # the batch thread opened a new connection

    _with_threaded_store(postgres_url, body)
