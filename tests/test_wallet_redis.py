"""Wallet holds shared through Redis: several wallet books (instances) never overspend one wallet."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from aistats_gateway.api.errors import GatewayError
from aistats_gateway.pipeline.billing import WalletBook
from aistats_gateway.pipeline.wallet_redis import RedisWallets
from aistats_gateway.store.records import WalletRow
from tests.conftest import require_service

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
UNIT = 1_000_000  # nano-USD held per request in these tests


def _drop_wallet(workspace_id: str) -> None:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = list(client.scan_iter(match=f"aistats:w:{{{workspace_id}}}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def workspace_id() -> AsyncIterator[str]:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    name = f"ws_test{uuid.uuid4().hex[:16]}"
    yield name  # type: ignore[misc]
    _drop_wallet(name)


async def _books(count: int, workspace_id: str, balance: int, **kwargs: float) -> list[WalletBook]:
    """``count`` wallet books (one per simulated instance) that loaded the same database row."""
    books = []
    for _ in range(count):
        shared = RedisWallets(REDIS_URL, **kwargs)
        await shared.start()
        book = WalletBook(shared)
        book.load([WalletRow(workspace_id, balance, balance, 0)])
        books.append(book)
    return books


async def _close(books: list[WalletBook]) -> None:
    for book in books:
        assert book.shared is not None
        await book.shared.close()


async def _try_hold(book: WalletBook, workspace_id: str, amount: int) -> bool:
    try:
        await book.hold(workspace_id, amount, f"gen_{uuid.uuid4().hex}")
    except GatewayError as error:
        assert error.reason == "insufficient_credits"
        return False
    return True


def test_two_instances_never_hold_more_than_the_wallet_covers(workspace_id: str) -> None:
    async def scenario() -> list[bool]:
        books = await _books(2, workspace_id, 80 * UNIT)
        try:
            attempts = [_try_hold(books[i % 2], workspace_id, UNIT) for i in range(200)]
            return list(await asyncio.gather(*attempts))
        finally:
            await _close(books)

    results = asyncio.run(scenario())
    assert results.count(True) == 80


def test_a_retried_hold_with_the_same_id_is_held_once(workspace_id: str) -> None:
    """A hold whose reply was lost (timeout) is sent again with the same id: held once."""

    async def scenario() -> tuple[bool, int, bool, int]:
        (book,) = await _books(1, workspace_id, 3 * UNIT)
        shared = book.shared
        assert shared is not None
        try:
            await shared.seed(WalletRow(workspace_id, 3 * UNIT, 3 * UNIT, 0), 0)
            first = await shared.reserve(workspace_id, "gen_same", UNIT)
            again = await shared.reserve(workspace_id, "gen_same", UNIT)
            assert first is not None and again is not None
            return first.held, first.available, again.held, again.available
        finally:
            await _close([book])

    assert asyncio.run(scenario()) == (True, 2 * UNIT, True, 2 * UNIT)


def test_settle_subtracts_the_cost_and_frees_the_rest_of_the_hold(workspace_id: str) -> None:
    async def scenario() -> tuple[int, int] | None:
        (book,) = await _books(1, workspace_id, 10 * UNIT)
        try:
            reservation = await book.hold(workspace_id, 4 * UNIT, "gen_a")
            book.settle(reservation, UNIT)
            second = await book.hold(workspace_id, 2 * UNIT, "gen_b")
            book.release(second)
            await book.sync_shared()
            assert book.shared is not None
            return await book.shared.totals(workspace_id)
        finally:
            await _close([book])

    assert asyncio.run(scenario()) == (9 * UNIT, 0)


def test_a_settlement_is_applied_once_even_if_sent_twice(workspace_id: str) -> None:
    async def scenario() -> tuple[int, int] | None:
        (book,) = await _books(1, workspace_id, 10 * UNIT)
        try:
            assert book.shared is not None
            await book.hold(workspace_id, 3 * UNIT, "gen_once")
            await book.shared.settle(workspace_id, "gen_once", 2 * UNIT)
            await book.shared.settle(workspace_id, "gen_once", 2 * UNIT)  # a retried send
            return await book.shared.totals(workspace_id)
        finally:
            await _close([book])

    assert asyncio.run(scenario()) == (8 * UNIT, 0)


def test_holds_of_a_crashed_instance_expire(workspace_id: str) -> None:
    async def scenario() -> bool:
        crashed, alive = await _books(2, workspace_id, 5 * UNIT, hold_ttl_s=0.2)
        try:
            await crashed.hold(workspace_id, 5 * UNIT, "gen_orphan")
            assert not await _try_hold(alive, workspace_id, UNIT)
            await asyncio.sleep(0.3)  # the crashed instance never renews its hold
            return await _try_hold(alive, workspace_id, UNIT)
        finally:
            await _close([crashed, alive])

    assert asyncio.run(scenario())


def test_a_late_settlement_of_an_expired_hold_still_charges_once(workspace_id: str) -> None:
    async def scenario() -> tuple[int, int] | None:
        slow, other = await _books(2, workspace_id, 5 * UNIT, hold_ttl_s=0.2)
        try:
            assert slow.shared is not None
            await slow.shared.seed(WalletRow(workspace_id, 5 * UNIT, 5 * UNIT, 0), 0)
            held = await slow.shared.reserve(workspace_id, "gen_slow", 2 * UNIT)
            assert held is not None and held.held
            await asyncio.sleep(0.3)
            await _try_hold(other, workspace_id, UNIT)  # drops the expired hold
            other.release(await other.hold(workspace_id, UNIT, "gen_probe"))
            await other.sync_shared()
            await slow.shared.settle(workspace_id, "gen_slow", 2 * UNIT)
            await slow.shared.settle(workspace_id, "gen_slow", 2 * UNIT)
            return await slow.shared.totals(workspace_id)
        finally:
            await _close([slow, other])

    assert asyncio.run(scenario()) == (3 * UNIT, UNIT)


def test_open_holds_are_renewed_by_their_instance(workspace_id: str) -> None:
    async def scenario() -> bool:
        owner, other = await _books(2, workspace_id, 5 * UNIT, hold_ttl_s=0.3)
        try:
            await owner.hold(workspace_id, 5 * UNIT, "gen_long_stream")
            for _ in range(4):
                await asyncio.sleep(0.15)
                await owner.sync_shared()
            return await _try_hold(other, workspace_id, UNIT)
        finally:
            await _close([owner, other])

    assert asyncio.run(scenario()) is False


def test_a_grant_seen_in_the_database_raises_the_shared_balance_once(workspace_id: str) -> None:
    async def scenario() -> tuple[int, int] | None:
        first, second = await _books(2, workspace_id, UNIT)
        try:
            await first.hold(workspace_id, UNIT, "gen_seed")  # seeds Redis from the database row
            granted = WalletRow(workspace_id, 3 * UNIT, 3 * UNIT, 0)
            for book in (first, second):  # both instances' refreshers see the grant
                book.load([granted])
                await book.sync_shared()
            assert first.shared is not None
            return await first.shared.totals(workspace_id)
        finally:
            await _close([first, second])

    assert asyncio.run(scenario()) == (3 * UNIT, UNIT)


def test_a_wallet_lost_by_redis_is_seeded_again_from_the_database_view(workspace_id: str) -> None:
    async def scenario() -> bool:
        (book,) = await _books(1, workspace_id, 2 * UNIT)
        try:
            await book.hold(workspace_id, UNIT, "gen_before")
            _drop_wallet(workspace_id)  # Redis restarted without persistence
            return await _try_hold(book, workspace_id, 2 * UNIT)
        finally:
            await _close([book])

    # Seeded from the database balance minus this instance's unflushed charges (none): 2 units.
    assert asyncio.run(scenario())


def test_unreachable_redis_refuses_paid_holds_with_503_but_not_free_ones() -> None:
    async def scenario() -> GatewayError:
        book = WalletBook(RedisWallets("redis://127.0.0.1:1/0"))
        book.load([WalletRow("ws_x", UNIT, UNIT, 0)])
        free = await book.hold("ws_x", 0, "gen_free")
        assert free.amount == 0
        with pytest.raises(GatewayError) as info:
            await book.hold("ws_x", 1, "gen_paid")
        assert book.shared is not None
        await book.shared.close()
        return info.value

    error = asyncio.run(scenario())
    assert error.status == 503 and error.retry_after == 1
    assert "Redis" in error.message


def test_a_grant_reaches_redis_even_when_redis_lost_its_script_cache(workspace_id: str) -> None:
    async def scenario() -> tuple[int, int] | None:
        (book,) = await _books(1, workspace_id, UNIT)
        try:
            await book.hold(workspace_id, UNIT, "gen_seed")
            flusher = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
            flusher.script_flush()  # what a Redis restart does to EVALSHA
            flusher.close()
            book.load([WalletRow(workspace_id, 3 * UNIT, 3 * UNIT, 0)])
            await book.sync_shared()  # reloads the scripts and sends the grant in the same round
            assert book.shared is not None
            return await book.shared.totals(workspace_id)
        finally:
            await _close([book])

    assert asyncio.run(scenario()) == (3 * UNIT, UNIT)
