"""API keys: create (the full key is returned once), list, get, update name/limits, revoke.

Every call takes ``scope``: the workspace the caller may act on (``None``: every workspace, the
admin). A key outside the scope is reported exactly like a missing one, so kids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..key_limits import UNLIMITED, KeyLimits, LimitsError
from ..keys import generate_key
from ..money import format_usd
from ..store.records import ApiKeyRow
from ..store.repositories import AlreadyExists, NotFound, Store
from .common import Page, clean_text, invalid, iso, not_found, page_size

KEY_KINDS = ("inference", "management")
MAX_NAME_CHARS = 100
_KID_ATTEMPTS = 3  # a kid clash is ~1 in 36**12; retrying covers it without an error


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: the full text (shown once, never stored) and its stored row."""

    key: str
    row: ApiKeyRow


class KeyService:
    """Key operations shared by the management API and the CLI."""

    def __init__(self, store: Store, pepper: bytes) -> None:
        self._store = store
        self._pepper = pepper

    async def create(
        self,
        workspace_id: str,
        *,
        name: object = None,
        kind: object = "inference",
        limits: object = None,
    ) -> CreatedKey:
        """A new key for ``workspace_id`` (which must exist). ``limits`` is the API form
        (:meth:`KeyLimits.from_api`); only inference keys take limits."""
        label = clean_text(name, "name", max_chars=MAX_NAME_CHARS)
        key_kind = _kind(kind)
        parsed = _limits(limits, UNLIMITED, key_kind)
        for _ in range(_KID_ATTEMPTS):
            new = generate_key(self._pepper)
            try:
                row = await self._store.insert_api_key(
                    new.kid, workspace_id, label, new.secret_hash, kind=key_kind, limits=parsed.to_json()
                )
            except AlreadyExists:
                continue
            except NotFound:
                raise not_found(f"Workspace '{workspace_id}' does not exist", param="workspace_id") from None
            return CreatedKey(new.key, row)
        raise RuntimeError("could not draw an unused kid")  # pragma: no cover - needs 3 clashes in a row

    async def page(
        self,
        scope: str | None,
        *,
        limit: int | None = None,
        after: str | None = None,
        include_revoked: bool = False,
    ) -> Page[ApiKeyRow]:
        """One page of keys in creation order; ``after`` is the last kid of the previous page."""
        size = page_size(limit)
        if after is not None:
            await self.get(after, scope, param="after")  # an unknown cursor is an error, not an empty page
        rows = await self._store.page_api_keys(
            workspace_id=scope, limit=size + 1, after=after, include_revoked=include_revoked
        )
        has_more = len(rows) > size
        rows = rows[:size]
        return Page(rows, has_more, rows[-1].kid if has_more else None)

    async def all(self, scope: str | None, *, include_revoked: bool = True) -> list[ApiKeyRow]:
        """Every key in scope, page by page."""
        rows: list[ApiKeyRow] = []
        after: str | None = None
        while True:
            page = await self.page(scope, limit=1000, after=after, include_revoked=include_revoked)
            rows.extend(page.items)
            if not page.has_more:
                return rows
            after = page.next_cursor

    async def get(self, kid: str, scope: str | None, *, param: str = "kid") -> ApiKeyRow:
        """One key, revoked or not; ``not_found`` when missing or outside ``scope``."""
        row = await self._store.get_api_key(kid)
        if row is None or (scope is not None and row.workspace_id != scope):
            raise not_found(f"API key '{kid}' does not exist", param=param)
        return row

    async def update(
        self,
        kid: str,
        scope: str | None,
        *,
        name: object = None,
        limits: object = None,
        set_limits: bool = False,
    ) -> ApiKeyRow:
        """Rename and/or change limits. ``limits`` is a partial API-form object merged over the
        current limits; with ``set_limits`` and ``limits=None`` every limit is removed."""
        row = await self.get(kid, scope)
        if row.revoked_at is not None:
            raise invalid(f"API key '{kid}' is revoked; a revoked key cannot be changed", code="key_revoked")
        label = clean_text(name, "name", max_chars=MAX_NAME_CHARS)
        new_limits: dict[str, Any] | None = row.limits
        if set_limits:
            current = KeyLimits.from_json(row.limits)
            merged = UNLIMITED if limits is None else _limits(limits, current, row.kind)
            new_limits = merged.to_json()
        updated = await self._store.update_api_key(kid, name=label, limits=new_limits)
        if updated is None:  # deleted between the two statements (keys are never deleted today)
            raise not_found(f"API key '{kid}' does not exist", param="kid")
        return updated

    async def revoke(self, kid: str, scope: str | None) -> tuple[ApiKeyRow, bool]:
        """Revoke a key: ``(row, True)`` when this call revoked it, ``(row, False)`` when it
        already was (revoking is idempotent; ``revoked_at`` keeps the first time)."""
        await self.get(kid, scope)
        newly = await self._store.revoke_api_key(kid)
        return await self.get(kid, scope), newly

    async def usage(self, kid: str) -> dict[str, int]:
        """Totals over the key's recorded generations."""
        return await self._store.key_usage(kid)


def key_to_api(row: ApiKeyRow, usage: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The management API's key object. Never contains the secret or its hash."""
    body: dict[str, Any] = {
        "id": row.kid,
        "kid": row.kid,
        "object": "api_key",
        "name": row.name,
        "kind": row.kind,
        "workspace_id": row.workspace_id,
        "status": "revoked" if row.revoked_at is not None else "active",
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "revoked_at": iso(row.revoked_at),
        "limits": KeyLimits.from_json(row.limits).to_api(),
    }
    if usage is not None:
        body["usage"] = {
            "requests": usage["requests"],
            "cost_usd": format_usd(usage["cost_nano"]),
            "cost_nanos": usage["cost_nano"],
            "input_tokens": usage["input_tokens"],
            "output_tokens": usage["output_tokens"],
        }
    return body


def _kind(kind: object) -> str:
    if kind is None:
        return "inference"
    if kind not in KEY_KINDS:
        raise invalid(f"kind must be one of {', '.join(KEY_KINDS)}", param="kind")
    return str(kind)


def _limits(body: object, base: KeyLimits, kind: str) -> KeyLimits:
    """Parse API-form limits over ``base``; a LimitsError becomes a 400 naming the field."""
    if body is None:
        return base
    if kind != "inference" and body:
        raise invalid(
            "limits apply to inference keys only; a management key cannot call models", param="limits"
        )
    if not isinstance(body, Mapping):
        raise invalid("limits must be an object", param="limits", code="invalid_limits")
    try:
        return KeyLimits.from_api(body, base)
    except LimitsError as exc:
        raise invalid(str(exc), param=exc.field, code="invalid_limits") from None
