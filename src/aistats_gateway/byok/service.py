"""BYOK operations shared by the HTTP API and the CLI: store, list, revoke and rotate keys."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..ids import new_ulid
from ..store.repositories import Store
from .crypto import MASTER_KEYS_ENV, DecryptError, Keyring
from .records import CREDENTIAL_PREFIX, ProviderCredentialRow

MIN_KEY_CHARS = 8
MAX_KEY_CHARS = 4096
MAX_LABEL_CHARS = 200


class ByokInputError(ValueError):
    """A bad provider, key or label; ``field`` names the input. Never contains the key."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


NOT_CONFIGURED = (
    f"BYOK is not configured on this gateway: set {MASTER_KEYS_ENV} to '<id>:<base64 of 32 random "
    "bytes>' (e.g. k1:$(openssl rand -base64 32)) on every instance, then restart it"
)


def fingerprint(api_key: str) -> str:
    """``sha256:<12 hex>`` of the key: tells keys apart without revealing any part of one."""
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


def check_key(api_key: object) -> str:
    """The key, validated: a printable single-line string (it becomes an HTTP header value)."""
    if not isinstance(api_key, str):
        raise ByokInputError("api_key", "must be a string")
    key = api_key.strip()
    if not MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS:
        raise ByokInputError("api_key", f"must be {MIN_KEY_CHARS} to {MAX_KEY_CHARS} characters long")
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ByokInputError("api_key", "must be printable ASCII without spaces or line breaks")
    return key


def check_provider(provider: object, providers: Collection[str]) -> str:
    """A configured provider name."""
    if not isinstance(provider, str) or provider not in providers:
        names = ", ".join(sorted(providers))
        raise ByokInputError("provider", f"must be a configured provider name (one of: {names})")
    return provider


def check_label(label: object) -> str | None:
    if label is None:
        return None
    if not isinstance(label, str) or len(label) > MAX_LABEL_CHARS:
        raise ByokInputError("label", f"must be a string of at most {MAX_LABEL_CHARS} characters")
    return label.strip() or None


def new_credential_id() -> str:
    return CREDENTIAL_PREFIX + new_ulid()


async def store_credential(
    store: Store,
    keyring: Keyring,
    *,
    workspace_id: str,
    provider: str,
    api_key: str,
    label: str | None,
) -> tuple[ProviderCredentialRow, ProviderCredentialRow | None]:
    """Encrypt and store a workspace's key for ``provider``; returns it and the credential it
    replaced (revoked in the same transaction), if any.

    The inputs must already be checked (:func:`check_key`, :func:`check_provider`).
    """
    credential_id = new_credential_id()
    now = datetime.now(UTC)
    sealed = keyring.seal(api_key, workspace_id=workspace_id, provider=provider, credential_id=credential_id)
    row = ProviderCredentialRow(
        id=credential_id,
        workspace_id=workspace_id,
        provider=provider,
        label=label,
        fingerprint=fingerprint(api_key),
        created_at=now,
        updated_at=now,
        sealed=sealed,
    )
    replaced = await store.put_provider_credential(row)
    return row, replaced


@dataclass(slots=True)
class RotationReport:
    """What ``byok rotate`` did: counts, and the credentials it could not decrypt."""

    active_key_id: str
    rotated: int = 0
    already_current: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (credential id, problem)

    def to_json(self) -> dict[str, object]:
        return {
            "active_master_key_id": self.active_key_id,
            "rotated": self.rotated,
            "already_current": self.already_current,
            "failed": [{"id": cid, "problem": problem} for cid, problem in self.failed],
        }


async def rotate_credentials(store: Store, keyring: Keyring) -> RotationReport:
    """Re-encrypt every active credential not under the active master key. Idempotent.

    A row changed meanwhile (replaced, revoked, or rotated by another process) is left alone.
    Once ``failed`` is empty, master keys other than the active one can be removed.
    """
    report = RotationReport(keyring.active.id)
    for row in await store.list_provider_credentials():
        sealed = row.sealed
        if sealed is None:
            continue
        if not keyring.needs_rotation(sealed):
            report.already_current += 1
            continue
        where = {"workspace_id": row.workspace_id, "provider": row.provider, "credential_id": row.id}
        try:
            plaintext = keyring.open(sealed, **where)
        except DecryptError as exc:
            report.failed.append((row.id, exc.problem))
            continue
        if await store.reseal_provider_credential(row.id, sealed, keyring.seal(plaintext, **where)):
            report.rotated += 1
    return report
