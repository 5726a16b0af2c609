"""One batch of usage records and charges written to Postgres through the raw asyncpg connection.

Through SQLAlchemy each row of a batch cost ~30 µs of Python on the event loop (statement
compilation, bind processing per value), so a 190-record batch held the loop for ~6 ms and the
gateway's p99 at one connection on Postgres was ~2.2 ms (docs/performance.md, "On Postgres").
Here the rows are plain tuples encoded by asyncpg's Cython codecs (~1.7 ms for the same batch),
on the store's own thread (:mod:`.postgres_thread`), sent ``CHUNK_ROWS`` at a time so that thread
never holds the GIL for a whole batch while requests wait: generations with
``executemany``, charges with ``INSERT … SELECT FROM unnest(…) RETURNING`` (only the entries
really inserted move a wallet), wallets with one ``executemany``. The contract is
:meth:`Store.write_batch`'s, and values are stored exactly as SQLAlchemy stores them (UTC
``timestamptz``, attempts as ``json`` text from :func:`~.records.json_text`, so ``null`` for None):
tests/test_postgres_batches.py compares the rows of both paths, and tests/test_store.py runs the
batch contract on Postgres through this one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Protocol

from .records import GENERATION_COLUMNS, Charge, GenerationRecord, json_text, unique_sorted

_CREATED_INDEX = GENERATION_COLUMNS.index("created_at")
_ATTEMPTS_INDEX = GENERATION_COLUMNS.index("attempts")
_generation_values = attrgetter(*GENERATION_COLUMNS)
CHUNK_ROWS = 32

_INSERT_GENERATION = (
    f"INSERT INTO generations ({', '.join(GENERATION_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(GENERATION_COLUMNS) + 1))}) "
    "ON CONFLICT (id) DO NOTHING"
)
# Rows come in generation-id order, so concurrent batches take their locks in the same order.
_INSERT_CHARGES = (
    "INSERT INTO ledger_entries (workspace_id, kind, amount_nano, generation_id, note, created_at) "
    "SELECT workspace_id, 'charge', amount_nano, generation_id, NULL, $4 "
    "FROM unnest($1::text[], $2::bigint[], $3::text[]) AS batch(workspace_id, amount_nano, generation_id) "
    "ON CONFLICT (generation_id) DO NOTHING RETURNING workspace_id, amount_nano"
)
_CHARGE_WALLET = (
    "UPDATE wallets SET balance_nano = balance_nano - $1, spent_total_nano = spent_total_nano + $1, "
    "updated_at = $2 WHERE workspace_id = $3"
)


class AsyncpgConnection(Protocol):
    """The part of ``asyncpg.Connection`` used here."""

    async def executemany(self, command: str, args: Any) -> None: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


def generation_row(record: GenerationRecord) -> tuple[Any, ...]:
    """A record as the ``generations`` row SQLAlchemy would bind."""
    row = list(_generation_values(record))
    created: datetime = row[_CREATED_INDEX]
    row[_CREATED_INDEX] = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
    row[_ATTEMPTS_INDEX] = json_text(row[_ATTEMPTS_INDEX])
    return tuple(row)


async def write_batch(pg: AsyncpgConnection, records: list[GenerationRecord], charges: list[Charge]) -> None:
    """The batch inside the caller's transaction: generations, then the charges not written yet,
    then the wallets, by exactly what was inserted."""
    # In chunks, each its own round trip: building and encoding a whole batch at once would hold
    # the GIL for a millisecond or more while the request loop waits for it.
    ordered_records = unique_sorted(records, attrgetter("id"))
    for start in range(0, len(ordered_records), CHUNK_ROWS):
        chunk = ordered_records[start : start + CHUNK_ROWS]
        await pg.executemany(_INSERT_GENERATION, [generation_row(record) for record in chunk])
    ordered = unique_sorted(charges, attrgetter("generation_id"))
    if not ordered:
        return
    now = datetime.now(UTC)
    spent: dict[str, int] = {}
    for start in range(0, len(ordered), CHUNK_ROWS):
        chunk_charges = ordered[start : start + CHUNK_ROWS]
        inserted = await pg.fetch(
            _INSERT_CHARGES,
            [charge.workspace_id for charge in chunk_charges],
            [-charge.amount_nano for charge in chunk_charges],
            [charge.generation_id for charge in chunk_charges],
            now,
        )
        for workspace_id, amount_nano in inserted:
            spent[workspace_id] = spent.get(workspace_id, 0) - amount_nano  # entries are negative
    wallet_rows = [(amount, now, workspace_id) for workspace_id, amount in sorted(spent.items()) if amount]
    if wallet_rows:
        await pg.executemany(_CHARGE_WALLET, wallet_rows)
