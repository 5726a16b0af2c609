"""``aistats-gateway spool status|retry-refused``: refused usage records are seen and written again.

Run as a real process against a real SQLite file; the refused records are refused by the real
driver (an integer no column holds), as in tests/test_writer_refused.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from sqlalchemy.exc import OperationalError

from aistats_gateway.store.records import Charge, GenerationRecord, WalletRow
from aistats_gateway.store.repositories import Store
from aistats_gateway.store.spool import REFUSED_DIR, SEGMENT_SUFFIX, Spool, decode_item, spool_root, try_lock
from aistats_gateway.store.spool_admin import DatabaseUnavailable, retry_refused

from .test_cli import cli
from .test_store import charge_for, make_record, with_store
from .test_writer_refused import NO_COLUMN_HOLDS


def _database(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'gateway.db'}"


def _setup(tmp_path: Path) -> tuple[str, Spool]:
    """A data dir with a migrated database, 1 USD of credits; its workspace id and spool."""
    cli(tmp_path, "credits", "grant", "--workspace", "default", "--usd", "1")

    async def workspace_id(store: Store) -> str:
        return (await store.ensure_workspace("default")).id

    return with_store(_database(tmp_path), workspace_id), Spool(spool_root(tmp_path / "data"), 10**7)


def _wallet(tmp_path: Path, workspace_id: str) -> WalletRow:
    async def read(store: Store) -> WalletRow:
        return await store.get_wallet(workspace_id)

    return with_store(_database(tmp_path), read)


def _stored(tmp_path: Path, generation_id: str) -> GenerationRecord | None:
    async def read(store: Store) -> GenerationRecord | None:
        return await store.get_generation(generation_id)

    return with_store(_database(tmp_path), read)


def test_retry_refused_writes_what_the_database_takes_now_and_keeps_the_rest(tmp_path: Path) -> None:
    workspace_id, spool = _setup(tmp_path)
    good = make_record(workspace_id, cost=250_000_000)
    bad = make_record(workspace_id, cost=100_000_000, input_tokens=NO_COLUMN_HOLDS)
    kept = spool.set_aside([(good, charge_for(good)), (bad, charge_for(bad))], "IntegrityError: earlier")

    status = json.loads(cli(tmp_path, "spool", "status", "--json").stdout)
    assert [(item["file"], item["records"]) for item in status["refused"]] == [(str(kept), 2)]
    assert status["refused"][0]["reason"] == "IntegrityError: earlier"
    assert "IntegrityError: earlier" in cli(tmp_path, "spool", "status").stdout

    first = cli(tmp_path, "spool", "retry-refused", check=False)
    assert first.returncode == 1, "a record is still refused"
    assert "1 written, 1 still refused" in first.stdout and "written 1, still refused 1" in first.stdout
    assert _stored(tmp_path, good.id) == good
    assert _stored(tmp_path, bad.id) is None
    assert _wallet(tmp_path, workspace_id).spent_total_nano == 250_000_000
    (line,) = kept.read_bytes().splitlines()
    assert decode_item(line) == (bad, charge_for(bad))
    assert "earlier" not in orjson.loads(line)["error"], "the database's latest reason replaces the old one"

    again = json.loads(cli(tmp_path, "spool", "retry-refused", "--json", check=False).stdout)
    assert again == [
        {"file": str(kept), "written": 0, "still_refused": 1, "unreadable_lines": 0,
         "reason": again[0]["reason"], "removed": False}
    ]  # fmt: skip
    assert _wallet(tmp_path, workspace_id).spent_total_nano == 250_000_000, "nothing charged twice"


def test_a_file_whose_records_are_all_written_is_removed(tmp_path: Path) -> None:
    workspace_id, spool = _setup(tmp_path)
    records = [make_record(workspace_id, cost=10) for _ in range(3)]
    first = spool.set_aside([(r, charge_for(r)) for r in records[:2]], "ValueError: a bug since fixed")
    second = spool.set_aside([(records[2], None)], "ValueError: a bug since fixed")

    done = cli(tmp_path, "spool", "retry-refused", str(second))
    assert "1 written; file removed" in done.stdout and not second.exists() and first.exists()
    cli(tmp_path, "spool", "retry-refused")
    assert not first.exists()
    assert all(_stored(tmp_path, record.id) == record for record in records)
    assert _wallet(tmp_path, workspace_id).spent_total_nano == 20, "the record without a charge costs nothing"
    assert json.loads(cli(tmp_path, "spool", "status", "--json").stdout)["refused"] == []


def test_status_counts_records_waiting_in_writers_segments(tmp_path: Path) -> None:
    workspace_id, spool = _setup(tmp_path)
    spool.append([(make_record(workspace_id), None) for _ in range(5)])
    spool.close()  # as a stopped gateway leaves it: adopted and replayed by the next to start
    pending = json.loads(cli(tmp_path, "spool", "status", "--json").stdout)["pending"]
    assert (pending["segments"], pending["records"], pending["writer_folders"]) == (1, 5, 1)
    assert "5 record(s) in 1 segment(s)" in cli(tmp_path, "spool", "status").stdout


def test_two_retries_at_once_are_refused_by_name(tmp_path: Path) -> None:
    workspace_id, spool = _setup(tmp_path)
    record = make_record(workspace_id)
    kept = spool.set_aside([(record, None)], "ValueError: x")
    lock = try_lock(kept.parent / ".retry.lock")
    assert lock is not None
    try:
        busy = cli(tmp_path, "spool", "retry-refused", check=False)
    finally:
        lock.close()
    assert busy.returncode == 1 and "another retry" in busy.stderr
    assert kept.exists() and _stored(tmp_path, record.id) is None


def test_retry_refused_missing_file_is_named(tmp_path: Path) -> None:
    _setup(tmp_path)
    missing = cli(tmp_path, "spool", "retry-refused", str(tmp_path / "nope.jsonl"), check=False)
    assert missing.returncode == 1 and "nope.jsonl: no such file" in missing.stderr


class GoesDownAfterOneWrite(Store):
    """A real store that loses its database after its first write."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.writes = 0

    async def write_batch(self, generations_: list[GenerationRecord], charges: list[Charge]) -> None:
        self.writes += 1
        if self.writes > 1:
            raise OperationalError("INSERT ...", {}, ConnectionRefusedError("connection refused"))
        await super().write_batch(generations_, charges)


def test_a_database_outage_stops_the_retry_and_keeps_what_was_not_written(tmp_path: Path) -> None:
    workspace_id, spool = _setup(tmp_path)
    records = [make_record(workspace_id, cost=5) for _ in range(3)]
    kept = spool.set_aside([(r, charge_for(r)) for r in records], "ValueError: x")

    async def body(store: Store) -> DatabaseUnavailable | None:
        try:
            await retry_refused(GoesDownAfterOneWrite(store), spool.root)
        except DatabaseUnavailable as exc:
            return exc
        return None

    stopped = with_store(_database(tmp_path), body)
    assert stopped is not None and stopped.outcomes[0].written == 1
    assert [decode_item(line)[0] for line in kept.read_bytes().splitlines()] == records[1:]
    assert not list((spool.root / REFUSED_DIR).glob(f".*{SEGMENT_SUFFIX}.tmp")), "no temporary file left"


def test_retry_refused_on_either_database_writes_the_good_record_and_keeps_the_refused_one(
    database_url: str, tmp_path: Path
) -> None:
    """The retry's own path (SQLAlchemy's write_batch, the data-error test) on Postgres too."""

    async def body(store: Store) -> tuple[int, int]:
        ws = await store.ensure_workspace("default")
        await store.grant_credits(ws.id, 1_000)
        spool = Spool(tmp_path / "spool", 10**7)
        good = make_record(ws.id, cost=7)
        bad = make_record(ws.id, cost=3, output_tokens=NO_COLUMN_HOLDS)
        kept = spool.set_aside([(bad, charge_for(bad)), (good, charge_for(good))], "earlier")
        (outcome,) = await retry_refused(store, spool.root)
        assert (outcome.written, outcome.still_refused, outcome.removed) == (1, 1, False)
        assert await store.get_generation(good.id) == good and await store.get_generation(bad.id) is None
        assert [decode_item(line)[0] for line in kept.read_bytes().splitlines()] == [bad]
        (again,) = await retry_refused(store, spool.root)
        assert (again.written, again.still_refused) == (0, 1)
        wallet = await store.get_wallet(ws.id)
        return wallet.balance_nano, wallet.spent_total_nano

    assert with_store(database_url, body) == (1_000 - 7, 7), "charged once, the refused one not at all"
