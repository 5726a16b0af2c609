"""The batched writer: generation rows and charges are written behind the response, in batches.

The request path calls ``submit`` (synchronous, never touches the database or the disk). A
background task collects up to ``max_batch`` items, or whatever arrived within ``max_delay`` of
the oldest one, and writes them with ``Store.write_batch`` in one transaction. ``write_batch`` is
idempotent (generation id and the ledger's generation id are unique), so a retry after an
unclear failure, or a replay of a record already written, never charges twice.

Database outages: a failed write is retried with capped exponential backoff and jitter
(``retry_initial_delay`` doubling up to ``retry_max_delay``). Nobody is held back meanwhile: the
gateway keeps serving on cached keys and the records wait. Once the database has been failing
for ``spool_after_s``, or the memory backlog passes ``spool_after_records``, waiting records move
to the on-disk :class:`~.spool.Spool` (fsync'd), so memory stays bounded and a crash loses
nothing. When the database answers again the spool is replayed oldest first, each segment in
one transaction; a segment's charges are reported as flushed only after it is written and
deleted. The spool of a process that died is adopted and replayed by the next writer to start.
Only when the spool is full too is intake held (:meth:`wait_for_room`), with an error logged.

Backpressure: when the database is up but slower than the traffic, above ``high_water`` queued
records the request path waits until the writer is back under ``max_batch``, which throttles
intake to what the database can record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

from .isolation import is_data_error, isolate
from .records import Charge, GenerationRecord
from .repositories import Store
from .spool import Segment, Spool, SpooledItem, refused_line

logger = logging.getLogger(__name__)

# How long the oldest queued record waits for more to join its batch (seconds). Each batch costs a
# fixed amount (a transaction, a commit, a thread hop) that competes with requests for the core;
# 0.2 s trimmed the gateway's own p99 tail a little (docs/decisions/009) but would let a hard crash
# lose four times as many records, so 0.05 s is kept: never losing a usage record comes first.
BATCH_DELAY_S = 0.05
# While stopping, retries are bounded in number and each waits at most this long (seconds).
_DRAIN_RETRY_DELAY_CAP = 1.0
# After an unexpected error in the background task, it starts again after this long (seconds).
_RESTART_DELAY_S = 1.0
# Repeated failures and spool growth are logged at most this often (seconds).
_LOG_EVERY_S = 10.0
_MIB = 1024 * 1024


class _Item(NamedTuple):
    record: GenerationRecord
    charge: Charge | None
    enqueued_at: float  # time.monotonic()


ItemT = TypeVar("ItemT", _Item, SpooledItem)


class BatchedWriter:
    """Writes submitted generation records and charges to the store in batches."""

    def __init__(
        self,
        store: Store,
        max_batch: int = 500,
        max_delay: float = BATCH_DELAY_S,
        on_flushed: Callable[[list[Charge]], None] | None = None,
        *,
        retry_initial_delay: float = 0.05,
        retry_max_delay: float = 5.0,
        drain_attempts: int = 5,
        warn_depth: int = 10_000,
        high_water: int | None = None,
        spool: Spool | None = None,
        spool_after_s: float = 1.0,
        spool_after_records: int | None = None,
        restart_delay: float = _RESTART_DELAY_S,
        on_refused: Callable[[list[Charge]], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._store = store
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._on_flushed = on_flushed
        self._on_refused = on_refused
        self._retry_initial_delay = retry_initial_delay
        self._retry_max_delay = retry_max_delay
        self._drain_attempts = drain_attempts
        self._warn_depth = warn_depth
        self._next_warn_depth = warn_depth
        self._high_water = high_water if high_water is not None else 5 * max_batch
        self._spool = spool
        self._spool_after_s = spool_after_s
        self._spool_after_records = (
            spool_after_records if spool_after_records is not None else self._high_water
        )
        self._restart_delay = restart_delay
        self._room = asyncio.Event()
        self._room.set()

        # Outage state: set on the first failed write, cleared by the next successful one.
        self._failing = False
        self._failing_since = 0.0
        self._retry_delay = retry_initial_delay
        self._failures_while_stopping = 0
        self._last_failure_log = 0.0
        self._last_spool_log = 0.0
        self._spool_full_logged = False
        self.spooled_total = 0  # records ever moved to the spool by this writer
        self.replayed_total = 0  # records written back from the spool (own and adopted)
        self.refused_total = 0  # records the database refused on their own, set aside

        self._queue: deque[_Item] = deque()
        self._in_flight: list[_Item] = []
        self._pending: dict[str, GenerationRecord] = {}
        self._wakeup = asyncio.Event()
        self._spill_wanted = asyncio.Event()  # submit asks a backing-off writer to spool now
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.flush_count = 0

    # -- request path -------------------------------------------------------------------------

    def submit(self, record: GenerationRecord, charge: Charge | None) -> None:
        """Queue a generation record (and its charge, if any). Never blocks, never drops."""
        self._queue.append(_Item(record, charge, time.monotonic()))
        self._pending[record.id] = record
        queued = len(self._queue)
        if queued == 1 or queued >= self._max_batch:
            self._wakeup.set()
        depth = self.queue_depth
        if depth >= self._spool_after_records and self._failing and self._can_spool:
            self._spill_wanted.set()
        if depth >= self._high_water:
            if self._can_spool and (self._failing or self._spool_has_pending):
                pass  # the writer moves the backlog to disk; serving goes on
            elif not self._failing or self._spool is not None:
                # Slower than the traffic, or down with the spool full: hold intake.
                self._room.clear()
        if depth >= self._next_warn_depth:
            logger.warning("usage writer is behind: %d records waiting to be written", depth)
            self._next_warn_depth *= 2
        if self._task is None and self._stop_requested.is_set():
            logger.error("record %s submitted to a stopped usage writer; it waits for a restart", record.id)

    def pending(self, generation_id: str) -> GenerationRecord | None:
        """A record submitted but not written yet and still in memory (None once written or spooled)."""
        return self._pending.get(generation_id)

    @property
    def backlogged(self) -> bool:
        """True while new requests should wait for the writer (see :meth:`wait_for_room`)."""
        return not self._room.is_set()

    async def wait_for_room(self) -> None:
        """Return once the queue is back under one batch (immediately when it is)."""
        await self._room.wait()

    @property
    def queue_depth(self) -> int:
        """Records submitted, in memory and not yet committed (queued plus the batch being written)."""
        return len(self._queue) + len(self._in_flight)

    @property
    def spool_usage(self) -> tuple[int, int]:
        """``(records, bytes)`` this writer holds in its on-disk spool (0, 0 without one)."""
        if self._spool is None:
            return 0, 0
        return self._spool.records, self._spool.bytes

    @property
    def idle(self) -> bool:
        """Nothing waits to be written: no queue, no batch in flight, nothing spooled."""
        return not self.queue_depth and not self._spool_has_pending

    @property
    def _can_spool(self) -> bool:
        return self._spool is not None and not self._spool.full

    @property
    def _spool_has_pending(self) -> bool:
        return self._spool is not None and self._spool.has_pending

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Launch the background task (call from inside the running event loop)."""
        if self._task is not None:
            return
        self._stop_requested.clear()
        self._failures_while_stopping = 0
        self._task = asyncio.get_running_loop().create_task(self._run_supervised(), name="usage-writer")

    async def stop(self) -> None:
        """Write everything still queued or spooled, then stop the background task.

        While draining, failures are retried at most ``drain_attempts`` times; then what is still
        in memory goes to the spool (replayed by the next start, of this process or another),
        or, without a spool or with it full, stays queued (see ``queue_depth``) and is logged.
        """
        self._stop_requested.set()
        self._wakeup.set()
        if self._task is None:
            if not self._queue and not self._spool_has_pending:
                return
            self._task = asyncio.get_running_loop().create_task(self._run_supervised(), name="usage-writer")
        task, self._task = self._task, None
        await task
        if self._spool is not None:
            if self._spool.has_pending:
                logger.warning(
                    "usage writer stopped with %d records in the spool under %s; the next start replays them",
                    self._spool.records,
                    self._spool.root,
                )
            await asyncio.to_thread(self._spool.close)  # its lock is released: the next start adopts it
        if self.queue_depth:
            logger.error("usage writer stopped with %d records NOT written", self.queue_depth)

    async def replay_orphans(self) -> int:
        """Adopt and replay spools left by writers that are gone (a crash during an outage).

        Called once at start-up, before serving; returns how many records were written. When
        the database fails meanwhile, the rest stays adopted and the background task replays it.
        """
        if self._spool is None:
            return 0
        try:
            found = await asyncio.to_thread(self._spool.claim_orphans)
        except OSError:
            logger.exception("usage writer: cannot look for spools of previous processes")
            return 0
        if not found:
            return 0
        logger.warning("usage writer: replaying %d spool segments left by a previous process", found)
        before = self.replayed_total
        while (segment := self._spool.next_segment()) is not None and not segment.own:
            if not await self._replay(segment):
                logger.warning(
                    "usage writer: replay of the previous spool failed; retrying in the background"
                )
                break
        return self.replayed_total - before

    # -- background task ----------------------------------------------------------------------

    async def _run_supervised(self) -> None:
        """:meth:`_run`, started again after an unexpected error: a task that ended silently would
        stop all usage recording while the gateway goes on serving."""
        while True:
            try:
                await self._run()
                return
            except Exception:
                if self._in_flight:  # not written: back to the front, in order
                    self._queue.extendleft(reversed(self._in_flight))
                    self._in_flight = []
                if self._stop_requested.is_set():
                    logger.exception("usage writer: unexpected error while stopping")
                    return
                logger.exception(
                    "usage writer: unexpected error; it starts again in %g s with %d records kept",
                    self._restart_delay,
                    self.queue_depth,
                )
                await asyncio.sleep(self._restart_delay)

    async def _run(self) -> None:
        if self._spool is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._spool.claim_orphans)
        while True:
            stopping = self._stop_requested.is_set()
            spooled = self._spool_has_pending
            if self._queue and (self.backlogged or not spooled):
                if not stopping and not spooled and len(self._queue) < self._max_batch:
                    wait = self._queue[0].enqueued_at + self._max_delay - time.monotonic()
                    if wait > 0:
                        self._wakeup.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wakeup.wait(), wait)
                        continue
                count = min(len(self._queue), self._max_batch)
                ok = await self._write([self._queue.popleft() for _ in range(count)])
            elif spooled:
                assert self._spool is not None
                if len(self._queue) >= self._spool_after_records and not self._spool.full:
                    await self._spill()  # keep order (older records are on disk) and memory bounded
                segment = self._spool.next_segment()
                ok = segment is None or await self._replay(segment)
            elif stopping:
                return
            else:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if not ok and not await self._after_failure():
                return

    async def _write(self, batch: list[_Item]) -> bool:
        """Write one batch from memory; on failure it goes back to the front of the queue."""
        self._in_flight = batch
        try:
            await self._write_items(batch)
            written = batch
        except Exception as exc:
            apart = await self._write_apart(batch, exc, own=True)
            if apart is None:
                self._queue.extendleft(reversed(batch))
                self._in_flight = []
                self._note_failure(exc, len(batch))
                return False
            written = apart
        self._in_flight = []
        self._recovered()
        if len(self._queue) <= self._max_batch:
            self._room.set()
        for item in batch:  # written, or set aside as refused: in memory no more
            if self._pending.get(item.record.id) is item.record:
                del self._pending[item.record.id]
        if not self._queue:
            self._next_warn_depth = self._warn_depth
        self._flushed([item.charge for item in written if item.charge is not None])
        return True

    async def _write_items(self, items: Sequence[_Item] | Sequence[SpooledItem]) -> None:
        """One ``write_batch`` of (record, charge) pairs."""
        await self._store.write_batch(
            [item[0] for item in items], [item[1] for item in items if item[1] is not None]
        )

    async def _write_apart(self, items: list[ItemT], exc: Exception, *, own: bool) -> list[ItemT] | None:
        """After ``items`` failed as one batch because of its data: write them in parts and set
        aside the records the database refuses on their own (store/isolation.py).

        Returns the items written, or None when the failure was not about the data, or a part
        failed for another reason meanwhile (the caller retries the whole batch later; parts
        already written are written again idempotently). ``own``: the items' charges are in this
        process's unflushed total (records from its memory or its own spool).
        """
        if not is_data_error(exc):
            return None
        found = await isolate(items, self._write_items)  # a lone record: found failing, no write
        refused: list[ItemT] = []
        for item in found.failing:  # once more alone: only a lasting refusal sets a record aside
            try:
                await self._write_items([item])
            except Exception as again:
                if not is_data_error(again):
                    return None
                found.last_error = again
                refused.append(item)
            else:
                found.written.append(item)
        if refused:
            await self._set_aside(refused, found.last_error or exc)
            if own:
                self._refused([item[1] for item in refused if item[1] is not None])
        return found.written

    async def _set_aside(self, refused: Sequence[_Item] | Sequence[SpooledItem], error: Exception) -> None:
        """Keep refused records out of the way (the spool's ``refused/`` folder, else the log)."""
        self.refused_total += len(refused)
        reason = f"{type(error).__name__}: {error}"
        pairs: list[SpooledItem] = [(item[0], item[1]) for item in refused]
        ids = ", ".join(record.id for record, _ in pairs)
        if self._spool is not None:
            try:
                path = await asyncio.to_thread(self._spool.set_aside, pairs, reason)
            except OSError:
                logger.exception("usage writer: cannot keep refused records under %s", self._spool.root)
            else:
                logger.error(
                    "usage writer: the database refused %d record(s) on their own (%s): %s; the other "
                    "records of the batch were written, these are kept in %s and not charged in the database "
                    "(aistats-gateway spool retry-refused writes them once the cause is fixed)",
                    len(pairs),
                    reason,
                    ids,
                    path,
                )
                return
        for record, charge in pairs:
            logger.error(
                "usage writer: the database refused record %s (%s); it is not stored, here it is: %s",
                record.id,
                reason,
                refused_line(record, charge, reason).decode(errors="replace").rstrip(),
            )

    async def _replay(self, segment: Segment) -> bool:
        """Write one spool segment in one transaction, delete it, then report its charges."""
        assert self._spool is not None
        try:
            contents = await asyncio.to_thread(self._spool.read, segment)
        except FileNotFoundError:
            logger.error("usage writer: spool segment %s vanished before it was replayed", segment.path)
            self._spool.remove(segment)
            return True
        except OSError:
            logger.exception("usage writer: cannot read spool segment %s; retrying", segment.path)
            return False
        try:
            await self._write_items(contents.items)
            written = contents.items
        except Exception as exc:
            apart = await self._write_apart(contents.items, exc, own=segment.own)
            if apart is None:
                self._note_failure(exc, len(contents.items))
                return False
            written = apart
        charges = [charge for _, charge in written if charge is not None]
        # No await from here on: the wallet book sees the write and the report together.
        self._spool.remove(segment, quarantine=contents.corrupt_lines > 0)
        self.replayed_total += len(written)
        self._recovered()
        if segment.own:
            self._flushed(charges)  # these charges are in this process's unflushed total
        else:
            self.flush_count += 1  # the refresher picks the new balances up from the database
        if not self._spool.has_pending:
            logger.warning(
                "usage writer: spool replayed; %d records written back since start", self.replayed_total
            )
        return True

    async def _spill(self) -> None:
        """Move every queued record to the spool (as many as fit); hold intake if it is full."""
        assert self._spool is not None
        items = list(self._queue)
        self._queue.clear()
        self._in_flight = items  # counted in queue_depth while the file is written
        try:
            written = await asyncio.to_thread(self._spool.append, [(i.record, i.charge) for i in items])
        except Exception:  # whatever it was, the records go back to the queue
            logger.exception("usage writer: cannot write the spool under %s", self._spool.root)
            written = 0
        finally:
            self._in_flight = []
        for item in items[:written]:
            if self._pending.get(item.record.id) is item.record:
                del self._pending[item.record.id]
        self._queue.extendleft(reversed(items[written:]))
        self.spooled_total += written
        now = time.monotonic()
        if written and now - self._last_spool_log >= _LOG_EVERY_S:
            self._last_spool_log = now
            logger.warning(
                "usage writer: %d records moved to the on-disk spool; it holds %d records, %.1f of %.1f MiB",
                written,
                self._spool.records,
                self._spool.bytes / _MIB,
                self._spool.max_bytes / _MIB,
            )
        if written < len(items):
            if self.queue_depth >= self._high_water:
                self._room.clear()
            if not self._spool_full_logged:
                self._spool_full_logged = True
                logger.error(
                    "usage writer: the spool under %s is full (%.1f MiB, writer.spool_max_mb) or unwritable; "
                    "%d records wait in memory and new requests are held until the database is back",
                    self._spool.root,
                    self._spool.max_bytes / _MIB,
                    len(items) - written,
                )
        else:
            self._room.set()

    def _refused(self, charges: list[Charge]) -> None:
        """Refused charges leave the unflushed total: the database does not have them (yet)."""
        if charges:
            _notify(self._on_refused, charges, "on_refused")

    def _flushed(self, charges: list[Charge]) -> None:
        self.flush_count += 1
        _notify(self._on_flushed, charges, "on_flushed")

    # -- outages ------------------------------------------------------------------------------

    def _note_failure(self, exc: Exception, count: int) -> None:
        now = time.monotonic()
        if not self._failing:
            self._failing = True
            self._failing_since = now
            self._last_failure_log = now
            self._retry_delay = self._retry_initial_delay
            logger.warning(
                "usage writer: writing %d records failed (%s: %s); the database looks down. Records are "
                "kept and retried with backoff%s",
                count,
                type(exc).__name__,
                exc,
                f", and moved to the spool after {self._spool_after_s:g}s" if self._spool is not None else "",
            )
            logger.debug("usage writer: first failure", exc_info=exc)
        elif now - self._last_failure_log >= _LOG_EVERY_S:
            self._last_failure_log = now
            logger.warning(
                "usage writer: database still failing after %.0fs (%s: %s); %d records in memory, %d spooled",
                now - self._failing_since,
                type(exc).__name__,
                exc,
                self.queue_depth,
                self._spool.records if self._spool is not None else 0,
            )
        if not self._spool_has_pending or self._can_spool:
            self._room.set()  # an outage must not stall serving; the queue and the spool absorb it

    def _recovered(self) -> None:
        if self._failing:
            logger.warning(
                "usage writer: the database is back after %.1fs; %d records in memory, %d in the spool",
                time.monotonic() - self._failing_since,
                self.queue_depth,
                self._spool.records if self._spool is not None else 0,
            )
        self._failing = False
        self._spool_full_logged = False
        self._retry_delay = self._retry_initial_delay

    async def _after_failure(self) -> bool:
        """Back off after a failed write (spooling if due); False when stopping should end here."""
        if self._stop_requested.is_set():
            self._failures_while_stopping += 1
            if self._failures_while_stopping >= self._drain_attempts:
                if self._queue and self._can_spool:
                    await self._spill()
                return False
            await asyncio.sleep(min(self._retry_delay, _DRAIN_RETRY_DELAY_CAP))
            self._retry_delay = min(self._retry_delay * 2, self._retry_max_delay)
            return True
        deadline = time.monotonic() + self._retry_delay * random.uniform(0.5, 1.0)
        self._retry_delay = min(self._retry_delay * 2, self._retry_max_delay)
        while True:
            if self._queue and self._spill_due():
                await self._spill()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop_requested.is_set():
                return True
            self._spill_wanted.clear()
            waiters = [
                asyncio.ensure_future(self._stop_requested.wait()),
                asyncio.ensure_future(self._spill_wanted.wait()),
            ]
            try:
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    def _spill_due(self) -> bool:
        if not self._can_spool:
            return False
        return (
            len(self._queue) >= self._spool_after_records
            or time.monotonic() - self._failing_since >= self._spool_after_s
        )


def _notify(callback: Callable[[list[Charge]], None] | None, charges: list[Charge], name: str) -> None:
    """Tell the wallet book about ``charges``; a failing callback is logged, never fatal here."""
    if callback is None:
        return
    try:
        callback(charges)
    except Exception:
        logger.exception("usage writer: %s callback failed", name)
