"""The stored shape of one BYOK credential (table ``provider_credentials``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .crypto import Sealed

CREDENTIAL_PREFIX = "cred_"


@dataclass(frozen=True, slots=True)
class ProviderCredentialRow:
    """A credential row; ``sealed`` is None once revoked (the ciphertext is wiped)."""

    id: str  # cred_<ULID>
    workspace_id: str
    provider: str  # a configured provider name
    label: str | None
    fingerprint: str  # sha256:<12 hex> of the key, never the key or part of it
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None = None
    sealed: Sealed | None = field(default=None, repr=False)

    def to_api(self) -> dict[str, Any]:
        """The public object: everything but the key (which is never returned after creation)."""
        return {
            "id": self.id,
            "object": "byok_credential",
            "workspace_id": self.workspace_id,
            "provider": self.provider,
            "label": self.label,
            "fingerprint": self.fingerprint,
            "master_key_id": self.sealed.master_key_id if self.sealed else None,
            "created_at": int(self.created_at.timestamp()),
            "updated_at": int(self.updated_at.timestamp()),
            "revoked_at": int(self.revoked_at.timestamp()) if self.revoked_at else None,
        }
