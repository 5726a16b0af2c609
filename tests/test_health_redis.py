"""Two gateway instances share provider health through a real Redis on 127.0.0.1:6379.

Each instance has its own tracker on its own fake monotonic clock; both share one fake wall
clock, as two processes on NTP-synchronised hosts would.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from aistats_gateway.pipeline.health import BreakerConfig, HealthTracker
from aistats_gateway.pipeline.health_sync import RedisHealthSync
from tests.conftest import require_service

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
P, M = "local-vllm", "meta/llama3:8b"  # a ':' in the model id must not break the key names
CONFIG = BreakerConfig(failure_threshold=4, window_s=30.0, open_s=10.0)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World:
    """Instances sharing one wall clock; ``advance`` moves every clock together."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.wall = FakeClock(time.time())
        self.instances: list[Instance] = []

    def instance(self, url: str = REDIS_URL, config: BreakerConfig = CONFIG) -> Instance:
        clock = FakeClock(1000.0 * (len(self.instances) + 1))  # unrelated monotonic origins
        tracker = HealthTracker(config, clock=clock)
        sync = RedisHealthSync(
            tracker, url, interval_s=0.02, key_prefix=self.prefix, clock=clock, wall_clock=self.wall
        )
        instance = Instance(clock, tracker, sync)
        self.instances.append(instance)
        return instance

    def advance(self, seconds: float) -> None:
        self.wall.now += seconds
        for instance in self.instances:
            instance.clock.now += seconds

    async def close(self) -> None:
        for instance in self.instances:
            await instance.sync.stop()


class Instance:
    def __init__(self, clock: FakeClock, tracker: HealthTracker, sync: RedisHealthSync) -> None:
        self.clock = clock
        self.tracker = tracker
        self.sync = sync

    def fail(self, times: int = 1) -> None:
        for _ in range(times):
            self.tracker.record_failure(P, M, kind="server_error")

    def state(self) -> str:
        return self.tracker.snapshot(P, M).state


@pytest.fixture
def prefix() -> Iterator[str]:
    """A random key prefix; its keys are deleted after the test."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    prefix = f"aistats-test:{uuid.uuid4().hex[:12]}:health:"
    yield prefix
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def redis_keys(prefix: str) -> dict[str, int]:
    """Key name -> TTL in seconds, for every key under ``prefix``."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True)
    try:
        return {key: int(client.ttl(key)) for key in client.scan_iter(match=f"{prefix}*")}
    finally:
        client.close()


def test_failures_on_one_instance_open_the_breaker_on_another(prefix: str) -> None:
    async def scenario() -> None:
        world = World(prefix)
        a, b = world.instance(), world.instance()
        try:
            assert b.state() == "closed"  # B knows the key (routing looked at it) but never failed
            a.fail(4)
            assert a.state() == "open"
            await a.sync.sync_once()
            await b.sync.sync_once()
            snap = b.tracker.snapshot(P, M)
            assert snap.state == "open"
            assert snap.open_until == pytest.approx(b.clock.now + CONFIG.open_s, abs=1e-3)
            assert not b.tracker.allow(P, M)
        finally:
            await world.close()

    asyncio.run(scenario())
    keys = redis_keys(prefix)
    assert any(key.endswith(":breaker") and "meta%2Fllama3%3A8b" in key for key in keys)
    assert all(0 < ttl <= 60 for ttl in keys.values()), keys


def test_failures_spread_over_instances_add_up_to_the_threshold(prefix: str) -> None:
    async def scenario() -> None:
        world = World(prefix)
        a, b = world.instance(), world.instance()
        try:
            a.fail(2)
            b.fail(2)
            assert (a.state(), b.state()) == ("closed", "closed")
            await a.sync.sync_once()
            await b.sync.sync_once()
            assert b.state() == "open"
            assert b.tracker.snapshot(P, M).failures_in_window == 4
            await a.sync.sync_once()
            assert a.state() == "open"
        finally:
            await world.close()

    asyncio.run(scenario())


async def _open_on_both(world: World, a: Instance, b: Instance) -> None:
    a.fail(4)
    b.tracker.snapshot(P, M)
    await a.sync.sync_once()
    await b.sync.sync_once()
    assert (a.state(), b.state()) == ("open", "open")
    world.advance(CONFIG.open_s)
    assert (a.state(), b.state()) == ("half_open", "half_open")


def test_a_probe_success_on_one_instance_closes_the_breaker_everywhere(prefix: str) -> None:
    async def scenario() -> None:
        world = World(prefix)
        a, b = world.instance(), world.instance()
        try:
            await _open_on_both(world, a, b)
            assert a.tracker.allow(P, M)
            a.tracker.record_success(P, M, latency_s=0.3)
            assert a.state() == "closed"
            await a.sync.sync_once()
            await b.sync.sync_once()
            assert b.state() == "closed"
            assert b.tracker.allow(P, M) and b.tracker.allow(P, M)
            # The shared failures that opened it are still inside the window: they must not
            # re-open it, on either instance, in later rounds.
            world.advance(1.0)
            for _ in range(2):
                await a.sync.sync_once()
                await b.sync.sync_once()
            assert (a.state(), b.state()) == ("closed", "closed")
            b.fail()
            await b.sync.sync_once()
            assert b.state() == "closed"
        finally:
            await world.close()

    asyncio.run(scenario())


def test_a_probe_failure_on_one_instance_reopens_the_breaker_everywhere(prefix: str) -> None:
    async def scenario() -> None:
        world = World(prefix)
        a, b = world.instance(), world.instance()
        try:
            await _open_on_both(world, a, b)
            world.advance(2.0)
            assert b.tracker.allow(P, M)
            b.tracker.record_failure(P, M, kind="timeout", latency_s=2.0)
            assert b.state() == "open"
            await b.sync.sync_once()
            await a.sync.sync_once()
            snap = a.tracker.snapshot(P, M)
            assert snap.state == "open"
            assert snap.open_until == pytest.approx(a.clock.now + CONFIG.open_s, abs=1e-3)
            assert not a.tracker.allow(P, M)
        finally:
            await world.close()

    asyncio.run(scenario())


def test_the_background_task_shares_health_without_explicit_syncs(prefix: str) -> None:
    async def scenario() -> None:
        world = World(prefix)
        a, b = world.instance(), world.instance()
        await a.sync.start()
        await b.sync.start()
        try:
            b.tracker.snapshot(P, M)
            a.fail(4)
            deadline = time.monotonic() + 3.0
            while b.state() != "open" and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert b.state() == "open"
            assert b.sync.connected and b.sync.last_success is not None
        finally:
            await world.close()

    asyncio.run(scenario())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((REDIS_HOST, 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_redis_keeps_local_health_and_never_raises(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        world = World(prefix)
        a = world.instance(url=f"redis://{REDIS_HOST}:{_closed_port()}/0")
        started = time.monotonic()
        try:
            await a.sync.start()
            assert a.tracker.allow(P, M)
            a.fail(4)
            for _ in range(3):
                await a.sync.sync_once()
            assert a.state() == "open"
            assert not a.tracker.allow(P, M)
            assert not a.sync.connected
            world.advance(CONFIG.open_s)
            assert a.tracker.allow(P, M)
            a.tracker.record_success(P, M, latency_s=0.1)
            await a.sync.sync_once()
            assert a.state() == "closed"
        finally:
            await world.close()
        assert time.monotonic() - started < 5.0

    with caplog.at_level(logging.WARNING, logger="aistats_gateway.pipeline.health_sync"):
        asyncio.run(scenario())
    warnings = [r for r in caplog.records if r.name == "aistats_gateway.pipeline.health_sync"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "local health only" in warnings[0].getMessage()
