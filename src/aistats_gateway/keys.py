"""API key format, generation and hashing.

A key is ``aistats_v1_sk_<kid>_<secret>``: ``kid`` is 12 chars of ``[a-z0-9]`` (the public
lookup id), ``secret`` is 43 base62 chars from :mod:`secrets`. Only
``HMAC-SHA256(pepper, secret)`` is stored; the full key is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

KEY_PREFIX = "aistats_v1_sk_"
KID_ALPHABET = string.ascii_lowercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits  # base62
KID_LENGTH = 12
SECRET_LENGTH = 43  # ~256 bits of entropy
MIN_SECRET_LENGTH = 32
PEPPER_FILE = "key_pepper"

_KID_CHARS = frozenset(KID_ALPHABET)
_SECRET_CHARS = frozenset(SECRET_ALPHABET)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: the full text (shown once) and what is stored."""

    key: str
    kid: str
    secret_hash: str


def hash_secret(pepper: bytes, secret: str) -> str:
    """Hex ``HMAC-SHA256(pepper, secret)``: the only form of the secret that is stored."""
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def generate_key(pepper: bytes) -> NewKey:
    """A new random key and its stored hash."""
    kid = "".join(secrets.choice(KID_ALPHABET) for _ in range(KID_LENGTH))
    secret = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return NewKey(key=f"{KEY_PREFIX}{kid}_{secret}", kid=kid, secret_hash=hash_secret(pepper, secret))


def parse_key(key: str) -> tuple[str, str] | None:
    """Split a key into ``(kid, secret)``; None when it is not in the v1 format."""
    if not key.startswith(KEY_PREFIX):
        return None
    rest = key[len(KEY_PREFIX) :]
    kid, sep, secret = rest.partition("_")
    if (
        not sep
        or len(kid) != KID_LENGTH
        or len(secret) < MIN_SECRET_LENGTH
        or not _KID_CHARS.issuperset(kid)
        or not _SECRET_CHARS.issuperset(secret)
    ):
        return None
    return kid, secret


def load_or_create_pepper(configured: str | None, data_dir: Path) -> bytes:
    """The HMAC pepper: ``AISTATS_KEY_PEPPER`` if set, else a file generated once (mode 0600).

    Losing the pepper invalidates every key, so the file is created exclusively and never
    rewritten.
    """
    if configured:
        return configured.encode()
    path = data_dir / PEPPER_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    pepper = secrets.token_urlsafe(48).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(pepper)
    return pepper
