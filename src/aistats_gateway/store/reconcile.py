"""Ledger reconciliation (``aistats-gateway ledger check``): prove the books add up, or list the drift.

What is checked, all in one read snapshot of the database:

- every wallet: ``balance == granted_total - spent_total == sum(its ledger entries)``,
  ``granted_total == sum(grant entries)`` and ``spent_total == -sum(charge entries)``;
  ledger entries of a workspace that has no wallet;
- every generation with ``cost_nano > 0`` has exactly one ``charge`` entry, of ``-cost_nano``,
  in the generation's workspace;
- every ``charge`` entry points to a stored generation.

The generation checks are SQL aggregates and joins (the tables may hold millions of rows): each
kind of drift is counted in full and up to ``limit`` examples are returned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .tables import generations, ledger_entries, wallets, workspaces

DEFAULT_EXAMPLE_LIMIT = 20


@dataclass(slots=True)
class Finding:
    """One kind of drift: how many rows show it, and some of them."""

    kind: str
    description: str
    count: int
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class LedgerReport:
    """The result of a check; ``ok`` when nothing drifted."""

    wallets: int
    ledger_entries: int
    charged_generations: int
    charge_entries: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": {
                "wallets": self.wallets,
                "ledger_entries": self.ledger_entries,
                "charged_generations": self.charged_generations,
                "charge_entries": self.charge_entries,
            },
            "drift": [
                {"kind": f.kind, "description": f.description, "count": f.count, "examples": f.examples}
                for f in self.findings
            ],
        }

    def render(self) -> str:
        """A readable report for the terminal."""
        lines = [
            f"Ledger check: {self.wallets} wallets, {self.ledger_entries} ledger entries, "
            f"{self.charged_generations} charged generations, {self.charge_entries} charge entries"
        ]
        if self.ok:
            lines += [
                "  OK  every wallet: balance = granted - spent = sum of its ledger entries",
                "  OK  every wallet: granted = sum of grants, spent = sum of charges",
                "  OK  every charged generation has exactly one charge entry of its cost",
                "  OK  every charge entry belongs to a stored generation",
                "The books reconcile.",
            ]
            return "\n".join(lines)
        for finding in self.findings:
            lines.append(f"  DRIFT {finding.kind}: {finding.count} — {finding.description}")
            for example in finding.examples:
                lines.append("        " + ", ".join(f"{k}={v}" for k, v in example.items()))
            if finding.count > len(finding.examples):
                lines.append(f"        … and {finding.count - len(finding.examples)} more")
        total = sum(f.count for f in self.findings)
        lines.append(f"The books do NOT reconcile: {total} problem(s) in {len(self.findings)} check(s).")
        return "\n".join(lines)


async def check_ledger(engine: AsyncEngine, *, limit: int = DEFAULT_EXAMPLE_LIMIT) -> LedgerReport:
    """Run every check in one read snapshot and return the report."""
    async with _snapshot(engine) as conn:
        report = LedgerReport(
            wallets=await _count(conn, select(func.count()).select_from(wallets)),
            ledger_entries=await _count(conn, select(func.count()).select_from(ledger_entries)),
            charged_generations=await _count(
                conn, select(func.count()).select_from(generations).where(generations.c.cost_nano > 0)
            ),
            charge_entries=await _count(
                conn,
                select(func.count()).select_from(ledger_entries).where(ledger_entries.c.kind == "charge"),
            ),
        )
        report.findings += await _wallet_findings(conn, limit)
        for kind, description, query in _generation_checks():
            count = await _count(conn, select(func.count()).select_from(query.subquery()))
            if count:
                rows = (await conn.execute(query.limit(limit))).mappings()
                # Column labels can be str subclasses (quoted_name); plain str keys serialise anywhere.
                examples = [{str(key): value for key, value in row.items()} for row in rows]
                report.findings.append(Finding(kind, description, count, examples))
    return report


@asynccontextmanager
async def _snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose reads all see one consistent snapshot (gateways may be writing)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                await conn.execute(select(literal(1)))
                yield conn
        return
    async with engine.connect() as conn:
        # pysqlite opens no transaction for reads; an explicit BEGIN pins the WAL snapshot at the
        # first read, which is what every later query then sees.
        await conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            await conn.exec_driver_sql("ROLLBACK")


async def _count(conn: AsyncConnection, query: Select[Any]) -> int:
    return int((await conn.execute(query)).scalar_one())


async def _wallet_findings(conn: AsyncConnection, limit: int) -> list[Finding]:
    amount = ledger_entries.c.amount_nano
    sums_query = select(
        ledger_entries.c.workspace_id,
        func.coalesce(func.sum(amount), 0),
        func.coalesce(func.sum(case((ledger_entries.c.kind == "grant", amount), else_=0)), 0),
        func.coalesce(func.sum(case((ledger_entries.c.kind == "charge", amount), else_=0)), 0),
    ).group_by(ledger_entries.c.workspace_id)
    sums = {
        ws: (int(total), int(grants), int(charges))
        for ws, total, grants, charges in await conn.execute(sums_query)
    }
    wallet_rows = await conn.execute(
        select(
            wallets.c.workspace_id,
            workspaces.c.name,
            wallets.c.balance_nano,
            wallets.c.granted_total_nano,
            wallets.c.spent_total_nano,
        )
        .select_from(wallets.outerjoin(workspaces, workspaces.c.id == wallets.c.workspace_id))
        .order_by(wallets.c.workspace_id)
    )
    checks: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "wallet_balance": ("balance != granted_total - spent_total", []),
        "wallet_ledger_sum": ("balance != sum of the workspace's ledger entries", []),
        "wallet_granted_total": ("granted_total != sum of the workspace's grant entries", []),
        "wallet_spent_total": ("spent_total != -(sum of the workspace's charge entries)", []),
        "ledger_without_wallet": ("ledger entries for a workspace that has no wallet", []),
    }
    seen: set[str] = set()
    for workspace_id, name, balance, granted, spent in wallet_rows:
        seen.add(workspace_id)
        total, grants, charges = sums.get(workspace_id, (0, 0, 0))
        where = {"workspace_id": workspace_id, "workspace": name}
        balance, granted, spent = int(balance), int(granted), int(spent)
        if balance != granted - spent:
            checks["wallet_balance"][1].append(
                {**where, "balance_nano": balance, "granted_total_nano": granted, "spent_total_nano": spent}
            )
        if balance != total:
            checks["wallet_ledger_sum"][1].append(
                {**where, "balance_nano": balance, "ledger_sum_nano": total}
            )
        if granted != grants:
            checks["wallet_granted_total"][1].append(
                {**where, "granted_total_nano": granted, "ledger_grants_nano": grants}
            )
        if spent != -charges:
            checks["wallet_spent_total"][1].append(
                {**where, "spent_total_nano": spent, "ledger_charges_nano": -charges}
            )
    for workspace_id in sorted(set(sums) - seen):
        checks["ledger_without_wallet"][1].append(
            {"workspace_id": workspace_id, "ledger_sum_nano": sums[workspace_id][0]}
        )
    return [
        Finding(kind, description, len(rows), rows[:limit])
        for kind, (description, rows) in checks.items()
        if rows
    ]


def _generation_checks() -> list[tuple[str, str, Select[Any]]]:
    """``(kind, description, query of the offending rows)`` for the per-generation checks."""
    g, le = generations, ledger_entries
    charge_of_g = and_(le.c.generation_id == g.c.id, le.c.kind == "charge")
    missing = (
        select(g.c.id.label("generation_id"), g.c.workspace_id, g.c.cost_nano)
        .select_from(g.outerjoin(le, charge_of_g))
        .where(g.c.cost_nano > 0, le.c.id.is_(None))
        .order_by(g.c.id)
    )
    duplicated = (
        select(le.c.generation_id, func.count().label("charge_entries"))
        .where(le.c.kind == "charge", le.c.generation_id.is_not(None))
        .group_by(le.c.generation_id)
        .having(func.count() > 1)
        .order_by(le.c.generation_id)
    )
    mismatched = (
        select(
            le.c.id.label("ledger_entry_id"),
            le.c.generation_id,
            le.c.amount_nano,
            g.c.cost_nano,
            le.c.workspace_id.label("entry_workspace_id"),
            g.c.workspace_id.label("generation_workspace_id"),
        )
        .select_from(le.join(g, g.c.id == le.c.generation_id))
        .where(
            le.c.kind == "charge",
            or_(le.c.amount_nano != -g.c.cost_nano, le.c.workspace_id != g.c.workspace_id),
        )
        .order_by(le.c.id)
    )
    orphaned = (
        select(le.c.id.label("ledger_entry_id"), le.c.generation_id, le.c.workspace_id, le.c.amount_nano)
        .select_from(le.outerjoin(g, g.c.id == le.c.generation_id))
        .where(le.c.kind == "charge", g.c.id.is_(None))
        .order_by(le.c.id)
    )
    return [
        ("generation_without_charge", "a generation with cost_nano > 0 has no charge entry", missing),
        ("duplicate_charge", "a generation has more than one charge entry", duplicated),
        (
            "charge_amount_mismatch",
            "a charge entry's amount is not -cost_nano of its generation, or is in another workspace",
            mismatched,
        ),
        ("charge_without_generation", "a charge entry whose generation is not stored", orphaned),
    ]
