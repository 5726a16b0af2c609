"""Keeps the in-memory key cache and wallet book in step with the database.

Every ``interval`` seconds one query loads the active keys and one loads the wallets. Wallet
rows read while this process was flushing charges are dropped (they may or may not include
that flush) and read again, up to :data:`WALLET_READS` times; after that the next round picks up
a consistent view. Keys and wallets are applied together, after both reads: a key created after
a grant (or a top-up) never becomes usable while this process still holds the balance from
before the grant.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..byok.cache import CredentialCache
from ..store.records import Charge, GenerationRecord
from ..store.repositories import Store
from ..tasks import cancel_and_wait
from .auth import KeyCache
from .billing import WalletBook

log = logging.getLogger(__name__)

# Wallet reads per round when charges are being flushed meanwhile (a flush takes milliseconds).
WALLET_READS = 3
_REMIND_EVERY_S = 30.0  # while the database stays down, one reminder this often (not every round)


class FlushTrackingStore(Store):
    """The store the batched writer uses: marks the wallet book while a batch is being written.

    Batches go to ``store``'s own ``write_batch`` (on SQLite that is the dedicated thread of
    :class:`~..store.direct_sqlite.DirectSqliteStore`).
    """

    def __init__(self, store: Store, wallets: WalletBook) -> None:
        super().__init__(store.engine)
        self._inner = store
        self._wallets = wallets

    async def write_batch(self, generations: list[GenerationRecord], charges: list[Charge]) -> None:
        self._wallets.flushing += 1
        try:
            await self._inner.write_batch(generations, charges)
        finally:
            self._wallets.flushing -= 1
            self._wallets.epoch += 1


class StateRefresher:
    """Background task reloading keys and wallets; ``last_success`` feeds readiness."""

    def __init__(
        self,
        store: Store,
        keys: KeyCache,
        wallets: WalletBook,
        interval: float = 0.5,
        credentials: CredentialCache | None = None,
    ) -> None:
        self._store = store
        self._credentials = credentials if credentials is not None and credentials.enabled else None
        self._keys = keys
        self._wallets = wallets
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.last_success: float | None = None

    async def refresh(self) -> None:
        """One round: read keys, then wallets, then apply both at once (see the module doc)."""
        keys = await self._store.load_api_keys()
        credentials = None
        if self._credentials is not None:  # BYOK keys (only when master keys are configured)
            credentials = await self._store.load_provider_credentials()
        wallets = None
        for _ in range(WALLET_READS):
            epoch = self._wallets.epoch
            busy = self._wallets.flushing
            rows = await self._store.load_wallets()
            if not busy and not self._wallets.flushing and epoch == self._wallets.epoch:
                wallets = rows
                break
        # No await from here on: a request sees the new keys and the balances read after them.
        self._keys.replace(keys)
        if self._credentials is not None and credentials is not None:
            self._credentials.replace(credentials)
        if wallets is not None:
            self._wallets.load(wallets)
        self.last_success = time.monotonic()

    async def _run(self) -> None:
        failing_since: float | None = None
        last_log = 0.0
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception as exc:  # keep serving from the last good state; readiness shows staleness
                now = time.monotonic()
                if failing_since is None:
                    failing_since = last_log = now
                    log.exception(
                        "refreshing keys and wallets from the database failed; serving from memory "
                        "(keys and balances as of the last refresh) until it answers again"
                    )
                elif now - last_log >= _REMIND_EVERY_S:
                    last_log = now
                    log.warning(
                        "refreshing keys and wallets still fails after %.0fs (%s: %s); serving from memory",
                        now - failing_since,
                        type(exc).__name__,
                        exc,
                    )
            else:
                if failing_since is not None:
                    log.warning(
                        "refreshing keys and wallets works again after %.1fs",
                        time.monotonic() - failing_since,
                    )
                    failing_since = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="aistats-state-refresher")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
