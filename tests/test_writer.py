"""The batched writer on real databases (SQLite and Postgres through ``database_url``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from aistats_gateway.store.db import create_engine
from aistats_gateway.store.migrate import migrate
from aistats_gateway.store.records import Charge, GenerationRecord
from aistats_gateway.store.repositories import Store
from aistats_gateway.store.spool import Segment, Spool
from aistats_gateway.store.tables import generations, ledger_entries
from aistats_gateway.store.writer import BatchedWriter

from .test_store import charge_for, make_record, with_store


class FlakyStore(Store):
    """A real store whose first ``failures`` batch writes fail.

    With ``after_commit`` the batch is committed first and the failure comes after it, like a
    connection lost before the commit was acknowledged: the writer must retry without charging twice.
    """

    def __init__(self, store: Store, failures: int, *, after_commit: bool = False) -> None:
        super().__init__(store.engine)
        self.failures_left = failures
        self.after_commit = after_commit
        self.calls = 0

    async def write_batch(self, generations_: list[GenerationRecord], charges: list[Charge]) -> None:
        self.calls += 1
        if self.failures_left > 0:
            self.failures_left -= 1
            if self.after_commit:
                await super().write_batch(generations_, charges)
            raise OperationalError("INSERT ...", {}, ConnectionResetError("connection reset by peer"))
        await super().write_batch(generations_, charges)


async def count_rows(store: Store) -> tuple[int, int]:
    async with store.engine.connect() as conn:
        gens = (await conn.execute(select(func.count()).select_from(generations))).scalar_one()
        ledger = (await conn.execute(select(func.count()).select_from(ledger_entries))).scalar_one()
    return int(gens), int(ledger)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def test_stop_drains_every_submitted_record_in_batches(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 10_000_000)
        flushed: list[Charge] = []
        writer = BatchedWriter(store, on_flushed=flushed.extend)
        writer.start()
        records = [make_record(ws.id, cost=i) for i in range(1000)]
        for record in records:
            writer.submit(record, charge_for(record))
        assert writer.queue_depth == 1000
        await writer.stop()

        assert writer.queue_depth == 0
        assert await count_rows(store) == (1000, 1000 + 1)  # + the grant
        assert writer.flush_count == 2  # max_batch 500
        assert sorted(c.generation_id for c in flushed) == sorted(r.id for r in records)
        spent = sum(range(1000))
        wallet = await store.get_wallet(ws.id)
        assert (wallet.balance_nano, wallet.spent_total_nano) == (10_000_000 - spent, spent)

    with_store(database_url, body)


def test_records_are_written_within_max_delay_in_one_batch(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        writer = BatchedWriter(store, max_batch=100, max_delay=0.05)
        writer.start()
        try:
            records = [make_record(ws.id) for _ in range(5)]
            for record in records:
                writer.submit(record, None)  # a record without a charge
            await wait_until(lambda: writer.flush_count >= 1, timeout=2.0)
            assert writer.flush_count == 1
            assert await count_rows(store) == (5, 0)
        finally:
            await writer.stop()

    with_store(database_url, body)


def test_batches_are_capped_at_max_batch(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        sizes: list[int] = []
        writer = BatchedWriter(store, max_batch=10, on_flushed=lambda charges: sizes.append(len(charges)))
        for _ in range(25):
            record = make_record(ws.id, cost=1)
            writer.submit(record, charge_for(record))
        writer.start()
        await writer.stop()
        assert sizes == [10, 10, 5]
        assert await count_rows(store) == (25, 25)

    with_store(database_url, body)


def test_pending_returns_a_record_until_it_is_written(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        writer = BatchedWriter(store)
        record = make_record(ws.id, cost=3)
        writer.submit(record, charge_for(record))
        assert writer.pending(record.id) is record
        assert await store.get_generation(record.id) is None

        writer.start()
        await wait_until(lambda: writer.flush_count == 1)
        assert writer.pending(record.id) is None
        assert await store.get_generation(record.id) == record
        await writer.stop()

    with_store(database_url, body)


def test_a_failed_batch_is_kept_and_retried_until_written(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 1_000)
        flaky = FlakyStore(store, failures=2)
        writer = BatchedWriter(flaky, retry_initial_delay=0.01)
        writer.start()
        records = [make_record(ws.id, cost=10) for _ in range(5)]
        for record in records:
            writer.submit(record, charge_for(record))
        await wait_until(lambda: writer.flush_count == 1)
        assert flaky.calls == 3
        assert writer.queue_depth == 0
        assert await count_rows(store) == (5, 5 + 1)
        assert (await store.get_wallet(ws.id)).balance_nano == 1_000 - 50
        await writer.stop()

    with_store(database_url, body)


def test_retrying_a_batch_that_did_commit_does_not_charge_twice(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 1_000)
        flaky = FlakyStore(store, failures=1, after_commit=True)
        writer = BatchedWriter(flaky, retry_initial_delay=0.01)
        writer.start()
        record = make_record(ws.id, cost=300)
        writer.submit(record, charge_for(record))
        await writer.stop()
        assert flaky.calls == 2
        wallet = await store.get_wallet(ws.id)
        assert (wallet.balance_nano, wallet.spent_total_nano) == (700, 300)
        assert await store.ledger_sum(ws.id) == 700

    with_store(database_url, body)


def test_stop_gives_up_after_bounded_retries_and_keeps_the_records(database_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        broken = FlakyStore(store, failures=10**9)
        writer = BatchedWriter(broken, retry_initial_delay=0.01, drain_attempts=3)
        writer.start()
        record = make_record(ws.id, cost=1)
        writer.submit(record, charge_for(record))
        started = time.monotonic()
        await asyncio.wait_for(writer.stop(), timeout=5.0)
        assert time.monotonic() - started < 2.0
        assert writer.queue_depth == 1  # not lost: still queued for a later start()
        assert writer.pending(record.id) is record
        assert writer.flush_count == 0

        broken.failures_left = 0  # the database is back
        writer.start()
        await writer.stop()
        assert writer.queue_depth == 0
        assert await store.get_generation(record.id) == record

    with_store(database_url, body)


def test_writer_holds_intake_when_the_database_is_slower_than_traffic(sqlite_url: str) -> None:
    class SlowStore(Store):
        async def write_batch(self, generations, charges):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.05)
            await super().write_batch(generations, charges)

    async def main() -> None:
        engine = create_engine(sqlite_url)
        await migrate(engine)
        store = SlowStore(engine)
        workspace = await store.ensure_workspace("default")
        writer = BatchedWriter(store, max_batch=10, max_delay=0.001, high_water=30)
        writer.start()
        for _ in range(40):
            writer.submit(make_record(workspace.id), None)
        assert writer.backlogged, "above the high-water mark new requests must wait"
        await asyncio.wait_for(writer.wait_for_room(), 5)
        assert writer.queue_depth <= 20 and not writer.backlogged
        await writer.stop()
        await engine.dispose()

    asyncio.run(main())


def test_writer_never_holds_intake_while_the_database_is_failing(sqlite_url: str) -> None:
    class DownStore(Store):
        async def write_batch(self, generations, charges):  # type: ignore[no-untyped-def]
            raise ConnectionError("database down")

    async def main() -> None:
        engine = create_engine(sqlite_url)
        await migrate(engine)
        store = DownStore(engine)
        workspace = await store.ensure_workspace("default")
        writer = BatchedWriter(store, max_batch=10, max_delay=0.001, high_water=30, retry_initial_delay=0.01)
        writer.start()
        writer.submit(make_record(workspace.id), None)
        await asyncio.sleep(0.05)  # the first write has failed by now
        for _ in range(59):
            writer.submit(make_record(workspace.id), None)
        assert not writer.backlogged, "an outage is absorbed by the queue, not by stalling requests"
        writer._stop_requested.set()
        task = writer._task
        assert task is not None
        task.cancel()
        await engine.dispose()

    asyncio.run(main())


# -- outages: backoff, the on-disk spool, replay ------------------------------------------------


class SwitchableStore(Store):
    """A real store with a switch: while ``down``, every batch write fails like a lost server."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.down = False
        self.attempts: list[float] = []

    async def write_batch(self, generations_: list[GenerationRecord], charges: list[Charge]) -> None:
        self.attempts.append(time.monotonic())
        if self.down:
            raise OperationalError("INSERT ...", {}, ConnectionRefusedError("connection refused"))
        await super().write_batch(generations_, charges)


def test_retries_back_off_exponentially_up_to_the_cap(sqlite_url: str) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        switch = SwitchableStore(store)
        switch.down = True
        writer = BatchedWriter(switch, max_delay=0.001, retry_initial_delay=0.02, retry_max_delay=0.08)
        writer.start()
        writer.submit(make_record(ws.id), None)
        await wait_until(lambda: len(switch.attempts) >= 6)
        gaps = [b - a for a, b in zip(switch.attempts, switch.attempts[1:], strict=False)]
        # Jitter waits between half and all of the delay: 20, 40, 80, 80, 80 ms.
        for gap, delay in zip(gaps, [0.02, 0.04, 0.08, 0.08, 0.08], strict=False):
            assert gap >= delay / 2 - 0.002
        assert gaps[1] > gaps[0] / 2 and max(gaps[2:5]) < 0.5, "capped at retry_max_delay"
        switch.down = False
        await writer.stop()
        assert await count_rows(store) == (1, 0)

    with_store(sqlite_url, body)


def test_an_outage_moves_records_to_the_spool_and_recovery_replays_them_once(
    sqlite_url: str, tmp_path: Path
) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 1_000_000)
        switch = SwitchableStore(store)
        flushed: list[Charge] = []
        spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
        writer = BatchedWriter(
            switch,
            max_batch=20,
            max_delay=0.001,
            on_flushed=flushed.extend,
            retry_initial_delay=0.01,
            retry_max_delay=0.05,
            spool=spool,
            spool_after_s=0.05,
        )
        writer.start()
        switch.down = True
        records = [make_record(ws.id, cost=i + 1) for i in range(300)]
        for record in records[:150]:
            writer.submit(record, charge_for(record))
        await wait_until(lambda: spool.records == 150)
        assert writer.queue_depth == 0, "the backlog left memory for the disk"
        assert writer.pending(records[0].id) is None
        for record in records[150:]:  # more traffic during the outage: never held
            writer.submit(record, charge_for(record))
            assert not writer.backlogged
        await wait_until(lambda: spool.records == 300)
        assert writer.spool_usage == (300, spool.bytes)
        assert flushed == [] and await count_rows(store) == (0, 1)

        switch.down = False
        await wait_until(lambda: writer.idle)
        assert sorted(c.generation_id for c in flushed) == sorted(r.id for r in records), "each reported once"
        assert await count_rows(store) == (300, 301)
        spent = sum(r.cost_nano for r in records)
        wallet = await store.get_wallet(ws.id)
        assert (wallet.balance_nano, wallet.spent_total_nano) == (1_000_000 - spent, spent)
        assert not list((tmp_path / "spool").glob("w-*/seg-*")), "replayed files are deleted"
        await writer.stop()

    with_store(sqlite_url, body)


def test_a_full_spool_holds_intake_with_a_log_line_and_loses_nothing(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        switch = SwitchableStore(store)
        spool = Spool(tmp_path / "spool", max_bytes=6_000)  # room for a handful of records
        writer = BatchedWriter(
            switch,
            max_batch=5,
            max_delay=0.001,
            high_water=20,
            retry_initial_delay=0.01,
            retry_max_delay=0.02,
            spool=spool,
            spool_after_s=0.01,
        )
        writer.start()
        switch.down = True
        records = [make_record(ws.id) for _ in range(40)]
        with caplog.at_level(logging.ERROR, logger="aistats_gateway.store.writer"):
            for record in records:
                writer.submit(record, None)
                await asyncio.sleep(0.002)
            await wait_until(lambda: spool.full and writer.backlogged)
        assert "is full" in caplog.text and "writer.spool_max_mb" in caplog.text
        assert spool.records + writer.queue_depth == 40, "nothing dropped"

        switch.down = False
        await asyncio.wait_for(writer.wait_for_room(), 5)
        await wait_until(lambda: writer.idle)
        assert await count_rows(store) == (40, 0)
        await writer.stop()

    with_store(sqlite_url, body)


def test_stopping_during_an_outage_leaves_a_spool_that_the_next_writer_replays(
    sqlite_url: str, tmp_path: Path
) -> None:
    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 10_000)
        switch = SwitchableStore(store)
        switch.down = True
        first = Spool(tmp_path / "spool", max_bytes=10_000_000)
        writer = BatchedWriter(switch, retry_initial_delay=0.01, drain_attempts=2, spool=first)
        writer.start()
        records = [make_record(ws.id, cost=100) for _ in range(12)]
        for record in records:
            writer.submit(record, charge_for(record))
        await asyncio.wait_for(writer.stop(), 5)  # the process exits after this
        assert writer.queue_depth == 0
        (segment,) = list((tmp_path / "spool").glob("w-*/seg-*.jsonl"))
        copy = segment.read_bytes()
        assert copy.count(b"\n") == 12, "stop moved the records to disk"

        # The next process: the database is back.
        flushed: list[Charge] = []
        second = Spool(tmp_path / "spool", max_bytes=10_000_000)
        restarted = BatchedWriter(store, on_flushed=flushed.extend, spool=second)
        assert await restarted.replay_orphans() == 12
        assert await count_rows(store) == (12, 13)
        assert flushed == [], "charges of another process never reach this one's wallet book"
        assert (await store.get_wallet(ws.id)).balance_nano == 10_000 - 1_200
        assert not list((tmp_path / "spool").iterdir()), "the dead writer's spool is gone"

        # A crash between the write and the delete replays the same file again: no double charge.
        again = tmp_path / "spool" / "w-00000000000000000000000000"
        again.mkdir()
        (again / "seg-00000001.jsonl").write_bytes(copy)
        assert await restarted.replay_orphans() == 12
        assert await count_rows(store) == (12, 13)
        assert (await store.get_wallet(ws.id)).balance_nano == 10_000 - 1_200
        assert await store.ledger_sum(ws.id) == 10_000 - 1_200

    with_store(sqlite_url, body)


class SpoolThatBreaksOnce(Spool):
    """The real spool, except that looking for the next segment fails once, unexpectedly."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, max_bytes=10_000_000)
        self.broke = False

    def next_segment(self) -> Segment | None:
        if not self.broke:
            self.broke = True
            raise RuntimeError("unexpected")
        return super().next_segment()


def test_an_unexpected_error_restarts_the_writer_task_and_loses_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A background task that ended on an error would stop recording usage while serving went on."""

    async def body(store: Store) -> None:
        ws = await store.ensure_workspace("default")
        switch = SwitchableStore(store)
        switch.down = True
        spool = SpoolThatBreaksOnce(tmp_path / "spool")
        writer = BatchedWriter(
            switch, max_delay=0.001, retry_initial_delay=0.01, retry_max_delay=0.02, spool=spool,
            spool_after_s=0.01, restart_delay=0.01,
        )  # fmt: skip
        writer.start()
        records = [make_record(ws.id) for _ in range(20)]
        for record in records[:10]:
            writer.submit(record, None)
        await wait_until(lambda: spool.records == 10)  # spooled, then next_segment breaks
        await wait_until(lambda: spool.broke)
        switch.down = False
        for record in records[10:]:
            writer.submit(record, None)
        await wait_until(lambda: writer.idle)
        await writer.stop()
        assert await count_rows(store) == (20, 0)

    with_store(sqlite_url, body)
