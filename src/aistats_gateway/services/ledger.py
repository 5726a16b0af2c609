"""The credit ledger: filtered, keyset-paginated listing and a streamed CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..money import format_usd
from ..store.records import LedgerEntry
from ..store.repositories import Store
from .common import Page, invalid, iso, page_size

LEDGER_KINDS = ("grant", "charge", "adjustment")
CSV_COLUMNS = (
    "id",
    "created_at",
    "workspace_id",
    "kind",
    "amount_usd",
    "amount_nanos",
    "generation_id",
    "note",
)
EXPORT_BATCH = 500  # rows per query while exporting


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    """Which entries to list: one kind, and ``since <= created_at < until`` (UTC)."""

    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    descending: bool = False

    @classmethod
    def parse(
        cls,
        *,
        kind: str | None = None,
        since: str | None = None,
        until: str | None = None,
        order: str | None = None,
    ) -> LedgerFilter:
        """Validate query-string values; timestamps are ISO 8601 (no offset: UTC) or unix seconds."""
        if kind is not None and kind not in LEDGER_KINDS:
            raise invalid(f"kind must be one of {', '.join(LEDGER_KINDS)}", param="kind")
        if order not in (None, "asc", "desc"):
            raise invalid("order must be asc (oldest first) or desc (newest first)", param="order")
        start = _timestamp(since, "since")
        end = _timestamp(until, "until")
        if start is not None and end is not None and end <= start:
            raise invalid("until must be later than since", param="until")
        return cls(kind=kind, since=start, until=end, descending=order == "desc")


class LedgerService:
    """Read the ledger, one workspace (or every one, for the admin) at a time."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def page(
        self, scope: str | None, filters: LedgerFilter, *, limit: int | None = None, after: str | None = None
    ) -> Page[LedgerEntry]:
        """One page; ``after`` is the last entry id of the previous page (``next_cursor``)."""
        size = page_size(limit)
        rows = await self._query(scope, filters, size + 1, _cursor(after))
        has_more = len(rows) > size
        rows = rows[:size]
        return Page(rows, has_more, str(rows[-1].id) if has_more else None)

    def entries(
        self, scope: str | None, filters: LedgerFilter, *, after: str | None = None, limit: int | None = None
    ) -> AsyncIterator[LedgerEntry]:
        """Every matching entry (at most ``limit``), fetched in batches so memory stays flat.
        Arguments are checked now, before anything is streamed."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise invalid("limit must be a positive integer", param="limit")
        return self._iterate(scope, filters, _cursor(after), limit)

    async def _iterate(
        self, scope: str | None, filters: LedgerFilter, cursor: int | None, limit: int | None
    ) -> AsyncIterator[LedgerEntry]:
        remaining = limit
        while remaining is None or remaining > 0:
            batch = EXPORT_BATCH if remaining is None else min(EXPORT_BATCH, remaining)
            rows = await self._query(scope, filters, batch, cursor)
            for row in rows:
                yield row
            if len(rows) < batch:
                return
            cursor = rows[-1].id
            if remaining is not None:
                remaining -= len(rows)

    async def _query(
        self, scope: str | None, filters: LedgerFilter, limit: int, after: int | None
    ) -> list[LedgerEntry]:
        return await self._store.page_ledger(
            workspace_id=scope,
            limit=limit,
            after=after,
            kind=filters.kind,
            since=filters.since,
            until=filters.until,
            descending=filters.descending,
        )


def entry_to_api(entry: LedgerEntry) -> dict[str, Any]:
    """The management API's ledger entry object (amounts as exact USD strings and nano-USD)."""
    return {
        "id": entry.id,
        "object": "ledger_entry",
        "created_at": iso(entry.created_at),
        "workspace_id": entry.workspace_id,
        "kind": entry.kind,
        "amount_usd": format_usd(entry.amount_nano),
        "amount_nanos": entry.amount_nano,
        "generation_id": entry.generation_id,
        "note": entry.note,
    }


def csv_header() -> str:
    """The CSV header line."""
    return _csv_line(CSV_COLUMNS)


def entry_to_csv(entry: LedgerEntry) -> str:
    """One CSV line (RFC 4180 quoting, CRLF line end) for an entry."""
    return _csv_line(
        (
            str(entry.id),
            iso(entry.created_at) or "",
            entry.workspace_id,
            entry.kind,
            format_usd(entry.amount_nano),
            str(entry.amount_nano),
            entry.generation_id or "",
            entry.note or "",
        )
    )


async def csv_lines(entries: AsyncIterator[LedgerEntry]) -> AsyncIterator[str]:
    """The header, then one line per entry as it arrives (streamed; never the whole file at once)."""
    yield csv_header()
    async for entry in entries:
        yield entry_to_csv(entry)


def _csv_line(values: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def _cursor(after: str | None) -> int | None:
    if after is None:
        return None
    try:
        value = int(after)
    except ValueError:
        raise invalid(
            "after must be a ledger entry id (the next_cursor of the previous page)", param="after"
        ) from None
    if value < 0:
        raise invalid("after must be a ledger entry id (the next_cursor of the previous page)", param="after")
    return value


def _timestamp(value: str | None, param: str) -> datetime | None:
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if text.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except (ValueError, OverflowError, OSError):
        raise invalid(
            f"{param} must be an ISO 8601 timestamp (2026-01-31T00:00:00Z) or unix seconds", param=param
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
