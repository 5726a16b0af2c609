"""Workspaces: create, list, look up, and describe with their wallet totals."""

from __future__ import annotations

from typing import Any

from ..money import format_usd
from ..store.records import WalletRow, Workspace
from ..store.repositories import WORKSPACE_PREFIX, AlreadyExists, NotFound, Store
from .common import clean_text, invalid, iso, not_found

MAX_NAME_CHARS = 100


class WorkspaceService:
    """Workspace operations shared by the management API and the CLI."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, name: object) -> Workspace:
        """A new workspace with an empty wallet; the name must be unused and not look like an id."""
        text = clean_text(name, "name", max_chars=MAX_NAME_CHARS, required=True)
        assert text is not None
        if text.startswith(WORKSPACE_PREFIX):
            # Lookups accept an id or a name; a name shaped like an id would be ambiguous.
            raise invalid(f"a workspace name must not start with '{WORKSPACE_PREFIX}'", param="name")
        try:
            return await self._store.create_workspace(text)
        except AlreadyExists:
            raise invalid(
                f"a workspace named '{text}' already exists", param="name", code="already_exists"
            ) from None

    async def all(self) -> list[Workspace]:
        """Every workspace, oldest first."""
        return await self._store.list_workspaces()

    async def get(self, name_or_id: str, *, param: str = "workspace_id") -> Workspace:
        """The workspace with this id (or name); ``not_found`` otherwise."""
        workspace = await self._store.find_workspace(name_or_id)
        if workspace is None:
            raise not_found(f"Workspace '{name_or_id}' does not exist", param=param)
        return workspace

    async def wallet(self, workspace_id: str) -> WalletRow:
        """The workspace's wallet totals as committed to the database."""
        try:
            return await self._store.get_wallet(workspace_id)
        except NotFound:
            raise not_found(f"Workspace '{workspace_id}' has no wallet") from None


def wallet_to_api(wallet: WalletRow) -> dict[str, Any]:
    """Wallet totals: exact USD decimal strings plus the integer nano-USD they come from."""
    return {
        "currency": "USD",
        "balance_usd": format_usd(wallet.balance_nano),
        "granted_total_usd": format_usd(wallet.granted_total_nano),
        "spent_total_usd": format_usd(wallet.spent_total_nano),
        "balance_nanos": wallet.balance_nano,
        "granted_total_nanos": wallet.granted_total_nano,
        "spent_total_nanos": wallet.spent_total_nano,
    }


def workspace_to_api(workspace: Workspace, wallet: WalletRow | None = None) -> dict[str, Any]:
    """The management API's workspace object (with ``wallet`` when given)."""
    body: dict[str, Any] = {
        "id": workspace.id,
        "object": "workspace",
        "name": workspace.name,
        "created_at": iso(workspace.created_at),
    }
    if wallet is not None:
        body["wallet"] = wallet_to_api(wallet)
    return body
