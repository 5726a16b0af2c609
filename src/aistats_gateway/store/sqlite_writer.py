"""One writer process for a SQLite file, shared by every worker of ``serve``.

SQLite takes one writer at a time. With ``--workers N`` each worker used to write its own
batches: under load a worker's database thread waits for its event loop to hand over the GIL
between rows, so a 400-row batch held SQLite's write lock for tens of milliseconds, the other
workers' writers queued behind it, and their queues reached the high-water mark that holds
intake (seconds of stalled requests; docs/decisions/011-one-sqlite-writer-process.md).

``serve --workers N`` (N > 1) on a SQLite file therefore starts :class:`SqliteWriterProcess`:
a child process that owns the only writing connection and shares no GIL with any event loop.
Workers keep their own batched writers (queue, retries, spool) and send each batch, encoded
with orjson, over an authenticated Unix socket (``multiprocessing.connection``); the child
builds the rows, writes them in one transaction with :func:`.sqlite_batches.write_rows` and
answers ``ok`` or the error, so a batch is reported written only once it is committed. Reads
(key and wallet refreshes) stay in the workers. One worker writes the file from its own thread
(measured better for it: decision 011).

The child ignores SIGINT and SIGTERM (they reach the whole process group, and workers still
drain their queues through it while they stop); it exits when ``serve`` closes the control socket
or dies. ``serve`` restarts a child that crashed; meanwhile the workers' writes fail and their
writers retry and spool, as during a database outage.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import orjson

from .isolation import is_data_error

logger = logging.getLogger("aistats_gateway.store")

ENV_SOCKET = "AISTATS_SQLITE_WRITER_SOCKET"
ENV_KEY = "AISTATS_SQLITE_WRITER_KEY"
# Each batch starts with this tag; a worker and a writer of different versions refuse each other.
PROTOCOL = "aistats-sqlite-writer/1"
# How long a worker waits for one batch's answer before it gives up on the connection (the write
# is idempotent, so its writer's retry is safe even if the batch committed meanwhile).
WRITE_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 15.0
_OK = b"ok"
_REFUSED = b"refused "  # the answer's prefix when the database refused the batch's data


class WriterUnavailable(RuntimeError):
    """The writer process did not take a batch (not running, crashed, timed out or refused)."""


class RecordsRefused(ValueError):
    """The writer process's database refused a value of the batch (store/isolation.py splits it)."""


@dataclass(frozen=True)
class WriterAddress:
    """Where the writer process listens and the key that authenticates its clients."""

    socket_path: str
    authkey: bytes

    def to_env(self) -> dict[str, str]:
        """The environment variables that tell ``serve``'s workers about the writer."""
        return {ENV_SOCKET: self.socket_path, ENV_KEY: self.authkey.hex()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WriterAddress | None:
        """The address ``serve`` put in the environment, or None when there is no writer process."""
        path, key = environ.get(ENV_SOCKET), environ.get(ENV_KEY)
        if not path or not key:
            return None
        return cls(path, bytes.fromhex(key))


class WriterClient:
    """A worker's connection to the writer process; used from one thread (the store's)."""

    def __init__(self, address: WriterAddress, timeout: float = WRITE_TIMEOUT_S) -> None:
        self._address = address
        self._timeout = timeout
        self._connection: Connection | None = None

    def write(self, payload: bytes) -> None:
        """Send one batch and wait until it is committed; :class:`WriterUnavailable` otherwise."""
        try:
            if self._connection is None:
                self._connection = Client(self._address.socket_path, "AF_UNIX", authkey=self._address.authkey)
            self._connection.send_bytes(payload)
            if not self._connection.poll(self._timeout):
                raise TimeoutError(f"no answer within {self._timeout:g} s")
            answer = self._connection.recv_bytes()
        except (OSError, EOFError, TimeoutError, multiprocessing.AuthenticationError) as exc:
            self.close()
            raise WriterUnavailable(f"SQLite writer process unavailable: {exc!r}") from exc
        if answer.startswith(_REFUSED):
            raise RecordsRefused(answer[len(_REFUSED) :].decode(errors="replace"))
        if answer != _OK:
            raise WriterUnavailable(
                f"SQLite writer process refused the batch: {answer.decode(errors='replace')}"
            )

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.close()
            self._connection = None


def encode_batch(record_chunks: Sequence[bytes], charges: Sequence[Any]) -> bytes:
    """One batch on the wire: ``[PROTOCOL, [[record, ...], ...], [charge, ...]]``.

    ``record_chunks`` are orjson arrays of :class:`~.records.GenerationRecord` (the worker encodes
    them a few at a time, so no single call holds the GIL long); charges are
    :class:`~.records.Charge`. The writer process turns them into rows.
    """
    return b"".join(
        (b'["', PROTOCOL.encode(), b'",[', b",".join(record_chunks), b"],", orjson.dumps(charges), b"]")
    )


class SqliteWriterProcess:
    """``serve``'s side: start the child, restart it if it dies, stop it last."""

    def __init__(self, database_path: str) -> None:
        self._database_path = database_path
        self._socket_dir = tempfile.mkdtemp(prefix="aistats-writer-")  # 0700: only this user
        self._address = WriterAddress(os.path.join(self._socket_dir, "sock"), secrets.token_bytes(32))
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def address(self) -> WriterAddress:
        return self._address

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> WriterAddress:
        """Start the child, wait until it listens, and watch it from a thread."""
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="aistats-writer-watch", daemon=True)
        self._watcher.start()
        return self._address

    def stop(self, timeout: float = 10.0) -> None:
        """Close the control socket (the child ends its transaction and exits), then clean up."""
        self._stopping.set()
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.error(
                    "SQLite writer process %s did not stop within %g s; killing it", self.pid, timeout
                )
                self._process.kill()
                self._process.wait(5.0)
        if self._watcher is not None:
            self._watcher.join(5.0)
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._address.socket_path)  # a crashed child's socket
        ours, theirs = socket.socketpair()
        argv = [
            sys.executable,
            "-m",
            __name__,
            self._database_path,
            self._address.socket_path,
            str(theirs.fileno()),
        ]
        # The key goes through the environment, which only this user can read (argv is public).
        env = {**os.environ, ENV_KEY: self._address.authkey.hex()}
        with theirs:
            process = subprocess.Popen(argv, env=env, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        ours.settimeout(READY_TIMEOUT_S)
        try:
            ready = ours.recv(16)  # "listening", or nothing when the child exited
            if not ready:
                raise RuntimeError(f"SQLite writer process exited at start ({process.wait()})")
        except BaseException as exc:
            ours.close()
            process.kill()
            process.wait()
            if isinstance(exc, TimeoutError):
                raise RuntimeError(
                    f"SQLite writer process did not start within {READY_TIMEOUT_S:g} s"
                ) from None
            raise
        ours.settimeout(None)
        if self._control is not None:
            self._control.close()  # a crashed child's
        self._process, self._control = process, ours

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            try:
                process.wait(0.5)
            except subprocess.TimeoutExpired:
                continue
            if self._stopping.is_set():
                return
            logger.error(
                "SQLite writer process %s exited (%s); restarting it (workers retry and spool meanwhile)",
                process.pid,
                process.returncode,
            )
            try:
                self._spawn()
                self.restarts += 1
            except (OSError, RuntimeError):
                logger.exception("SQLite writer process did not restart; trying again in 1 s")
                self._stopping.wait(1.0)


# -- the child ------------------------------------------------------------------------------------


def serve_writer(database_path: str, socket_path: str, authkey: bytes, control: socket.socket) -> None:
    """The child's work: one connection to the file, one batch at a time, until ``serve`` is gone.

    ``control`` is the child's end of a socket pair with ``serve``: "listening" goes out on it
    once the socket accepts, and its end of file (``serve`` stopped or died) ends this process.
    """
    from .sqlite_batches import WriterFileLock, generation_row_from_json, open_write_connection, write_rows

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    database = open_write_connection(database_path)
    file_lock = WriterFileLock(database_path)  # other `serve` instances on the same file
    write_lock = threading.Lock()

    def write(records: list[dict[str, Any]], charge_rows: list[tuple[str, str, int]]) -> None:
        with write_lock, file_lock:
            write_rows(database, records, charge_rows, generation_row_from_json)

    def until_serve_is_gone() -> None:
        with contextlib.suppress(OSError):
            while control.recv(64):
                pass
        with write_lock:  # never in the middle of a transaction
            # serve removes the socket's folder when it stops; when it was killed, nobody else will.
            with contextlib.suppress(OSError):
                os.unlink(socket_path)
                os.rmdir(os.path.dirname(socket_path))
            os._exit(0)

    def handle(connection: Connection) -> None:
        with connection:
            while True:
                try:
                    payload = connection.recv_bytes()
                except (EOFError, OSError):
                    return  # the worker closed or died
                answer = _write_payload(payload, write)
                try:
                    connection.send_bytes(answer)
                except OSError:
                    return

    listener = Listener(socket_path, "AF_UNIX", authkey=authkey)
    threading.Thread(target=until_serve_is_gone, name="control", daemon=True).start()
    with listener:
        control.sendall(b"listening")
        while True:
            try:
                connection = listener.accept()
            except (OSError, EOFError, multiprocessing.AuthenticationError) as exc:
                logger.warning("SQLite writer refused a connection: %r", exc)
                continue
            threading.Thread(target=handle, args=(connection,), name="batch", daemon=True).start()


def _write_payload(
    payload: bytes, write: Callable[[list[dict[str, Any]], list[tuple[str, str, int]]], None]
) -> bytes:
    """Decode and write one batch; ``ok``, or the error as text for the worker's log."""
    try:
        tag, record_chunks, charges = orjson.loads(payload)
        if tag != PROTOCOL:
            return f"protocol {tag!r} is not {PROTOCOL!r}".encode()
        records = [record for chunk in record_chunks for record in chunk]
        write(records, [(c["generation_id"], c["workspace_id"], int(c["amount_nano"])) for c in charges])
    except Exception as exc:  # any failure goes back to the worker, whose writer retries
        answer = f"{type(exc).__name__}: {exc}".encode()
        return _REFUSED + answer if is_data_error(exc) else answer
    return _OK


def main(argv: list[str] | None = None) -> None:
    """``python -m aistats_gateway.store.sqlite_writer DATABASE SOCKET CONTROL_FD`` (from serve)."""
    database_path, socket_path, control_fd = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     sqlite-writer: %(message)s")
    authkey = bytes.fromhex(os.environ.pop(ENV_KEY))
    serve_writer(database_path, socket_path, authkey, socket.socket(fileno=int(control_fd)))


if __name__ == "__main__":
    main()
