"""Credit grants: add prepaid USD to a workspace wallet, at most once per idempotency key."""

from __future__ import annotations

from typing import Any

from ..money import PriceError, format_usd, parse_usd
from ..store.records import GrantOutcome
from ..store.repositories import NotFound, Store
from .common import clean_text, invalid, iso, not_found
from .workspaces import wallet_to_api

MAX_NOTE_CHARS = 500
MAX_IDEMPOTENCY_KEY_CHARS = 255


class CreditService:
    """Grant credits (admin only at the API; the CLI has database access anyway)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def grant(
        self,
        workspace_id: str,
        amount_usd: object,
        *,
        note: object = None,
        idempotency_key: str | None = None,
    ) -> GrantOutcome:
        """Add ``amount_usd`` (a positive decimal USD string, exact to 1e-9) to the wallet.

        With ``idempotency_key``, a repeat of a grant already made is not applied again: the
        earlier grant is returned with ``applied=False``. Reusing a key for a different amount
        is refused, so a mistyped retry cannot pass silently.
        """
        amount = parse_grant_amount(amount_usd)
        text = clean_text(note, "note", max_chars=MAX_NOTE_CHARS)
        key = _idempotency_key(idempotency_key)
        try:
            outcome = await self._store.grant_credits_once(
                workspace_id, amount, note=text, idempotency_key=key
            )
        except NotFound:
            raise not_found(f"Workspace '{workspace_id}' does not exist", param="workspace_id") from None
        if not outcome.applied and outcome.entry.amount_nano != amount:
            raise invalid(
                f"Idempotency-Key '{key}' was already used for a grant of "
                f"${format_usd(outcome.entry.amount_nano)} to this workspace; use a new key for a new grant",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
        return outcome


def parse_grant_amount(amount_usd: object, param: str = "amount_usd") -> int:
    """A positive USD amount in nano-USD. Strings (``"12.50"``) and integers are accepted; JSON
    floats are refused because they may already have lost precision."""
    if isinstance(amount_usd, bool) or not isinstance(amount_usd, (str, int)):
        raise invalid(f'{param} must be a decimal string such as "12.50"', param=param)
    try:
        amount = parse_usd(amount_usd)
    except PriceError as exc:
        raise invalid(f"{param}: {exc}", param=param) from None
    if amount <= 0:
        raise invalid(f"{param} must be a positive amount", param=param)
    return amount


def grant_to_api(outcome: GrantOutcome) -> dict[str, Any]:
    """The body answering a grant: the entry, whether it was applied now, and the new wallet."""
    entry = outcome.entry
    return {
        "id": entry.id,
        "object": "credit_grant",
        "workspace_id": entry.workspace_id,
        "amount_usd": format_usd(entry.amount_nano),
        "amount_nanos": entry.amount_nano,
        "note": entry.note,
        "created_at": iso(entry.created_at),
        "idempotency_key": entry.idempotency_key,
        "replayed": not outcome.applied,
        "balance_usd": format_usd(outcome.wallet.balance_nano),
        "wallet": wallet_to_api(outcome.wallet),
    }


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    key = value.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable():
        raise invalid(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable characters",
            param="Idempotency-Key",
        )
    return key
