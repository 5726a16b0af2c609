"""The state refresher: keys and balances from the database, applied together.

Found through a flaky e2e test: an admin granted credits, created a key, and the key's first
paid request got 402 "available balance is $0". The refresher applied the new keys, then
awaited the wallet read, and dropped that read whenever a usage flush overlapped it: the key was
usable for up to a round (0.5 s) while this process still held the balance from before the grant.
"""

from __future__ import annotations

import asyncio

from aistats_gateway.keys import generate_key
from aistats_gateway.pipeline.auth import KeyCache
from aistats_gateway.pipeline.billing import WalletBook
from aistats_gateway.pipeline.refresher import StateRefresher
from aistats_gateway.store.records import WalletRow
from aistats_gateway.store.repositories import Store

from .test_store import with_store

PEPPER = b"p" * 32


class PausedWalletReads(Store):
    """A real store whose wallet reads wait until ``resume`` is set."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.reading = asyncio.Event()
        self.resume = asyncio.Event()

    async def load_wallets(self) -> list[WalletRow]:
        self.reading.set()
        await self.resume.wait()
        return await super().load_wallets()


class FlushDuringFirstWalletRead(Store):
    """A real store during whose first wallet read this process finishes a usage flush."""

    def __init__(self, store: Store, wallets: WalletBook) -> None:
        super().__init__(store.engine)
        self.wallets = wallets
        self.reads = 0

    async def load_wallets(self) -> list[WalletRow]:
        self.reads += 1
        rows = await super().load_wallets()
        if self.reads == 1:
            self.wallets.epoch += 1  # what FlushTrackingStore does after every batch write
        return rows


async def _key_and_grant(store: Store, usd_nano: int) -> str:
    workspace = await store.ensure_workspace("default")
    await store.grant_credits(workspace.id, usd_nano)
    new = generate_key(PEPPER)
    await store.insert_api_key(new.kid, workspace.id, "app", new.secret_hash)
    return workspace.id


def test_a_new_key_is_not_usable_before_the_balances_read_after_it(sqlite_url: str) -> None:
    async def body(store: Store) -> None:
        workspace_id = await _key_and_grant(store, 1_000_000_000)
        paused = PausedWalletReads(store)
        keys, wallets = KeyCache(PEPPER), WalletBook()
        round_ = asyncio.create_task(StateRefresher(paused, keys, wallets).refresh())
        await paused.reading.wait()
        assert len(keys) == 0, "the key waits for the balances read after it"
        paused.resume.set()
        await round_
        assert len(keys) == 1
        assert wallets.snapshot(workspace_id)["available"] == 1_000_000_000

    with_store(sqlite_url, body)


def test_a_wallet_read_overlapped_by_a_flush_is_read_again_in_the_same_round(sqlite_url: str) -> None:
    async def body(store: Store) -> None:
        keys, wallets = KeyCache(PEPPER), WalletBook()
        workspace_id = await _key_and_grant(store, 5_000)
        flushing = FlushDuringFirstWalletRead(store, wallets)
        await StateRefresher(flushing, keys, wallets).refresh()
        assert flushing.reads == 2
        assert wallets.snapshot(workspace_id)["available"] == 5_000

    with_store(sqlite_url, body)
