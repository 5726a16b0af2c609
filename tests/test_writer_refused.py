"""A record the database refuses is set aside; the rest of its batch, and every later one, is written.

Before, one record the database could not take (a count out of a column's range, a NUL in a
Postgres text column) failed its whole batch on every retry: that record and every record behind
it waited in memory, then spooled, then held intake, while the log said the database was down.
The refusals here come from the real drivers (an integer no column holds), not from a fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from sqlalchemy.exc import OperationalError

from aistats_gateway.pipeline.billing import WalletBook
from aistats_gateway.store.isolation import is_data_error, isolate
from aistats_gateway.store.records import Charge, GenerationRecord
from aistats_gateway.store.repositories import Store
from aistats_gateway.store.spool import REFUSED_DIR, Spool, decode_item, refused_line
from aistats_gateway.store.writer import BatchedWriter

from .test_store import charge_for, make_record, with_store
from .test_writer import SwitchableStore, count_rows, wait_until

NO_COLUMN_HOLDS = 2**64 - 1  # no INTEGER column holds it (the driver refuses), orjson still writes it


def refused_files(spool: Spool) -> list[Path]:
    return sorted((spool.root / REFUSED_DIR).glob("*.jsonl"))


def test_a_refused_record_is_set_aside_and_the_rest_of_its_batch_is_written(
    database_url: str, tmp_path: Path
) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 1_000_000)
        flushed: list[Charge] = []
        spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
        writer = BatchedWriter(store, max_batch=50, on_flushed=flushed.extend, spool=spool)
        records = [make_record(ws.id, cost=10) for _ in range(40)]
        bad = make_record(ws.id, cost=10, input_tokens=NO_COLUMN_HOLDS)
        records.insert(17, bad)
        for record in records:
            writer.submit(record, charge_for(record))
        writer.start()
        await wait_until(lambda: writer.idle)
        later = make_record(ws.id, cost=10)
        writer.submit(later, charge_for(later))
        await writer.stop()

        assert await count_rows(store) == (41, 42), "40 + the later record, and their charges + the grant"
        assert await store.get_generation(bad.id) is None
        assert writer.refused_total == 1 and writer.pending(bad.id) is None
        assert bad.id not in {charge.generation_id for charge in flushed}, "not charged in the database"
        assert len(flushed) == 41
        wallet = await store.get_wallet(ws.id)
        assert wallet.spent_total_nano == 41 * 10
        (kept,) = refused_files(spool)
        (line,) = kept.read_bytes().splitlines()
        record, charge = decode_item(line)
        assert record == bad and charge == charge_for(bad)
        assert orjson.loads(line)["error"], "the database's reason is kept with the record"

    with_store(database_url, body)


def test_a_refused_charge_leaves_the_unflushed_total_so_the_balance_is_the_databases(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Before, a refused record's charge stayed in the worker's "not yet written" total until it
    restarted: its balance disagreed with the database (and with every other worker), and a
    record retried later (``aistats-gateway spool retry-refused``) would have counted twice."""

    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 1_000_000)
        book = WalletBook()
        book.load(await store.load_wallets())
        writer = BatchedWriter(
            store, on_flushed=book.flushed, on_refused=book.refused, spool=Spool(tmp_path / "spool", 10**7)
        )
        good = make_record(ws.id, cost=300)
        bad = make_record(ws.id, cost=200, input_tokens=NO_COLUMN_HOLDS)
        for record in (good, bad):
            book.settle(book.reserve(ws.id, record.cost_nano), record.cost_nano)
            writer.submit(record, charge_for(record))
        assert book.snapshot(ws.id)["balance"] == 1_000_000 - 500
        writer.start()
        await wait_until(lambda: writer.idle)
        await writer.stop()

        assert writer.refused_total == 1
        database = await store.get_wallet(ws.id)
        assert database.balance_nano == 1_000_000 - 300
        assert book.snapshot(ws.id)["balance"] == database.balance_nano, "the refused 200 is not held"
        assert book.snapshot(ws.id)["available"] == database.balance_nano

    with_store(sqlite_url, body)


def test_a_refused_record_in_a_spool_segment_is_set_aside_and_the_segment_replayed(
    sqlite_url: str, tmp_path: Path
) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        switch = SwitchableStore(store)
        switch.down = True
        spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
        writer = BatchedWriter(
            switch, max_batch=20, max_delay=0.001, retry_initial_delay=0.01, retry_max_delay=0.05,
            spool=spool, spool_after_s=0.02,
        )  # fmt: skip
        writer.start()
        records = [make_record(ws.id) for _ in range(30)]
        bad = make_record(ws.id, output_tokens=NO_COLUMN_HOLDS)
        records.insert(3, bad)
        for record in records:
            writer.submit(record, None)
        await wait_until(lambda: spool.records == 31)
        switch.down = False
        await wait_until(lambda: writer.idle)
        await writer.stop()

        assert await count_rows(store) == (30, 0)
        assert writer.refused_total == 1 and writer.replayed_total == 30
        assert not list(spool.root.glob("w-*/seg-*")), "the segment is gone once replayed"
        (kept,) = refused_files(spool)
        assert decode_item(kept.read_bytes().splitlines()[0])[0] == bad

    with_store(sqlite_url, body)


def test_an_outage_sets_nothing_aside_and_splits_no_batch(sqlite_url: str, tmp_path: Path) -> None:
    """A lost connection is not about the data: the batch is retried whole, one write per retry."""

    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        switch = SwitchableStore(store)
        switch.down = True
        spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
        writer = BatchedWriter(switch, max_delay=0.001, retry_initial_delay=0.05, spool=spool)
        for _ in range(64):
            writer.submit(make_record(ws.id), None)
        writer.start()
        await asyncio.sleep(0.12)
        assert 1 <= len(switch.attempts) <= 3, "backoff between whole-batch retries, no split"
        switch.down = False
        await writer.stop()
        assert await count_rows(store) == (64, 0) and writer.refused_total == 0
        assert not (spool.root / REFUSED_DIR).exists()

    with_store(sqlite_url, body)


class RefusingThenDownStore(Store):
    """A real store whose first write is refused for its data, then the database goes away."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.down = True
        self.calls = 0

    async def write_batch(self, generations_: list[GenerationRecord], charges: list[Charge]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise OperationalError("INSERT ...", {}, OverflowError("a value refused"))
        if self.down:
            raise OperationalError("INSERT ...", {}, ConnectionRefusedError("connection refused"))
        await super().write_batch(generations_, charges)


def test_a_split_cut_short_by_an_outage_sets_nothing_aside(sqlite_url: str, tmp_path: Path) -> None:
    """Only records refused for their data, alone and twice, are set aside; an outage keeps all."""

    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        flaky = RefusingThenDownStore(store)
        spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
        writer = BatchedWriter(flaky, max_batch=128, retry_initial_delay=0.01, spool=spool)
        for _ in range(128):
            writer.submit(make_record(ws.id), None)
        writer.start()
        await wait_until(lambda: flaky.calls >= 4)
        assert writer.refused_total == 0
        flaky.down = False
        await writer.stop()
        assert await count_rows(store) == (128, 0) and writer.refused_total == 0
        assert not (spool.root / REFUSED_DIR).exists()

    with_store(sqlite_url, body)


def test_a_refused_record_alone_in_its_batch_is_set_aside(sqlite_url: str, tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
        writer = BatchedWriter(store, max_delay=0.001, spool=spool)
        writer.start()
        bad = make_record(ws.id, reasoning_tokens=NO_COLUMN_HOLDS)
        writer.submit(bad, None)
        await wait_until(lambda: writer.idle)
        assert writer.refused_total == 1 and len(refused_files(spool)) == 1
        await writer.stop()

    with_store(sqlite_url, body)


def test_isolate_finds_refused_records_in_both_halves_once_a_part_was_written() -> None:
    refused = {5, 6, 40}
    writes: list[Sequence[int]] = []

    async def write(part: Sequence[int]) -> None:
        writes.append(part)
        if refused & set(part):
            raise ValueError("refused")

    found = asyncio.run(isolate(list(range(64)), write))
    assert sorted(found.failing) == sorted(refused)
    assert sorted(found.written) == sorted(set(range(64)) - refused)
    assert len(writes) < 64, "parts, not one write per record"


def test_isolate_with_every_record_refused_writes_fewer_than_twice_their_number() -> None:
    calls = 0

    async def write(part: Sequence[int]) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("refused")

    found = asyncio.run(isolate(list(range(500)), write))
    assert found.failing == list(range(500)) and found.written == []
    assert calls == 2 * 500 - 2  # every inner node of the split tree but its root


@pytest.mark.parametrize(
    ("error", "about_the_data"),
    [
        (OverflowError("Python int too large to convert to SQLite INTEGER"), True),
        (OperationalError("INSERT", {}, OverflowError("too large")), True),
        (OperationalError("INSERT", {}, ConnectionResetError("reset")), False),
        (TimeoutError("no answer"), False),
        (OSError("disk I/O error"), False),
    ],
)
def test_only_errors_about_the_data_split_a_batch(error: Exception, about_the_data: bool) -> None:
    assert is_data_error(error) is about_the_data


def test_a_refused_file_copied_in_as_a_spool_segment_is_replayed_at_start(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The retry docs/deployment.md gives: copy refused/<id>.jsonl into spool/w-<any>/seg-….jsonl."""

    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 1_000)
        fixed = make_record(ws.id, cost=7)
        manual = tmp_path / "spool" / "w-manual"
        manual.mkdir(parents=True)
        (manual / "seg-00000001.jsonl").write_bytes(
            refused_line(fixed, charge_for(fixed), "IntegrityError: …")
        )
        writer = BatchedWriter(store, spool=Spool(tmp_path / "spool", max_bytes=10_000_000))
        assert await writer.replay_orphans() == 1
        stored = await store.get_generation(fixed.id)
        assert stored is not None and stored.cost_nano == 7
        assert (await store.get_wallet(ws.id)).spent_total_nano == 7
        assert not manual.exists()

    with_store(sqlite_url, body)
