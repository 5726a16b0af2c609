"""What every ``aistats-gateway`` command module shares: a migrated store for one action, JSON out."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .bootstrap import DEFAULT_WORKSPACE
from .settings import Settings
from .store.db import create_engine
from .store.migrate import migrate
from .store.repositories import Store


class CommandError(Exception):
    """A user-facing failure: printed as ``error: …`` with exit status 1."""


async def with_store(settings: Settings, action: Callable[[Store], Awaitable[Any]]) -> Any:
    """Run ``action`` on the configured database (migrated, with the default workspace)."""
    store = Store(create_engine(settings.database_url))
    try:
        await migrate(store.engine)
        await store.ensure_workspace(DEFAULT_WORKSPACE)
        return await action(store)
    finally:
        await store.engine.dispose()


def print_json(value: Any) -> None:
    """``value`` as indented JSON on standard output."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
