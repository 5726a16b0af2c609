"""The SQLite writer process of ``serve --workers N`` (store/sqlite_writer.py, decision 011).

Its batch contract is tested with the thread path in tests/test_direct_sqlite.py (parametrized
over both); here: batches really leave the worker, a crashed writer is restarted and the batch
retried, signals do not stop it early, it dies with ``serve``, and strangers are refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aistats_gateway.store.db import close_store, create_engine, create_store
from aistats_gateway.store.direct_sqlite import DirectSqliteStore
from aistats_gateway.store.migrate import migrate
from aistats_gateway.store.sqlite_batches import WriterFileLock
from aistats_gateway.store.sqlite_writer import (
    SqliteWriterProcess,
    WriterAddress,
    WriterClient,
    WriterUnavailable,
    encode_batch,
)

from .harness import wait_for
from .test_store import charge_for, make_record


def migrated(path: Path) -> Path:
    async def run() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    return path


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped yet) counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def writer_process(tmp_path: Path):  # type: ignore[no-untyped-def]
    process = SqliteWriterProcess(str(migrated(tmp_path / "g.db")))
    process.start()
    yield process
    process.stop()


def test_batches_are_written_by_the_writer_process_not_the_workers_thread(
    tmp_path: Path, writer_process: SqliteWriterProcess
) -> None:
    statements: list[str] = []

    async def main() -> None:
        store = create_store(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}", writer_process.address)
        assert isinstance(store, DirectSqliteStore)
        try:
            ws = await store.ensure_workspace("default")
            await store.grant_credits(ws.id, 10_000)
            store.trace(statements.append)
            records = [make_record(ws.id, cost=100) for _ in range(70)]  # more than one chunk
            await store.write_batch(records, [charge_for(r) for r in records])
            await store.load_wallets()  # reads stay on the worker's thread
        finally:
            await close_store(store)

    asyncio.run(main())
    assert count(tmp_path / "g.db", "generations") == 70
    assert count(tmp_path / "g.db", "ledger_entries") == 71  # the grant and 70 charges
    assert not any("INSERT" in sql for sql in statements), statements
    assert any("FROM wallets" in sql for sql in statements)


def test_a_killed_writer_process_is_restarted_and_the_retried_batch_lands_once(
    tmp_path: Path, writer_process: SqliteWriterProcess
) -> None:
    async def main() -> None:
        store = create_store(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}", writer_process.address)
        try:
            ws = await store.ensure_workspace("default")
            await store.grant_credits(ws.id, 10_000)
            first = make_record(ws.id, cost=7)
            await store.write_batch([first], [charge_for(first)])
            old_pid = writer_process.pid
            assert old_pid is not None
            os.kill(old_pid, signal.SIGKILL)
            wait_for(lambda: not alive(old_pid), timeout=5, interval=0.02)
            second = make_record(ws.id, cost=5)
            with pytest.raises(WriterUnavailable):
                await store.write_batch([second], [charge_for(second)])
            wait_for(lambda: writer_process.restarts == 1 and writer_process.pid != old_pid, timeout=10)
            # The usage writer retries the same batch (and the first one again: idempotent).
            await store.write_batch([first, second], [charge_for(first), charge_for(second)])
            wallet = await store.get_wallet(ws.id)
            assert (wallet.spent_total_nano, wallet.balance_nano) == (12, 10_000 - 12)
        finally:
            await close_store(store)

    asyncio.run(main())
    assert count(tmp_path / "g.db", "generations") == 2


def test_the_writer_process_outlives_sigterm_and_sigint_and_stops_with_serve(tmp_path: Path) -> None:
    """Signals reach the whole process group; workers still drain through the writer meanwhile."""
    process = SqliteWriterProcess(str(migrated(tmp_path / "g.db")))
    address = process.start()
    pid = process.pid
    assert pid is not None
    try:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        time.sleep(0.3)
        assert alive(pid)
        WriterClient(address).write(encode_batch([], []))  # still answers
    finally:
        process.stop()
    assert not alive(pid)
    assert not Path(address.socket_path).parent.exists(), "the socket's folder is removed"
    assert process.restarts == 0, "a requested stop is not a crash"


def test_the_writer_process_exits_and_removes_its_socket_folder_when_serve_dies(tmp_path: Path) -> None:
    """``serve`` killed with SIGKILL cannot stop it: the control socket's end of file does."""
    database = migrated(tmp_path / "g.db")
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from aistats_gateway.store.sqlite_writer import SqliteWriterProcess\n"
            f"p = SqliteWriterProcess({str(database)!r}); p.start()\n"
            "print(p.pid, p.address.socket_path, flush=True); time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pid, socket_path = parent.stdout.readline().split()
    child = int(pid)
    assert alive(child) and Path(socket_path).exists()
    parent.kill()
    parent.wait()
    wait_for(lambda: not alive(child), timeout=10, interval=0.05)
    assert not Path(socket_path).parent.exists()  # nothing left behind in the temp folder


def test_a_client_without_the_key_is_refused(tmp_path: Path, writer_process: SqliteWriterProcess) -> None:
    stranger = WriterClient(WriterAddress(writer_process.address.socket_path, b"not the key"), timeout=5)
    with pytest.raises(WriterUnavailable):
        stranger.write(encode_batch([], []))
    WriterClient(writer_process.address).write(encode_batch([], []))  # the writer still serves


def test_a_batch_of_another_protocol_version_is_refused(
    tmp_path: Path, writer_process: SqliteWriterProcess
) -> None:
    client = WriterClient(writer_process.address)
    connection_payload = b'["aistats-sqlite-writer/0", [], []]'
    with pytest.raises(WriterUnavailable, match="protocol"):
        client.write(connection_payload)
    client.close()


def test_the_address_travels_to_the_workers_in_the_environment() -> None:
    address = WriterAddress("/tmp/x/sock", bytes(range(32)))
    assert WriterAddress.from_env(address.to_env()) == address
    assert WriterAddress.from_env({}) is None


def test_the_writer_file_lock_waits_for_another_process_then_gives_up(tmp_path: Path) -> None:
    """The flock that queues writers of several `serve` instances has a bound, like every wait."""
    database = str(tmp_path / "g.db")
    holder = WriterFileLock(database)
    waiter = WriterFileLock(database, timeout=0.2)
    with holder:  # another open file description: conflicts like another process would
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"writer\.lock"):
            waiter.__enter__()
        assert 0.2 <= time.monotonic() - started < 2
    with waiter:  # free again: taken at once
        pass
    holder.close()
    waiter.close()
