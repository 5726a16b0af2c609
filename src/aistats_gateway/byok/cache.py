"""Decrypted BYOK keys in memory, so the request path does one dict lookup and no crypto.

The state refresher hands over the active rows every round; a row already decrypted (same id and
nonce) is reused, so steady state costs no decryption. A row that fails to decrypt is left out
(requests then use the gateway's own key) and logged once, by credential id only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from .crypto import DecryptError, Keyring
from .fee import NO_FEE, ByokFee
from .records import ProviderCredentialRow

log = logging.getLogger(__name__)

# Shared by every workspace without BYOK keys: the request path tests it for truth only.
NO_CREDENTIALS: Mapping[str, str] = MappingProxyType({})


class CredentialCache:
    """Active BYOK keys by workspace, then provider name. ``keyring`` None: BYOK is off."""

    def __init__(self, keyring: Keyring | None, fee: ByokFee = NO_FEE) -> None:
        self.keyring = keyring
        self.fee = fee
        self._by_workspace: dict[str, Mapping[str, str]] = {}
        self._decrypted: dict[tuple[str, bytes], str] = {}  # (credential id, nonce) -> key
        self._reported: set[str] = set()  # credential ids whose failure was logged

    @property
    def enabled(self) -> bool:
        """Whether master keys are configured (else credentials are neither stored nor used)."""
        return self.keyring is not None

    def for_workspace(self, workspace_id: str) -> Mapping[str, str]:
        """Provider name → the workspace's own key; an empty mapping for most workspaces.

        The mapping is a snapshot: a refresh swaps in new mappings and never mutates this one,
        so one request sees one consistent set. Other endpoints (embeddings, images, videos)
        use this same lookup.
        """
        return self._by_workspace.get(workspace_id, NO_CREDENTIALS)

    def replace(self, rows: Iterable[ProviderCredentialRow]) -> None:
        """Swap in the active credentials (revoked rows and undecryptable ones are left out)."""
        keyring = self.keyring
        if keyring is None:
            return
        by_workspace: dict[str, dict[str, str]] = {}
        decrypted: dict[tuple[str, bytes], str] = {}
        for row in rows:
            sealed = row.sealed
            if row.revoked_at is not None or sealed is None:
                continue
            cache_key = (row.id, sealed.nonce)
            plaintext = self._decrypted.get(cache_key)
            if plaintext is None:
                try:
                    plaintext = keyring.open(
                        sealed, workspace_id=row.workspace_id, provider=row.provider, credential_id=row.id
                    )
                except DecryptError as exc:
                    if row.id not in self._reported:
                        self._reported.add(row.id)
                        log.error(
                            "BYOK %s cannot be used (workspace %s, provider %s), requests use the "
                            "gateway's key meanwhile: %s",
                            row.id,
                            row.workspace_id,
                            row.provider,
                            exc.problem,
                        )
                    continue
            decrypted[cache_key] = plaintext
            by_workspace.setdefault(row.workspace_id, {})[row.provider] = plaintext
        self._decrypted = decrypted
        self._by_workspace = {ws: MappingProxyType(keys) for ws, keys in by_workspace.items()}

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_workspace.values())

    def __repr__(self) -> str:
        return f"CredentialCache(enabled={self.enabled}, credentials={len(self)})"
