"""Authentication from memory: API key → workspace, with no database on the request path.

The cache is replaced wholesale by the state refresher (every 0.5 s), so a key revoked or
created through the CLI or another instance takes effect within a second everywhere.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..api.errors import GatewayError
from ..key_limits import UNLIMITED, KeyLimits
from ..keys import hash_secret, parse_key
from ..store.records import ApiKeyRow


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, its workspace, its label, kind and limits."""

    kid: str
    workspace_id: str
    key_name: str | None
    kind: str = "inference"  # "inference" | "management"
    limits: KeyLimits = UNLIMITED


@dataclass(frozen=True, slots=True)
class _CachedKey:
    principal: Principal
    secret_hash: bytes
    row: ApiKeyRow  # what it was built from: an equal row next refresh reuses it


def _cached_key(row: ApiKeyRow) -> _CachedKey:
    principal = Principal(row.kid, row.workspace_id, row.name, row.kind, KeyLimits.from_json(row.limits))
    return _CachedKey(principal, bytes.fromhex(row.secret_hash), row)


_WRONG_KIND = {
    "management": (
        "This is a management key: it manages keys, credits and the ledger (/v1/keys, /v1/workspaces, "
        "/v1/ledger) but cannot call models. Use an inference key."
    ),
    "inference": (
        "This is an inference key: it calls models but cannot manage keys, credits or the ledger. "
        "Use a management key of this workspace or the admin token."
    ),
}


def _unauthorized(message: str) -> GatewayError:
    return GatewayError("authentication_error", message, code="invalid_api_key")


def bearer_or_api_key(headers: Mapping[str, str]) -> str | None:
    """The presented key: ``Authorization: Bearer <key>`` or ``x-api-key: <key>``."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = headers.get("x-api-key")
    return api_key.strip() if api_key else None


class KeyCache:
    """Active keys by ``kid``; verification is one HMAC and a constant-time compare."""

    def __init__(self, pepper: bytes) -> None:
        self.pepper = pepper
        self._keys: dict[str, _CachedKey] = {}

    def replace(self, rows: Iterable[ApiKeyRow]) -> None:
        """Swap in the current set of active keys (one atomic assignment).

        This runs every refresh: a key whose row did not change keeps its entry (and the same
        ``Principal``), so only new or changed keys are parsed again.
        """
        previous = self._keys
        keys: dict[str, _CachedKey] = {}
        for row in rows:
            if row.revoked_at is not None:
                continue
            cached = previous.get(row.kid)
            keys[row.kid] = cached if cached is not None and cached.row == row else _cached_key(row)
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, headers: Mapping[str, str], *, kind: str = "inference") -> Principal:
        """The caller's principal, or a 401 :class:`GatewayError` saying what is wrong.

        A valid key of another ``kind`` is refused with 403: a management key cannot call models,
        and an inference key cannot manage keys or credits.
        """
        key = bearer_or_api_key(headers)
        if key is None:
            raise _unauthorized(
                "Missing API key: send 'Authorization: Bearer aistats_v1_sk_…' "
                "or 'x-api-key: aistats_v1_sk_…'"
            )
        parsed = parse_key(key)
        if parsed is None:
            raise _unauthorized("Malformed API key: expected the format aistats_v1_sk_<kid>_<secret>")
        kid, secret = parsed
        cached = self._keys.get(kid)
        expected = cached.secret_hash if cached else b"\0" * 32
        presented = bytes.fromhex(hash_secret(self.pepper, secret))
        if not hmac.compare_digest(expected, presented) or cached is None:
            raise _unauthorized("Invalid or revoked API key")
        principal = cached.principal
        if principal.kind != kind:
            raise GatewayError("authorization_error", _WRONG_KIND[principal.kind], code="wrong_key_kind")
        return principal
