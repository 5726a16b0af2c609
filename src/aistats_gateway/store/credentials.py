"""BYOK credential queries (table ``provider_credentials``), mixed into :class:`.repositories.Store`.

Rows carry only ciphertext; encrypting and decrypting happen in ``byok/`` (this module never sees
a key in the clear).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..byok.crypto import Sealed
from ..byok.records import ProviderCredentialRow
from .tables import provider_credentials as creds


class CredentialConflict(Exception):
    """Another active credential for the same workspace and provider was stored at the same time."""


def _now() -> datetime:
    return datetime.now(UTC)


def _credential(row: RowMapping) -> ProviderCredentialRow:
    sealed = None
    if row["ciphertext"] is not None and row["nonce"] is not None and row["master_key_id"] is not None:
        sealed = Sealed(bytes(row["ciphertext"]), bytes(row["nonce"]), row["master_key_id"], row["version"])
    return ProviderCredentialRow(
        id=row["id"],
        workspace_id=row["workspace_id"],
        provider=row["provider"],
        label=row["label"],
        fingerprint=row["fingerprint"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        revoked_at=row["revoked_at"],
        sealed=sealed,
    )


def _sealed_values(sealed: Sealed) -> dict[str, Any]:
    return {
        "ciphertext": sealed.ciphertext,
        "nonce": sealed.nonce,
        "master_key_id": sealed.master_key_id,
        "version": sealed.version,
    }


_REVOKED_VALUES = {"ciphertext": None, "nonce": None, "master_key_id": None}


class CredentialQueries:
    """Reads and writes of ``provider_credentials``; each method is one transaction."""

    _engine: AsyncEngine

    async def put_provider_credential(self, row: ProviderCredentialRow) -> ProviderCredentialRow | None:
        """Store ``row`` as the active credential of its (workspace, provider), revoking the
        previous one in the same transaction. Returns the replaced credential, if any.
        :class:`CredentialConflict` when a concurrent write won the race."""
        assert row.sealed is not None
        now = row.updated_at
        try:
            async with self._engine.begin() as conn:
                replaced = (
                    (
                        await conn.execute(
                            update(creds)
                            .where(
                                creds.c.workspace_id == row.workspace_id,
                                creds.c.provider == row.provider,
                                creds.c.revoked_at.is_(None),
                            )
                            .values(revoked_at=now, updated_at=now, **_REVOKED_VALUES)
                            .returning(*creds.c)
                        )
                    )
                    .mappings()
                    .first()
                )
                await conn.execute(
                    creds.insert().values(
                        id=row.id,
                        workspace_id=row.workspace_id,
                        provider=row.provider,
                        label=row.label,
                        fingerprint=row.fingerprint,
                        created_at=row.created_at,
                        updated_at=row.updated_at,
                        revoked_at=None,
                        **_sealed_values(row.sealed),
                    )
                )
        except IntegrityError as exc:
            raise CredentialConflict(
                f"another credential for provider '{row.provider}' was stored at the same time"
            ) from exc
        return _credential(replaced) if replaced is not None else None

    async def list_provider_credentials(
        self, workspace_id: str | None = None, *, include_revoked: bool = False
    ) -> list[ProviderCredentialRow]:
        """Credentials, oldest first; one workspace's when given; active ones unless asked."""
        query = select(creds).order_by(creds.c.created_at, creds.c.id)
        if workspace_id is not None:
            query = query.where(creds.c.workspace_id == workspace_id)
        if not include_revoked:
            query = query.where(creds.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            return [_credential(row) for row in (await conn.execute(query)).mappings()]

    async def load_provider_credentials(self) -> list[ProviderCredentialRow]:
        """Every active credential, in one query (the BYOK cache reloads this every refresh)."""
        return await self.list_provider_credentials()

    async def get_provider_credential(self, credential_id: str) -> ProviderCredentialRow | None:
        """One credential by id, revoked or not."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(creds).where(creds.c.id == credential_id))).mappings().first()
        return _credential(row) if row is not None else None

    async def revoke_provider_credential(
        self, credential_id: str, workspace_id: str | None = None
    ) -> ProviderCredentialRow | None:
        """Revoke and wipe the ciphertext; None when unknown, already revoked, or (with
        ``workspace_id``) another workspace's."""
        now = _now()
        query = update(creds).where(creds.c.id == credential_id, creds.c.revoked_at.is_(None))
        if workspace_id is not None:
            query = query.where(creds.c.workspace_id == workspace_id)
        query = query.values(revoked_at=now, updated_at=now, **_REVOKED_VALUES).returning(*creds.c)
        async with self._engine.begin() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _credential(row) if row is not None else None

    async def reseal_provider_credential(self, credential_id: str, old: Sealed, new: Sealed) -> bool:
        """Swap ``old`` for ``new`` (rotation) if the row still holds ``old``; False otherwise."""
        query = (
            update(creds)
            .where(
                creds.c.id == credential_id,
                creds.c.revoked_at.is_(None),
                creds.c.nonce == old.nonce,
                creds.c.master_key_id == old.master_key_id,
            )
            .values(updated_at=_now(), **_sealed_values(new))
            .returning(creds.c.id)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(query)).first() is not None
