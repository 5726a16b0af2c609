"""The in-memory wallet book: reservations before the call, settlement after it.

Balances are read from the database by the state refresher; the request path only touches
this book. ``available = db_balance - unflushed - reserved`` where ``unflushed`` is what this
process has settled but the batched writer has not yet committed. Reserving is a check and an
add on one event loop, so it is atomic: concurrent requests can never overspend together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..api.errors import GatewayError
from ..money import format_usd
from ..store.records import Charge, WalletRow


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


class WalletBook:
    """Per-workspace balances, holds and not-yet-written charges, all in nano-USD."""

    def __init__(self) -> None:
        self._wallets: dict[str, _Wallet] = {}
        self.epoch = 0  # bumped after every batch write (successful or not)
        self.flushing = 0  # batch writes in progress

    def _wallet(self, workspace_id: str) -> _Wallet:
        wallet = self._wallets.get(workspace_id)
        if wallet is None:
            wallet = self._wallets[workspace_id] = _Wallet()
        return wallet

    def reserve(self, workspace_id: str, amount: int) -> Reservation:
        """Hold ``amount``; 402 ``insufficient_credits`` when it does not fit the available balance."""
        wallet = self._wallet(workspace_id)
        if amount > 0 and wallet.available < amount:
            raise GatewayError(
                "insufficient_credits",
                f"Insufficient credits: this request may cost up to ${format_usd(amount)} but the "
                f"available balance is ${format_usd(max(wallet.available, 0))}. Add credits or use a "
                ":free model.",
                code="insufficient_credits",
            )
        wallet.reserved += amount
        return Reservation(workspace_id, amount)

    def settle(self, reservation: Reservation, cost: int) -> bool:
        """Release the hold and book ``cost`` as spent (pending the writer). Idempotent."""
        if reservation.done:
            return False
        reservation.done = True
        wallet = self._wallet(reservation.workspace_id)
        wallet.reserved -= reservation.amount
        wallet.unflushed += cost
        return True

    def release(self, reservation: Reservation) -> None:
        """Drop the hold without charging (the attempt failed). Idempotent."""
        if not reservation.done:
            reservation.done = True
            self._wallet(reservation.workspace_id).reserved -= reservation.amount

    def flushed(self, charges: Iterable[Charge]) -> None:
        """The writer committed ``charges``: they moved from ``unflushed`` into the DB balance."""
        for charge in charges:
            wallet = self._wallet(charge.workspace_id)
            wallet.unflushed -= charge.amount_nano
            wallet.db_balance -= charge.amount_nano
            wallet.spent_total += charge.amount_nano
        self.epoch += 1

    def load(self, rows: Iterable[WalletRow]) -> None:
        """Adopt balances read from the database (the refresher checks ``epoch`` first)."""
        for row in rows:
            wallet = self._wallet(row.workspace_id)
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
