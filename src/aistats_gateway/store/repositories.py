"""Repositories: every read and write the gateway does against its database.

``Store`` wraps an ``AsyncEngine``; each public method runs in its own transaction. SQL is
written with SQLAlchemy Core so the same code runs on SQLite and Postgres; the only
dialect-specific part is ``INSERT … ON CONFLICT DO NOTHING`` (see ``_insert``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from enum import Enum
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, RowMapping, Table, and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..ids import new_ulid
from .credentials import CredentialQueries
from .records import (
    GENERATION_COLUMNS,
    ApiKeyRow,
    Charge,
    GenerationRecord,
    GrantOutcome,
    LedgerEntry,
    WalletRow,
    Workspace,
    unique_sorted,
)
from .tables import UtcDateTime, api_keys, generations, ledger_entries, meta, wallets, workspaces

WORKSPACE_PREFIX = "ws_"
# Plain attribute reads: dataclasses.asdict deep-copies and was a hot spot of the writer.


class AlreadyExists(Exception):
    """A row with that unique name or id already exists."""


class NotFound(LookupError):
    """The workspace (or other row) the call refers to does not exist."""


class Keep(Enum):
    """Marks an update argument that leaves the column as it is (``None`` would clear it)."""

    KEEP = 0


def new_workspace_id() -> str:
    """A new ``ws_<ulid>`` id (lower case)."""
    return WORKSPACE_PREFIX + new_ulid().lower()


def _now() -> datetime:
    return datetime.now(UTC)


def _insert(conn: AsyncConnection, table: Table) -> Any:
    """A dialect ``INSERT`` that supports ``on_conflict_do_nothing`` (SQLite ≥ 3.24, Postgres)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


WRITE_CHUNK_ROWS = 64


def _chunks(rows: list[dict[str, Any]], size: int = WRITE_CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _workspace(row: RowMapping) -> Workspace:
    return Workspace(id=row["id"], name=row["name"], created_at=row["created_at"])


def _api_key(row: RowMapping) -> ApiKeyRow:
    return ApiKeyRow(
        kid=row["kid"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        kind=row["kind"],
        limits=row["limits"],
        updated_at=row["updated_at"],
    )


def _wallet(row: RowMapping) -> WalletRow:
    return WalletRow(
        workspace_id=row["workspace_id"],
        balance_nano=int(row["balance_nano"]),
        granted_total_nano=int(row["granted_total_nano"]),
        spent_total_nano=int(row["spent_total_nano"]),
    )


def _ledger_entry(row: RowMapping) -> LedgerEntry:
    return LedgerEntry(
        id=int(row["id"]),
        workspace_id=row["workspace_id"],
        kind=row["kind"],
        amount_nano=int(row["amount_nano"]),
        generation_id=row["generation_id"],
        note=row["note"],
        created_at=row["created_at"],
        idempotency_key=row["idempotency_key"],
    )


def _generation(row: RowMapping) -> GenerationRecord:
    return GenerationRecord(**{name: row[name] for name in GenerationRecord.__dataclass_fields__})


_WALLET_COLUMNS = (
    wallets.c.workspace_id,
    wallets.c.balance_nano,
    wallets.c.granted_total_nano,
    wallets.c.spent_total_nano,
)


class Store(CredentialQueries):
    """Async repositories over one engine (SQLite or Postgres)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    # -- workspaces ---------------------------------------------------------------------------

    async def ensure_workspace(self, name: str) -> Workspace:
        """The workspace called ``name``, created (with its wallet) if missing. Idempotent."""
        async with self._engine.begin() as conn:
            await conn.execute(
                _insert(conn, workspaces)
                .values(id=new_workspace_id(), name=name, created_at=_now())
                .on_conflict_do_nothing(index_elements=["name"])
            )
            row = (await conn.execute(select(workspaces).where(workspaces.c.name == name))).mappings().one()
            await self._ensure_wallet(conn, row["id"])
            return _workspace(row)

    async def create_workspace(self, name: str) -> Workspace:
        """Create a workspace and its empty wallet; ``AlreadyExists`` if the name is taken."""
        workspace = Workspace(id=new_workspace_id(), name=name, created_at=_now())
        try:
            async with self._engine.begin() as conn:
                await conn.execute(workspaces.insert().values(**asdict(workspace)))
                await self._ensure_wallet(conn, workspace.id)
        except IntegrityError as exc:
            raise AlreadyExists(f"workspace {name!r} already exists") from exc
        return workspace

    async def find_workspace(self, name_or_id: str) -> Workspace | None:
        """The workspace whose id or name is ``name_or_id`` (an id match wins)."""
        query = (
            select(workspaces)
            .where(or_(workspaces.c.id == name_or_id, workspaces.c.name == name_or_id))
            .order_by((workspaces.c.id == name_or_id).desc())
            .limit(1)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _workspace(row) if row is not None else None

    async def list_workspaces(self) -> list[Workspace]:
        """All workspaces, oldest first."""
        query = select(workspaces).order_by(workspaces.c.created_at, workspaces.c.id)
        async with self._engine.connect() as conn:
            return [_workspace(row) for row in (await conn.execute(query)).mappings()]

    @staticmethod
    async def _ensure_wallet(conn: AsyncConnection, workspace_id: str) -> None:
        await conn.execute(
            _insert(conn, wallets)
            .values(workspace_id=workspace_id, updated_at=_now())
            .on_conflict_do_nothing(index_elements=["workspace_id"])
        )

    # -- API keys -----------------------------------------------------------------------------

    async def insert_api_key(
        self,
        kid: str,
        workspace_id: str,
        name: str | None,
        secret_hash: str,
        *,
        kind: str = "inference",
        limits: dict[str, Any] | None = None,
    ) -> ApiKeyRow:
        """Store a new key (only its secret's hash). ``AlreadyExists`` if ``kid`` is taken."""
        row = ApiKeyRow(
            kid=kid,
            workspace_id=workspace_id,
            name=name,
            secret_hash=secret_hash,
            created_at=_now(),
            revoked_at=None,
            kind=kind,
            limits=limits,
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(api_keys.insert().values(**asdict(row)))
        except IntegrityError as exc:
            # A duplicate kid, or (with foreign keys on) an unknown workspace.
            if await self.get_api_key(kid) is not None:
                raise AlreadyExists(f"API key {kid!r} already exists") from exc
            raise NotFound(f"workspace {workspace_id!r} does not exist") from exc
        return row

    async def list_api_keys(self, workspace_id: str | None = None) -> list[ApiKeyRow]:
        """All keys (revoked ones included), oldest first; only one workspace's when given."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.kid)
        if workspace_id is not None:
            query = query.where(api_keys.c.workspace_id == workspace_id)
        async with self._engine.connect() as conn:
            return [_api_key(row) for row in (await conn.execute(query)).mappings()]

    async def page_api_keys(
        self,
        *,
        workspace_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
        include_revoked: bool = False,
    ) -> list[ApiKeyRow]:
        """Up to ``limit`` keys in creation order (then kid), starting after the key ``after``
        (keyset pagination: stable while keys are added). ``workspace_id=None``: every workspace."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.kid).limit(limit)
        if workspace_id is not None:
            query = query.where(api_keys.c.workspace_id == workspace_id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        if after is not None:
            cursor = select(api_keys.c.created_at).where(api_keys.c.kid == after).scalar_subquery()
            query = query.where(
                or_(
                    api_keys.c.created_at > cursor,
                    and_(api_keys.c.created_at == cursor, api_keys.c.kid > after),
                )
            )
        async with self._engine.connect() as conn:
            return [_api_key(row) for row in (await conn.execute(query)).mappings()]

    async def revoke_api_key(self, kid: str) -> bool:
        """Revoke a key; False when it is unknown or already revoked."""
        query = (
            update(api_keys)
            .where(api_keys.c.kid == kid, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=_now())
            .returning(api_keys.c.kid)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(query)).first() is not None

    async def update_api_key(
        self, kid: str, *, name: str | None = None, limits: dict[str, Any] | Keep | None = Keep.KEEP
    ) -> ApiKeyRow | None:
        """Change a key's name and/or limits (``Keep.KEEP``: leave as is); None for an unknown kid."""
        values: dict[str, Any] = {"updated_at": _now()}
        if name is not None:
            values["name"] = name
        if not isinstance(limits, Keep):
            values["limits"] = limits
        query = update(api_keys).where(api_keys.c.kid == kid).values(**values).returning(api_keys.c.kid)
        async with self._engine.begin() as conn:
            if (await conn.execute(query)).first() is None:
                return None
        return await self.get_api_key(kid)

    async def load_api_keys(self) -> list[ApiKeyRow]:
        """Every non-revoked key, in one query (the auth cache reloads this often)."""
        query = select(api_keys).where(api_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            return [_api_key(row) for row in (await conn.execute(query)).mappings()]

    async def get_api_key(self, kid: str) -> ApiKeyRow | None:
        """One key by kid, revoked or not."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.kid == kid))).mappings().first()
        return _api_key(row) if row is not None else None

    async def count_api_keys(self) -> int:
        """How many keys were ever created (revoked ones included)."""
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(api_keys))).scalar_one())

    # -- wallets and ledger -------------------------------------------------------------------

    async def grant_credits(self, workspace_id: str, amount_nano: int, note: str | None = None) -> WalletRow:
        """Add credits: a 'grant' ledger entry and the wallet update, atomically."""
        if amount_nano <= 0:
            raise ValueError("a grant must be a positive amount of nano-USD")
        now = _now()
        async with self._engine.begin() as conn:
            # The UPDATE first: it takes the wallet's write lock and tells us it exists.
            row = (
                (
                    await conn.execute(
                        update(wallets)
                        .where(wallets.c.workspace_id == workspace_id)
                        .values(
                            balance_nano=wallets.c.balance_nano + amount_nano,
                            granted_total_nano=wallets.c.granted_total_nano + amount_nano,
                            updated_at=now,
                        )
                        .returning(*_WALLET_COLUMNS)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"workspace {workspace_id!r} has no wallet")
            await conn.execute(
                ledger_entries.insert().values(
                    workspace_id=workspace_id,
                    kind="grant",
                    amount_nano=amount_nano,
                    generation_id=None,
                    note=note,
                    created_at=now,
                )
            )
            return _wallet(row)

    async def grant_credits_once(
        self,
        workspace_id: str,
        amount_nano: int,
        *,
        note: str | None = None,
        idempotency_key: str | None = None,
    ) -> GrantOutcome:
        """Add credits like :meth:`grant_credits`, at most once per ``idempotency_key``.

        The ledger entry goes in first, skipped on a clash with an earlier grant of the same key
        (the unique index decides, so concurrent retries cannot both apply); only an entry really
        inserted moves the wallet. A replay returns the earlier entry and ``applied=False``.
        """
        if amount_nano <= 0:
            raise ValueError("a grant must be a positive amount of nano-USD")
        now = _now()
        try:
            async with self._engine.begin() as conn:
                inserted = (
                    (
                        await conn.execute(
                            _insert(conn, ledger_entries)
                            .values(
                                workspace_id=workspace_id,
                                kind="grant",
                                amount_nano=amount_nano,
                                generation_id=None,
                                note=note,
                                created_at=now,
                                idempotency_key=idempotency_key,
                            )
                            .on_conflict_do_nothing(index_elements=["workspace_id", "idempotency_key"])
                            .returning(*ledger_entries.c)
                        )
                    )
                    .mappings()
                    .first()
                )
                if inserted is None:  # an earlier grant with this key: report it, apply nothing
                    earlier = (
                        (
                            await conn.execute(
                                select(ledger_entries).where(
                                    ledger_entries.c.workspace_id == workspace_id,
                                    ledger_entries.c.idempotency_key == idempotency_key,
                                )
                            )
                        )
                        .mappings()
                        .one()
                    )
                    wallet = (
                        (
                            await conn.execute(
                                select(*_WALLET_COLUMNS).where(wallets.c.workspace_id == workspace_id)
                            )
                        )
                        .mappings()
                        .one()
                    )
                    return GrantOutcome(_wallet(wallet), _ledger_entry(earlier), applied=False)
                row = (
                    (
                        await conn.execute(
                            update(wallets)
                            .where(wallets.c.workspace_id == workspace_id)
                            .values(
                                balance_nano=wallets.c.balance_nano + amount_nano,
                                granted_total_nano=wallets.c.granted_total_nano + amount_nano,
                                updated_at=now,
                            )
                            .returning(*_WALLET_COLUMNS)
                        )
                    )
                    .mappings()
                    .first()
                )
                if row is None:  # rolls the entry back
                    raise NotFound(f"workspace {workspace_id!r} has no wallet")
                return GrantOutcome(_wallet(row), _ledger_entry(inserted), applied=True)
        except IntegrityError as exc:  # the entry's foreign key: no such workspace
            raise NotFound(f"workspace {workspace_id!r} does not exist") from exc

    async def get_wallet(self, workspace_id: str) -> WalletRow:
        """The wallet of a workspace; ``NotFound`` if it has none."""
        query = select(*_WALLET_COLUMNS).where(wallets.c.workspace_id == workspace_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"workspace {workspace_id!r} has no wallet")
        return _wallet(row)

    async def load_wallets(self) -> list[WalletRow]:
        """Every wallet, in one query (the in-memory wallet cache reloads this)."""
        async with self._engine.connect() as conn:
            return [_wallet(row) for row in (await conn.execute(select(*_WALLET_COLUMNS))).mappings()]

    async def ledger_sum(self, workspace_id: str) -> int:
        """The sum of a workspace's ledger entries (equals its balance when books are sound)."""
        query = select(func.coalesce(func.sum(ledger_entries.c.amount_nano), 0)).where(
            ledger_entries.c.workspace_id == workspace_id
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def list_ledger(self, workspace_id: str) -> list[dict[str, Any]]:
        """A workspace's ledger entries, oldest first, as plain dicts."""
        query = (
            select(
                ledger_entries.c.id,
                ledger_entries.c.kind,
                ledger_entries.c.amount_nano,
                ledger_entries.c.generation_id,
                ledger_entries.c.note,
                ledger_entries.c.created_at,
            )
            .where(ledger_entries.c.workspace_id == workspace_id)
            .order_by(ledger_entries.c.id)
        )
        async with self._engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]

    async def page_ledger(
        self,
        *,
        workspace_id: str | None = None,
        limit: int = 100,
        after: int | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        descending: bool = False,
    ) -> list[LedgerEntry]:
        """Up to ``limit`` ledger entries ordered by id (oldest first, or newest first when
        ``descending``), after the entry id ``after`` in that order (keyset pagination).
        Filters: one workspace (``None``: all), one kind, ``since <= created_at < until``."""
        order = ledger_entries.c.id.desc() if descending else ledger_entries.c.id
        query = select(ledger_entries).order_by(order).limit(limit)
        if workspace_id is not None:
            query = query.where(ledger_entries.c.workspace_id == workspace_id)
        if after is not None:
            query = query.where(ledger_entries.c.id < after if descending else ledger_entries.c.id > after)
        if kind is not None:
            query = query.where(ledger_entries.c.kind == kind)
        if since is not None:
            query = query.where(ledger_entries.c.created_at >= since)
        if until is not None:
            query = query.where(ledger_entries.c.created_at < until)
        async with self._engine.connect() as conn:
            return [_ledger_entry(row) for row in (await conn.execute(query)).mappings()]

    # -- writes from the request path (through the batched writer) ----------------------------

    async def write_batch(self, generations_: list[GenerationRecord], charges: list[Charge]) -> None:
        """Write generation rows and settle charges in ONE transaction; safe to retry.

        A generation id already stored is skipped. Each charge becomes one 'charge' ledger
        entry (zero amounts included) unless that generation already has one; only entries
        really inserted here move the wallet, so a retried or duplicated charge never bills twice.
        Rows are written in key order so concurrent batches lock in the same order (no deadlock).
        This is the SQLAlchemy path; the server's stores write batches through the raw drivers on
        a thread of their own (direct_sqlite.py, postgres_thread.py), which tests compare with it.
        """
        await self._write_batch_sqlalchemy(generations_, charges)

    async def _write_batch_sqlalchemy(
        self, generations_: list[GenerationRecord], charges: list[Charge]
    ) -> None:
        """:meth:`write_batch` through SQLAlchemy, on any dialect."""
        generation_rows = unique_sorted(
            ({name: getattr(g, name) for name in GENERATION_COLUMNS} for g in generations_), itemgetter("id")
        )
        charge_rows: list[dict[str, Any]] = unique_sorted(
            (
                {
                    "workspace_id": c.workspace_id,
                    "kind": "charge",
                    "amount_nano": -c.amount_nano,
                    "generation_id": c.generation_id,
                    "note": None,
                }
                for c in charges
            ),
            itemgetter("generation_id"),
        )
        if not generation_rows and not charge_rows:
            return
        now = _now()
        async with self._engine.begin() as conn:
            # Statements go in chunks: preparing the parameters of one executemany is synchronous
            # work on the event loop, and a whole batch at once stalled requests in flight.
            insert_generations = _insert(conn, generations).on_conflict_do_nothing(index_elements=["id"])
            for chunk in _chunks(generation_rows):
                await conn.execute(insert_generations, chunk)
            if not charge_rows:
                return
            for row in charge_rows:
                row["created_at"] = now
            insert_charges = (
                _insert(conn, ledger_entries)
                .on_conflict_do_nothing(index_elements=["generation_id"])
                .returning(ledger_entries.c.workspace_id, ledger_entries.c.amount_nano)
            )
            spent: dict[str, int] = defaultdict(int)
            for chunk in _chunks(charge_rows):
                for workspace_id, amount_nano in await conn.execute(insert_charges, chunk):
                    spent[workspace_id] -= amount_nano  # entries are negative
            wallet_rows = [
                {"ws": workspace_id, "amount": amount, "now": now}
                for workspace_id, amount in sorted(spent.items())
                if amount != 0
            ]
            if wallet_rows:
                await conn.execute(_CHARGE_WALLET, wallet_rows)

    async def get_generation(self, generation_id: str) -> GenerationRecord | None:
        """One stored generation record."""
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(generations).where(generations.c.id == generation_id)))
                .mappings()
                .first()
            )
        return _generation(row) if row is not None else None

    async def key_usage(self, kid: str) -> dict[str, int]:
        """Totals over a key's generations: requests, cost_nano, input_tokens, output_tokens."""
        query = select(
            func.count(),
            func.coalesce(func.sum(generations.c.cost_nano), 0),
            func.coalesce(func.sum(generations.c.input_tokens), 0),
            func.coalesce(func.sum(generations.c.output_tokens), 0),
        ).where(generations.c.key_id == kid)
        async with self._engine.connect() as conn:
            requests, cost, input_tokens, output_tokens = (await conn.execute(query)).one()
        return {
            "requests": int(requests),
            "cost_nano": int(cost),
            "input_tokens": int(input_tokens),
            "output_tokens": int(output_tokens),
        }

    async def key_spend(self, day_start: datetime, month_start: datetime) -> dict[str, tuple[int, int, int]]:
        """Per key with any cost: nano-USD spent since ``day_start``, since ``month_start``, and
        ever — the seeds of the spend-limit counters (one aggregate, at start-up)."""
        cost = generations.c.cost_nano
        created = generations.c.created_at
        query = (
            select(
                generations.c.key_id,
                func.coalesce(func.sum(case((created >= day_start, cost), else_=0)), 0),
                func.coalesce(func.sum(case((created >= month_start, cost), else_=0)), 0),
                func.coalesce(func.sum(cost), 0),
            )
            .where(generations.c.key_id.is_not(None), cost > 0)
            .group_by(generations.c.key_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {str(kid): (int(day), int(month), int(total)) for kid, day, month, total in rows}

    # -- meta ---------------------------------------------------------------------------------

    async def claim_flag(self, key: str) -> bool:
        """Set a one-time flag; True only for the first caller ever (across processes)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                _insert(conn, meta)
                .values(key=key, value=_now().isoformat())
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(meta.c.key)
            )
            return result.first() is not None


# One statement, executed once per charged workspace of a batch (executemany).
_CHARGE_WALLET = (
    update(wallets)
    .where(wallets.c.workspace_id == bindparam("ws"))
    .values(
        balance_nano=wallets.c.balance_nano - bindparam("amount", type_=BigInteger()),
        spent_total_nano=wallets.c.spent_total_nano + bindparam("amount", type_=BigInteger()),
        updated_at=bindparam("now", type_=UtcDateTime()),
    )
)
