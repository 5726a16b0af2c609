"""Keeps the in-memory key cache and wallet book in step with the database.

Every ``interval`` seconds one query loads the active keys and one loads the wallets. Wallet
rows read while this process was flushing charges are dropped (they may or may not include
that flush); the next round picks up a consistent view.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..store.records import Charge, GenerationRecord
from ..store.repositories import Store
from .auth import KeyCache
from .billing import WalletBook

log = logging.getLogger(__name__)


class FlushTrackingStore(Store):
    """The store the batched writer uses: marks the wallet book while a batch is being written."""

    def __init__(self, store: Store, wallets: WalletBook) -> None:
        super().__init__(store.engine)
        self._wallets = wallets

    async def write_batch(self, generations: list[GenerationRecord], charges: list[Charge]) -> None:
        self._wallets.flushing += 1
        try:
            await super().write_batch(generations, charges)
        finally:
            self._wallets.flushing -= 1
            self._wallets.epoch += 1


class StateRefresher:
    """Background task reloading keys and wallets; ``last_success`` feeds readiness."""

    def __init__(self, store: Store, keys: KeyCache, wallets: WalletBook, interval: float = 0.5) -> None:
        self._store = store
        self._keys = keys
        self._wallets = wallets
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.last_success: float | None = None

    async def refresh(self) -> None:
        """One round: keys, then wallets (skipped if a flush overlapped the read)."""
        self._keys.replace(await self._store.load_api_keys())
        epoch = self._wallets.epoch
        busy = self._wallets.flushing
        rows = await self._store.load_wallets()
        if not busy and not self._wallets.flushing and epoch == self._wallets.epoch:
            self._wallets.load(rows)
        self.last_success = time.monotonic()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:  # keep serving from the last good state; readiness shows staleness
                log.exception("refreshing keys and wallets from the database failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="aistats-state-refresher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
