"""First-start set-up: migrate, the ``default`` workspace, and the one-time bootstrap key."""

from __future__ import annotations

from dataclasses import dataclass

from .keys import generate_key
from .store.migrate import migrate
from .store.records import Workspace
from .store.repositories import Store

DEFAULT_WORKSPACE = "default"
BOOTSTRAP_FLAG = "bootstrap_key_issued"


@dataclass(frozen=True, slots=True)
class Bootstrap:
    workspace: Workspace
    new_key: str | None  # the full key, only on the very first start


async def prepare_database(store: Store, pepper: bytes, *, issue_key: bool) -> Bootstrap:
    """Migrate, ensure ``default`` exists and, on the very first start, create one key for it."""
    await migrate(store.engine)
    workspace = await store.ensure_workspace(DEFAULT_WORKSPACE)
    new_key = None
    if issue_key and await store.count_api_keys() == 0 and await store.claim_flag(BOOTSTRAP_FLAG):
        key = generate_key(pepper)
        await store.insert_api_key(key.kid, workspace.id, "bootstrap", key.secret_hash)
        new_key = key.key
    return Bootstrap(workspace, new_key)
