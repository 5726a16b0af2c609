"""The management service layer (services/) against a real database: SQLite, and Postgres.

Rules live here once for the HTTP API and the CLI: validation naming the field, scoping to a
workspace, keyset pagination, idempotent credit grants, and the ledger's exact CSV export.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event

from aistats_gateway.keys import hash_secret, parse_key
from aistats_gateway.services import (
    CreditService,
    KeyService,
    LedgerFilter,
    LedgerService,
    ServiceError,
    WorkspaceService,
)
from aistats_gateway.services import ledger as ledger_module
from aistats_gateway.services.keys import key_to_api
from aistats_gateway.services.ledger import CSV_COLUMNS, csv_lines
from aistats_gateway.store.db import create_engine
from aistats_gateway.store.migrate import migrate
from aistats_gateway.store.records import Charge, GenerationRecord
from aistats_gateway.store.repositories import Store

PEPPER = b"services-test-pepper"


def run(url: str, action: Callable[[Store], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        store = Store(create_engine(url))
        try:
            await migrate(store.engine)
            return await action(store)
        finally:
            await store.engine.dispose()

    return asyncio.run(go())


def refused(exc: pytest.ExceptionInfo[ServiceError]) -> tuple[str, str | None]:
    return exc.value.reason, exc.value.param


# --- keys ----------------------------------------------------------------------------------------


def test_created_key_authenticates_and_its_object_holds_no_secret(sqlite_url: str) -> None:
    async def action(store: Store) -> None:
        ws = await WorkspaceService(store).create("acme")
        created = await KeyService(store, PEPPER).create(
            ws.id, name="ci", limits={"requests_per_minute": 60, "spend_usd": {"daily": "5.5"}}
        )
        kid, secret = parse_key(created.key) or ("", "")
        assert kid == created.row.kid and created.row.secret_hash == hash_secret(PEPPER, secret)
        body = repr(key_to_api(created.row))
        assert secret not in body and created.row.secret_hash not in body
        api = key_to_api(created.row)
        assert api["object"] == "api_key" and api["kind"] == "inference" and api["status"] == "active"
        assert api["limits"]["requests_per_minute"] == 60 and api["limits"]["spend_usd"]["daily"] == "5.5"
        assert api["created_at"].endswith("Z")

    run(sqlite_url, action)


def test_key_validation_names_the_field(sqlite_url: str) -> None:
    async def action(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        keys = KeyService(store, PEPPER)
        with pytest.raises(ServiceError) as exc:
            await keys.create(ws.id, limits={"requests_per_minute": 0})
        assert refused(exc) == ("validation_error", "limits.requests_per_minute")
        with pytest.raises(ServiceError) as exc:
            await keys.create(ws.id, limits={"allowed_models": ["ok/*", "bad model"]})
        assert refused(exc) == ("validation_error", "limits.allowed_models[1]")
        with pytest.raises(ServiceError) as exc:
            await keys.create(ws.id, kind="management", limits={"requests_per_minute": 5})
        assert refused(exc) == ("validation_error", "limits")
        with pytest.raises(ServiceError) as exc:
            await keys.create(ws.id, kind="root")
        assert refused(exc) == ("validation_error", "kind")
        with pytest.raises(ServiceError) as exc:
            await keys.create(ws.id, name="x" * 101)
        assert refused(exc) == ("validation_error", "name")
        with pytest.raises(ServiceError) as exc:
            await keys.create("ws_missing")
        assert refused(exc) == ("not_found_error", "workspace_id")

    run(sqlite_url, action)


def test_update_merges_limits_and_null_removes_them(sqlite_url: str) -> None:
    async def action(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        keys = KeyService(store, PEPPER)
        kid = (
            await keys.create(ws.id, limits={"requests_per_minute": 60, "spend_usd": {"daily": "5"}})
        ).row.kid
        row = await keys.update(kid, ws.id, limits={"tokens_per_minute": 1000}, set_limits=True)
        limits = key_to_api(row)["limits"]
        assert (limits["requests_per_minute"], limits["tokens_per_minute"]) == (60, 1000)
        assert limits["spend_usd"]["daily"] == "5" and row.updated_at is not None
        row = await keys.update(
            kid, ws.id, name="renamed", limits={"spend_usd": {"daily": None}}, set_limits=True
        )
        assert row.name == "renamed" and key_to_api(row)["limits"]["spend_usd"]["daily"] is None
        assert key_to_api(row)["limits"]["requests_per_minute"] == 60
        row = await keys.update(kid, ws.id, name="again")  # a rename leaves the limits alone
        assert key_to_api(row)["limits"]["requests_per_minute"] == 60
        row = await keys.update(kid, ws.id, limits=None, set_limits=True)
        assert row.limits is None
        await keys.revoke(kid, ws.id)
        with pytest.raises(ServiceError) as exc:
            await keys.update(kid, ws.id, name="late")
        assert exc.value.code == "key_revoked"

    run(sqlite_url, action)


def test_keys_outside_the_scope_are_reported_missing(sqlite_url: str) -> None:
    async def action(store: Store) -> None:
        default = await store.ensure_workspace("default")
        other = await WorkspaceService(store).create("other")
        keys = KeyService(store, PEPPER)
        theirs = (await keys.create(other.id)).row.kid
        for call in (
            keys.get(theirs, default.id),
            keys.update(theirs, default.id, name="x"),
            keys.revoke(theirs, default.id),
        ):
            with pytest.raises(ServiceError) as exc:
                await call
            assert exc.value.reason == "not_found_error"
        assert (await store.get_api_key(theirs)).revoked_at is None  # type: ignore[union-attr]
        assert (await keys.get(theirs, None)).kid == theirs  # the admin sees every workspace

    run(sqlite_url, action)


def test_revoke_is_idempotent_and_keeps_the_first_time(sqlite_url: str) -> None:
    async def action(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        keys = KeyService(store, PEPPER)
        kid = (await keys.create(ws.id)).row.kid
        first, newly = await keys.revoke(kid, ws.id)
        again, newly_again = await keys.revoke(kid, ws.id)
        assert newly is True and newly_again is False
        assert first.revoked_at is not None and again.revoked_at == first.revoked_at

    run(sqlite_url, action)


def test_key_pages_follow_creation_order_without_gaps(database_url: str) -> None:
    async def action(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        other = await WorkspaceService(store).create("other")
        keys = KeyService(store, PEPPER)
        made = [(await keys.create(ws.id, name=f"k{i}")).row.kid for i in range(5)]
        await keys.create(other.id)
        await keys.revoke(made[1], ws.id)
        seen: list[str] = []
        after = None
        pages = 0
        while True:
            page = await keys.page(ws.id, limit=2, after=after, include_revoked=True)
            seen += [row.kid for row in page.items]
            pages += 1
            if not page.has_more:
                assert page.next_cursor is None
                break
            after = page.next_cursor
        assert seen == made and pages == 3
        active = await keys.page(ws.id, limit=10)
        assert [row.kid for row in active.items] == [k for k in made if k != made[1]]
        assert len((await keys.page(None, limit=10, include_revoked=True)).items) == 6
        with pytest.raises(ServiceError) as exc:
            await keys.page(ws.id, after="nosuchkid000")
        assert refused(exc) == ("not_found_error", "after")
        with pytest.raises(ServiceError) as exc:
            await keys.page(ws.id, limit=0)
        assert refused(exc) == ("validation_error", "limit")

    run(database_url, action)


# --- workspaces and credits ----------------------------------------------------------------------


def test_workspace_names_are_validated(sqlite_url: str) -> None:
    async def action(store: Store) -> None:
        workspaces = WorkspaceService(store)
        await workspaces.create("acme")
        for name, code in (
            ("acme", "already_exists"),
            ("ws_fake", "invalid_request"),
            ("  ", "invalid_request"),
        ):
            with pytest.raises(ServiceError) as exc:
                await workspaces.create(name)
            assert exc.value.param == "name" and exc.value.code == code
        assert (await workspaces.get("acme")).name == "acme"
        with pytest.raises(ServiceError) as exc:
            await workspaces.get("nope")
        assert exc.value.reason == "not_found_error"

    run(sqlite_url, action)


def test_grant_amounts_are_exact_positive_decimals(sqlite_url: str) -> None:
    async def action(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        credits = CreditService(store)
        for bad in (0.1, "0", "-1", "1.0000000001", "abc", True, None):
            with pytest.raises(ServiceError) as exc:
                await credits.grant(ws.id, bad)
            assert refused(exc) == ("validation_error", "amount_usd"), bad
        outcome = await credits.grant(ws.id, "12.000000001", note="welcome")
        assert outcome.applied and outcome.wallet.balance_nano == 12_000_000_001
        assert outcome.entry.amount_nano == 12_000_000_001 and outcome.entry.note == "welcome"
        with pytest.raises(ServiceError) as exc:
            await credits.grant("ws_missing", "1")
        assert exc.value.reason == "not_found_error"

    run(sqlite_url, action)


def test_a_retried_grant_is_applied_once(database_url: str) -> None:
    async def action(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        other = await WorkspaceService(store).create("other")
        credits = CreditService(store)
        first = await credits.grant(ws.id, "10", idempotency_key="grant-42")
        retry = await credits.grant(ws.id, "10", idempotency_key="grant-42")
        assert first.applied and not retry.applied
        assert retry.entry.id == first.entry.id and retry.wallet.balance_nano == 10 * 10**9
        # Concurrent retries of a new grant: the unique index lets exactly one through.
        racing = await asyncio.gather(*(credits.grant(ws.id, "1", idempotency_key="race") for _ in range(6)))
        assert sum(outcome.applied for outcome in racing) == 1
        assert (await store.get_wallet(ws.id)).balance_nano == 11 * 10**9
        assert await store.ledger_sum(ws.id) == 11 * 10**9
        # The same key in another workspace is another grant; grants without a key never clash.
        assert (await credits.grant(other.id, "1", idempotency_key="grant-42")).applied
        assert (await credits.grant(ws.id, "1")).applied and (await credits.grant(ws.id, "1")).applied
        with pytest.raises(ServiceError) as exc:
            await credits.grant(ws.id, "11", idempotency_key="grant-42")
        assert exc.value.code == "idempotency_key_reused" and exc.value.param == "Idempotency-Key"

    run(database_url, action)


# --- ledger --------------------------------------------------------------------------------------


def _generation(generation_id: str, workspace_id: str, cost: int) -> GenerationRecord:
    return GenerationRecord(
        id=generation_id,
        workspace_id=workspace_id,
        key_id=None,
        endpoint="chat",
        model="openai/gpt-4o-mini",
        provider="fake",
        upstream_model="gpt-4o-mini",
        status="completed",
        streamed=False,
        finish_reason="stop",
        input_tokens=1,
        cached_input_tokens=0,
        output_tokens=1,
        reasoning_tokens=0,
        cost_nano=cost,
        latency_ms=1,
        ttft_ms=None,
        error=None,
        created_at=datetime.now(UTC),
    )


async def _books(store: Store) -> tuple[str, str]:
    """default: 3 grants and 2 charges; other: 1 grant."""
    ws = await store.ensure_workspace("default")
    other = await WorkspaceService(store).create("other")
    credits = CreditService(store)
    await credits.grant(ws.id, "5", note='top-up, "quoted"')
    await credits.grant(other.id, "7")
    await credits.grant(ws.id, "0.000000001")
    charges = [Charge("gen_a", ws.id, 1_234_567), Charge("gen_b", ws.id, 3)]
    await store.write_batch([_generation("gen_a", ws.id, 1_234_567), _generation("gen_b", ws.id, 3)], charges)
    await credits.grant(ws.id, "2.5")
    return ws.id, other.id


def test_ledger_pages_filters_and_order(database_url: str) -> None:
    async def action(store: Store) -> None:
        ws, other = await _books(store)
        ledger = LedgerService(store)
        everything = LedgerFilter()
        ids: list[int] = []
        after = None
        while True:
            page = await ledger.page(ws, everything, limit=2, after=after)
            ids += [entry.id for entry in page.items]
            if not page.has_more:
                break
            after = page.next_cursor
        assert ids == sorted(ids) and len(ids) == 5
        entries = (await ledger.page(ws, everything)).items
        assert {entry.workspace_id for entry in entries} == {ws}
        assert sum(entry.amount_nano for entry in entries) == (await store.get_wallet(ws)).balance_nano
        charges = (await ledger.page(ws, LedgerFilter.parse(kind="charge"))).items
        assert sorted(-entry.amount_nano for entry in charges) == [3, 1_234_567]
        newest = (await ledger.page(ws, LedgerFilter.parse(order="desc"), limit=2)).items
        assert [entry.id for entry in newest] == ids[::-1][:2]
        assert len((await ledger.page(None, everything)).items) == 6  # the admin: every workspace
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert (await ledger.page(ws, LedgerFilter.parse(since=future))).items == []
        assert len((await ledger.page(ws, LedgerFilter.parse(until=future))).items) == 5
        assert [e.workspace_id for e in (await ledger.page(other, everything)).items] == [other]

    run(database_url, action)


def test_ledger_filter_errors_name_the_parameter() -> None:
    for kwargs, param in (
        ({"kind": "refund"}, "kind"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01"}, "until"),
        ({"order": "sideways"}, "order"),
    ):
        with pytest.raises(ServiceError) as exc:
            LedgerFilter.parse(**kwargs)
        assert exc.value.param == param
    parsed = LedgerFilter.parse(since="1767225600", until="2026-01-02T00:00:00")
    assert parsed.since == datetime(2026, 1, 1, tzinfo=UTC) and parsed.until == datetime(
        2026, 1, 2, tzinfo=UTC
    )


def test_csv_export_is_exact_and_streams_in_batches(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "EXPORT_BATCH", 2)  # several queries for five rows

    async def action(store: Store) -> None:
        ws, _ = await _books(store)
        ledger = LedgerService(store)
        queries: list[str] = []
        event.listen(
            store.engine.sync_engine,
            "before_cursor_execute",
            lambda conn, cursor, statement, *rest: queries.append(statement),
        )
        text = "".join([line async for line in csv_lines(ledger.entries(ws, LedgerFilter()))])
        assert len([q for q in queries if "FROM ledger_entries" in q]) == 3  # batches of 2, 2 and 1
        rows = list(csv.DictReader(io.StringIO(text)))
        assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 5
        for row in rows:
            assert Decimal(row["amount_usd"]) * 10**9 == int(row["amount_nanos"])
            assert row["created_at"].endswith("Z") and datetime.fromisoformat(row["created_at"])
        assert [row["amount_usd"] for row in rows] == [
            "5",
            "0.000000001",
            "-0.001234567",
            "-0.000000003",
            "2.5",
        ]
        assert rows[0]["note"] == 'top-up, "quoted"' and rows[2]["generation_id"] == "gen_a"
        assert sum(int(row["amount_nanos"]) for row in rows) == (await store.get_wallet(ws)).balance_nano
        limited = [entry async for entry in ledger.entries(ws, LedgerFilter(), limit=3)]
        assert len(limited) == 3
        resumed = [entry async for entry in ledger.entries(ws, LedgerFilter(), after=str(limited[-1].id))]
        assert len(resumed) == 2

    run(sqlite_url, action)


async def _drain(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


def test_export_arguments_are_checked_before_streaming(sqlite_url: str) -> None:
    async def action(store: Store) -> None:
        ledger = LedgerService(store)
        with pytest.raises(ServiceError) as exc:
            ledger.entries(None, LedgerFilter(), after="not-an-id")  # raised at the call, not mid-stream
        assert exc.value.param == "after"
        with pytest.raises(ServiceError) as exc:
            ledger.entries(None, LedgerFilter(), limit=0)
        assert exc.value.param == "limit"
        assert await _drain(ledger.entries(None, LedgerFilter())) == []

    run(sqlite_url, action)
