"""The wallet book: reservations before the call, settlement after it.

Balances are read from the database by the state refresher; the request path only touches
this book. ``available = db_balance - unflushed - reserved`` where ``unflushed`` is what this
process has settled but the batched writer has not yet committed. Reserving is a check and an
add on one event loop, so it is atomic: concurrent requests can never overspend together.

With Redis configured (``shared``), :meth:`WalletBook.hold` asks Redis instead, where the check
and the hold are one atomic script across every instance (:mod:`.wallet_redis`); settling and
releasing are sent behind the response (and retried until Redis takes them). The local numbers
are still kept, for seeding Redis and for this instance's view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..api.errors import GatewayError
from ..money import format_usd
from ..store.records import Charge, WalletRow
from .wallet_redis import RedisWallets, SharedWalletUnavailable

log = logging.getLogger(__name__)

FULL_SYNC_EVERY_S = 10.0  # re-seed check of every wallet (covers a Redis that lost its data)


@dataclass(slots=True)
class _Wallet:
    db_balance: int = 0
    unflushed: int = 0
    reserved: int = 0
    granted_total: int = 0
    spent_total: int = 0

    @property
    def available(self) -> int:
        return self.db_balance - self.unflushed - self.reserved


@dataclass(slots=True)
class Reservation:
    """A hold on a workspace's balance; settled or released exactly once."""

    workspace_id: str
    amount: int
    done: bool = field(default=False)
    hold_id: str | None = None  # set when the hold lives in Redis


class WalletBook:
    """Per-workspace balances, holds and not-yet-written charges, all in nano-USD."""

    def __init__(self, shared: RedisWallets | None = None) -> None:
        self._wallets: dict[str, _Wallet] = {}
        self.epoch = 0  # bumped after every batch write (successful or not)
        self.flushing = 0  # batch writes in progress
        self.shared = shared
        self._open_holds: dict[str, str] = {}  # hold id -> workspace id (renewed in Redis)
        self._unsent: deque[tuple[str, str, int]] = deque()  # (workspace, hold id, cost) for Redis
        self._changed: set[str] = set()  # wallets whose grants Redis has not seen yet
        self._last_full_sync = 0.0
        self._wake = asyncio.Event()

    def _wallet(self, workspace_id: str) -> _Wallet:
        wallet = self._wallets.get(workspace_id)
        if wallet is None:
            wallet = self._wallets[workspace_id] = _Wallet()
        return wallet

    def reserve(self, workspace_id: str, amount: int) -> Reservation:
        """Hold ``amount`` in this instance's book; 402 ``insufficient_credits`` when it does not
        fit the available balance. Request paths call :meth:`hold`, which also covers Redis."""
        wallet = self._wallet(workspace_id)
        if amount > 0 and wallet.available < amount:
            raise _insufficient(amount, wallet.available)
        wallet.reserved += amount
        return Reservation(workspace_id, amount)

    async def hold(self, workspace_id: str, amount: int, hold_id: str) -> Reservation:
        """Hold ``amount`` for one request (``hold_id`` unique, e.g. the generation id).

        Without Redis this is :meth:`reserve`. With Redis the check and the hold are atomic
        across instances; an unreachable Redis refuses the request (503) rather than guess.
        """
        shared = self.shared
        if shared is None or amount <= 0:
            return self.reserve(workspace_id, amount)
        wallet = self._wallet(workspace_id)
        try:
            result = await shared.reserve(workspace_id, hold_id, amount)
            if result is None:  # first use of this wallet in Redis (or Redis lost its data)
                await shared.seed(self._row(workspace_id), wallet.unflushed)
                result = await shared.reserve(workspace_id, hold_id, amount)
        except SharedWalletUnavailable as exc:
            log.warning("shared wallet unavailable, refusing a paid request: %s", exc)
            raise GatewayError(
                "server_error",
                "The shared wallet store (Redis) is unreachable, so paid requests are refused rather "
                "than risk overspending; :free models still work. Retry shortly.",
                status=503,
                retry_after=1,
            ) from None
        if result is None or not result.held:
            raise _insufficient(amount, result.available if result is not None else 0)
        wallet.reserved += amount
        self._open_holds[hold_id] = workspace_id
        return Reservation(workspace_id, amount, hold_id=hold_id)

    def adopt(self, workspace_id: str, amount: int, hold_id: str) -> Reservation:
        """Take over a hold made earlier for ``hold_id`` (e.g. by a process that restarted since).

        With Redis the hold is already there (or expired, and a settlement still charges once), so
        only this book's view is updated and the hold is renewed from now on. Without Redis the
        amount is held again here if it still fits, else an empty hold is returned to settle against.
        """
        if self.shared is None:
            try:
                return self.reserve(workspace_id, amount)
            except GatewayError:
                return self.reserve(workspace_id, 0)
        self._wallet(workspace_id).reserved += amount
        self._open_holds[hold_id] = workspace_id
        return Reservation(workspace_id, amount, hold_id=hold_id)

    def _row(self, workspace_id: str) -> WalletRow:
        wallet = self._wallet(workspace_id)
        return WalletRow(workspace_id, wallet.db_balance, wallet.granted_total, wallet.spent_total)

    def _send_to_shared(self, reservation: Reservation, cost: int) -> None:
        if reservation.hold_id is None or self.shared is None:
            return
        self._open_holds.pop(reservation.hold_id, None)
        self._unsent.append((reservation.workspace_id, reservation.hold_id, cost))
        self._wake.set()

    def settle(self, reservation: Reservation, cost: int) -> bool:
        """Release the hold and book ``cost`` as spent (pending the writer). Idempotent."""
        if reservation.done:
            return False
        reservation.done = True
        wallet = self._wallet(reservation.workspace_id)
        wallet.reserved -= reservation.amount
        wallet.unflushed += cost
        self._send_to_shared(reservation, cost)
        return True

    def release(self, reservation: Reservation) -> None:
        """Drop the hold without charging (the attempt failed). Idempotent."""
        if not reservation.done:
            reservation.done = True
            self._wallet(reservation.workspace_id).reserved -= reservation.amount
            self._send_to_shared(reservation, 0)

    def flushed(self, charges: Iterable[Charge]) -> None:
        """The writer committed ``charges``: they moved from ``unflushed`` into the DB balance."""
        for charge in charges:
            wallet = self._wallet(charge.workspace_id)
            wallet.unflushed -= charge.amount_nano
            wallet.db_balance -= charge.amount_nano
            wallet.spent_total += charge.amount_nano
        self.epoch += 1

    def refused(self, charges: Iterable[Charge]) -> None:
        """The database refused ``charges`` (set aside by the writer): they leave ``unflushed``
        without entering the DB balance, so this book agrees with the database and with what a
        restart would load. With Redis the shared balance keeps them (it is not re-seeded)."""
        for charge in charges:
            self._wallet(charge.workspace_id).unflushed -= charge.amount_nano
        self.epoch += 1

    def load(self, rows: Iterable[WalletRow]) -> None:
        """Adopt balances read from the database (the refresher checks ``epoch`` first)."""
        for row in rows:
            wallet = self._wallet(row.workspace_id)
            if self.shared is not None and row.granted_total_nano != wallet.granted_total:
                self._changed.add(row.workspace_id)
            wallet.db_balance = row.balance_nano
            wallet.granted_total = row.granted_total_nano
            wallet.spent_total = row.spent_total_nano

    def snapshot(self, workspace_id: str) -> dict[str, int]:
        """Totals for ``GET /v1/credits`` in nano-USD."""
        wallet = self._wallet(workspace_id)
        return {
            "balance": wallet.db_balance - wallet.unflushed,
            "reserved": wallet.reserved,
            "available": wallet.available,
            "granted_total": wallet.granted_total,
            "spent_total": wallet.spent_total + wallet.unflushed,
        }

    def ever_topped_up(self, workspace_id: str) -> bool:
        """Whether the workspace was ever granted credits (the free tier's higher daily limit)."""
        wallet = self._wallets.get(workspace_id)
        return wallet is not None and wallet.granted_total > 0

    async def live_snapshot(self, workspace_id: str) -> dict[str, int]:
        """:meth:`snapshot` with Redis's view when shared: the balance and the holds of every
        instance. Falls back to this instance's view when Redis is not seeded or unreachable."""
        local = self.snapshot(workspace_id)
        if self.shared is None:
            return local
        try:
            totals = await self.shared.totals(workspace_id)
        except SharedWalletUnavailable:
            return local
        if totals is None:
            return local
        balance, reserved = totals
        return {
            **local,
            "balance": balance,
            "reserved": reserved,
            "available": balance - reserved,
            "spent_total": local["granted_total"] - balance,
        }

    # --- Redis synchronisation (a background task when ``shared`` is set) ---------------------

    async def sync_shared(self) -> None:
        """One round: send settlements, fold new grants into Redis, renew open holds.

        Raises :class:`SharedWalletUnavailable`; whatever was not sent is kept for the next round.
        """
        shared = self.shared
        if shared is None:
            return
        while self._unsent:
            workspace_id, hold_id, cost = self._unsent[0]
            await shared.settle(workspace_id, hold_id, cost)
            self._unsent.popleft()
        now = time.monotonic()
        if now - self._last_full_sync >= FULL_SYNC_EVERY_S:
            names = set(self._wallets)
            self._last_full_sync = now
        else:
            names = self._changed
        if names:
            rows = [self._row(name) for name in names]
            unflushed = {name: self._wallets[name].unflushed for name in names}
            await shared.sync(rows, unflushed)
            self._changed.difference_update(names)
        holds: dict[str, list[str]] = {}
        for hold_id, workspace_id in self._open_holds.items():
            holds.setdefault(workspace_id, []).append(hold_id)
        await shared.renew(holds)

    async def run_shared_sync(self, interval_s: float = 0.25) -> None:
        """Keep Redis in step until cancelled; settlements are sent as soon as they happen."""
        failing = False
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.sync_shared()
            except SharedWalletUnavailable as exc:
                if not failing:
                    log.error("shared wallet (Redis) unavailable; settlements are kept and retried: %s", exc)
                failing = True
                await asyncio.sleep(min(1.0, interval_s * 4))
            else:
                if failing:
                    log.warning("shared wallet (Redis) reachable again; pending settlements sent")
                failing = False

    @property
    def unsent(self) -> int:
        """Settlements not yet taken by Redis."""
        return len(self._unsent)


def _insufficient(amount: int, available: int) -> GatewayError:
    return GatewayError(
        "insufficient_credits",
        f"Insufficient credits: this request may cost up to ${format_usd(amount)} but the "
        f"available balance is ${format_usd(max(available, 0))}. Add credits or use a :free model.",
        code="insufficient_credits",
    )
