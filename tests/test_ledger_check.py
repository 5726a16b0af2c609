"""Ledger reconciliation on real databases: clean books pass, every injected drift is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError

from aistats_gateway.store.reconcile import LedgerReport, check_ledger
from aistats_gateway.store.repositories import Store
from aistats_gateway.store.tables import ledger_entries, wallets

from .test_store import charge_for, make_record, with_store


async def books(store: Store) -> tuple[str, list[str]]:
    """A workspace with a grant, charged and free generations; its id and the charged ids."""
    ws = await store.ensure_workspace("default")
    other = await store.ensure_workspace("other")
    await store.grant_credits(ws.id, 1_000_000)
    await store.grant_credits(other.id, 5_000)
    charged = [make_record(ws.id, cost=cost) for cost in (120, 3_400, 9)]
    free = [make_record(ws.id, cost=0) for _ in range(2)]
    await store.write_batch(charged + free, [charge_for(r) for r in charged + free[:1]])
    other_record = make_record(other.id, cost=70)
    await store.write_batch([other_record], [charge_for(other_record)])
    return ws.id, [r.id for r in charged]


def test_clean_books_reconcile(database_url: str) -> None:
    async def body(store: Store) -> LedgerReport:
        await books(store)
        return await check_ledger(store.engine)

    report = with_store(database_url, body)
    assert report.ok, report.render()
    assert (report.wallets, report.charged_generations, report.charge_entries) == (2, 4, 5)
    assert report.ledger_entries == 2 + 5
    assert "The books reconcile." in report.render()
    assert report.to_json()["ok"] is True and report.to_json()["drift"] == []


async def _bump_balance(store: Store, ws: str, charged: list[str]) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            update(wallets)
            .where(wallets.c.workspace_id == ws)
            .values(balance_nano=wallets.c.balance_nano + 1)
        )


async def _bump_granted_and_balance(store: Store, ws: str, charged: list[str]) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            update(wallets)
            .where(wallets.c.workspace_id == ws)
            .values(
                balance_nano=wallets.c.balance_nano + 500,
                granted_total_nano=wallets.c.granted_total_nano + 500,
            )
        )


async def _lose_a_charge_entry(store: Store, ws: str, charged: list[str]) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(delete(ledger_entries).where(ledger_entries.c.generation_id == charged[1]))


async def _change_a_charge_amount(store: Store, ws: str, charged: list[str]) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            update(ledger_entries)
            .where(ledger_entries.c.generation_id == charged[0])
            .values(amount_nano=-121)
        )


async def _charge_without_generation(store: Store, ws: str, charged: list[str]) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(ledger_entries).values(
                workspace_id=ws,
                kind="charge",
                amount_nano=-42,
                generation_id="gen_01J0000000000000000000GONE",
                created_at=datetime.now(UTC),
            )
        )


async def _delete_a_wallet(store: Store, ws: str, charged: list[str]) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(delete(wallets).where(wallets.c.workspace_id == ws))


DRIFTS: dict[str, tuple[Callable[[Store, str, list[str]], Awaitable[None]], set[str]]] = {
    "balance edited": (_bump_balance, {"wallet_balance", "wallet_ledger_sum"}),
    "grant total edited": (_bump_granted_and_balance, {"wallet_granted_total", "wallet_ledger_sum"}),
    "charge entry lost": (
        _lose_a_charge_entry,
        {"generation_without_charge", "wallet_spent_total", "wallet_ledger_sum"},
    ),
    "charge amount changed": (
        _change_a_charge_amount,
        {"charge_amount_mismatch", "wallet_spent_total", "wallet_ledger_sum"},
    ),
    "charge without generation": (
        _charge_without_generation,
        {"charge_without_generation", "wallet_spent_total", "wallet_ledger_sum"},
    ),
    "wallet deleted": (_delete_a_wallet, {"ledger_without_wallet"}),
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_each_injected_drift_is_reported(database_url: str, drift: str) -> None:
    inject, expected = DRIFTS[drift]

    async def body(store: Store) -> tuple[LedgerReport, str]:
        ws, charged = await books(store)
        await inject(store, ws, charged)
        return await check_ledger(store.engine), ws

    report, ws = with_store(database_url, body)
    assert not report.ok
    assert {finding.kind for finding in report.findings} == expected, report.render()
    for finding in report.findings:
        assert finding.count == 1 and len(finding.examples) == 1
        example = finding.examples[0]
        assert ws in (example.get("workspace_id"), example.get("entry_workspace_id"))
    assert "do NOT reconcile" in report.render()


def test_a_second_charge_for_one_generation_is_refused_by_the_database(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws, charged = await books(store)
        with pytest.raises(IntegrityError):
            async with store.engine.begin() as conn:
                await conn.execute(
                    insert(ledger_entries).values(
                        workspace_id=ws,
                        kind="charge",
                        amount_nano=-120,
                        generation_id=charged[0],
                        created_at=datetime.now(UTC),
                    )
                )
        assert (await check_ledger(store.engine)).ok

    with_store(database_url, body)


def test_examples_are_capped_but_the_count_is_complete(sqlite_url: str) -> None:
    async def body(store: Store) -> LedgerReport:
        ws = await store.ensure_workspace("default")
        records = [make_record(ws.id, cost=5) for _ in range(30)]
        await store.write_batch(records, [])  # charged generations without their ledger entries
        return await check_ledger(store.engine, limit=4)

    report = with_store(sqlite_url, body)
    missing = next(f for f in report.findings if f.kind == "generation_without_charge")
    assert (missing.count, len(missing.examples)) == (30, 4)
    assert "… and 26 more" in report.render()


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISTATS_")}
    env["AISTATS_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [sys.executable, "-m", "aistats_gateway", "ledger", "check", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ledger_check_command_exits_0_when_clean_and_1_with_the_drift(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'gateway.db'}"
    ws, charged = with_store(url, books)

    clean = _cli(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "The books reconcile." in clean.stdout
    assert json.loads(_cli(tmp_path, "--json").stdout)["ok"] is True

    with_store(url, lambda store: _lose_a_charge_entry(store, ws, charged))
    text = _cli(tmp_path)
    assert text.returncode == 1
    assert "generation_without_charge" in text.stdout and charged[1] in text.stdout
    as_json = _cli(tmp_path, "--json")
    assert as_json.returncode == 1
    drift = {item["kind"]: item for item in json.loads(as_json.stdout)["drift"]}
    assert drift["generation_without_charge"]["examples"][0]["generation_id"] == charged[1]


def test_ledger_check_on_a_database_without_tables_says_how_to_fix_it(tmp_path: Path) -> None:
    result = _cli(tmp_path)
    assert result.returncode == 1
    assert "error: cannot read the ledger" in result.stderr and "aistats-gateway migrate" in result.stderr
