"""AES-256-GCM for provider keys, under master keys from ``AISTATS_BYOK_MASTER_KEYS``.

The variable lists ``id:<base64 of 32 bytes>`` pairs, comma-separated; the first is the active
key (new encryptions), the others are kept only to decrypt rows not yet rotated. Every row stores
the master key id and a format version. The associated data binds a ciphertext to its row
(workspace, provider, credential id) and to the key id and version, so a ciphertext copied onto
another row, or relabelled with another key id, fails authentication instead of decrypting.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER_KEYS_ENV = "AISTATS_BYOK_MASTER_KEYS"
FORMAT_VERSION = 1
NONCE_BYTES = 12  # 96-bit random nonce, the size GCM is specified for
MASTER_KEY_BYTES = 32  # AES-256
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class MasterKeyError(ValueError):
    """``AISTATS_BYOK_MASTER_KEYS`` is malformed; the message never contains key material."""


class DecryptError(Exception):
    """A stored credential cannot be decrypted (unknown master key id, or tampered/swapped row)."""

    def __init__(self, credential_id: str, problem: str) -> None:
        super().__init__(f"credential {credential_id}: {problem}")
        self.credential_id = credential_id
        self.problem = problem


@dataclass(frozen=True, slots=True)
class MasterKey:
    """One master key; its bytes never appear in ``repr``."""

    id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Sealed:
    """A ciphertext as stored: the ciphertext (with the GCM tag), its nonce, key id and version."""

    ciphertext: bytes = field(repr=False)
    nonce: bytes
    master_key_id: str
    version: int


def parse_master_keys(text: str) -> tuple[MasterKey, ...]:
    """``"k2:<b64>,k1:<b64>"`` → master keys, active first. Raises :class:`MasterKeyError`."""
    keys: list[MasterKey] = []
    for position, item in enumerate(part.strip() for part in text.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        key_id = key_id.strip()
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise MasterKeyError(
                f"entry {position + 1} must be <id>:<base64 of 32 random bytes>, the id 1-32 characters "
                "of [A-Za-z0-9_.-] (generate one with: openssl rand -base64 32)"
            )
        secret = _decode_base64(encoded.strip())
        if secret is None or len(secret) != MASTER_KEY_BYTES:
            raise MasterKeyError(
                f"master key '{key_id}' must be base64 of exactly {MASTER_KEY_BYTES} bytes "
                "(generate one with: openssl rand -base64 32)"
            )
        if any(k.id == key_id for k in keys):
            raise MasterKeyError(f"master key id '{key_id}' appears twice")
        keys.append(MasterKey(key_id, secret))
    return tuple(keys)


def _decode_base64(text: str) -> bytes | None:
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def associated_data(
    workspace_id: str, provider: str, credential_id: str, master_key_id: str, version: int
) -> bytes:
    """What a ciphertext is bound to (authenticated, not encrypted)."""
    parts = (f"aistats-byok/v{version}", workspace_id, provider, credential_id, master_key_id)
    return "\x00".join(parts).encode()


class Keyring:
    """The configured master keys: encrypt under the active one, decrypt under any."""

    def __init__(self, keys: tuple[MasterKey, ...]) -> None:
        if not keys:
            raise MasterKeyError(f"{MASTER_KEYS_ENV} names no master key")
        self.active = keys[0]
        self._ciphers = {key.id: AESGCM(key.secret) for key in keys}

    @property
    def ids(self) -> tuple[str, ...]:
        """Master key ids, active first."""
        return tuple(self._ciphers)

    def __repr__(self) -> str:
        return f"Keyring(active={self.active.id!r}, ids={self.ids!r})"

    def seal(self, plaintext: str, *, workspace_id: str, provider: str, credential_id: str) -> Sealed:
        """Encrypt ``plaintext`` under the active key with a fresh random nonce."""
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.active.id
        ad = associated_data(workspace_id, provider, credential_id, key_id, FORMAT_VERSION)
        ciphertext = self._ciphers[key_id].encrypt(nonce, plaintext.encode(), ad)
        return Sealed(ciphertext, nonce, key_id, FORMAT_VERSION)

    def open(self, sealed: Sealed, *, workspace_id: str, provider: str, credential_id: str) -> str:
        """Decrypt and authenticate; :class:`DecryptError` names what is wrong (never the key)."""
        if sealed.version != FORMAT_VERSION:
            raise DecryptError(credential_id, f"unknown format version {sealed.version}")
        cipher = self._ciphers.get(sealed.master_key_id)
        if cipher is None:
            raise DecryptError(
                credential_id,
                f"encrypted under master key '{sealed.master_key_id}', which {MASTER_KEYS_ENV} does not "
                "list (add it back, then run: aistats-gateway byok rotate)",
            )
        ad = associated_data(workspace_id, provider, credential_id, sealed.master_key_id, sealed.version)
        try:
            plaintext = cipher.decrypt(sealed.nonce, sealed.ciphertext, ad)
        except (InvalidTag, ValueError):
            raise DecryptError(
                credential_id, "authentication failed (the row was altered or belongs to another row)"
            ) from None
        return plaintext.decode()

    def needs_rotation(self, sealed: Sealed) -> bool:
        """Whether ``sealed`` is under another key or format than the active one."""
        return sealed.master_key_id != self.active.id or sealed.version != FORMAT_VERSION
