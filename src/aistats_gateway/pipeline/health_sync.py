"""Share provider health between gateway instances through Redis, in the background.

The request path never waits on Redis: :class:`~.health.HealthTracker` decides from memory, and
every ``interval_s`` this task makes one round trip (a MULTI/EXEC pipeline) that pushes what
changed locally and pulls the shared view of every key this instance knows.

Keys, per (provider, provider model id), ``{prefix}{provider}:{model}`` with both parts
percent-encoded so a ``:`` in a model id cannot collide:

* ``…:req:{bucket}`` / ``…:fail:{bucket}`` — requests and failures counted by all instances
  (``INCRBY`` of this instance's new counts since its last push, ``EXPIRE`` just over a window).
  ``bucket`` is ``floor(wall_time / (window_s / 10))``.
* ``…:breaker`` — a hash with the latest opening (``opened_at``, ``open_until``, ``opened_by``)
  and the latest close (``closed_at``, ``closed_by``), wall-clock epoch seconds; it expires a
  window after the open period.

Consistency model: eventual, within about ``interval_s`` (plus clock skew between hosts, which
are assumed to be NTP-synchronised). Each instance pulls the transitions other instances
published and adopts the latest one if it is newer than its own (latest event wins), and uses
the shared counts in its thresholds, so failures spread over instances open the breaker
everywhere. Half-open probes are per instance: with N instances up to N times ``half_open_probes``
probes run at once. Moving averages (latency, error rate, throughput) stay per instance.
All instances must use the same :class:`~.health.BreakerConfig` (bucket names depend on it).

If Redis is unreachable the tracker keeps working on local data alone; the failure is logged
once per outage and the sync retries with exponential backoff. Counts not pushed yet are pushed
after it comes back. Redis Cluster is not supported (the pipeline spans several keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from ..tasks import cancel_and_wait
from .health import HealthTracker, Key, LocalHealth, SharedHealth

log = logging.getLogger(__name__)

REDIS_BUCKETS = 10  # shared counting buckets per window
MAX_BACKOFF_S = 5.0
_TIMEOUT_S = 1.0


class RedisHealthSync:
    """Background synchronisation of one :class:`HealthTracker` with Redis."""

    def __init__(
        self,
        tracker: HealthTracker,
        redis_url: str,
        *,
        interval_s: float = 0.25,
        key_prefix: str = "aistats:health:",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._tracker = tracker
        self._url = redis_url
        self._interval = interval_s
        self._prefix = key_prefix
        self._clock = clock
        self._wall = wall_clock
        self._id = uuid.uuid4().hex  # marks the transitions this instance published
        config = tracker.config
        self._width = config.window_s / REDIS_BUCKETS
        self._count_ttl = math.ceil(config.window_s + 2 * self._width)
        self._breaker_ttl = math.ceil(config.open_s + config.window_s + 2 * self._width)
        self._client: redis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._pushed: dict[Key, tuple[int, int, int]] = {}  # requests, failures, version in Redis
        self._failures = 0  # consecutive failed rounds
        self.last_success: float | None = None  # on ``clock``; for readiness / diagnostics

    @property
    def connected(self) -> bool:
        """False after a failed round, until one succeeds again."""
        return self._failures == 0

    async def start(self) -> None:
        """Connect (a failure is logged, not raised) and start the background task."""
        client = self._connect()
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            self._failed(exc)
        self._task = asyncio.create_task(self._run(), name="aistats-health-sync")

    async def stop(self) -> None:
        """Stop the background task and close the connection."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()
            self._client = None

    async def sync_once(self) -> None:
        """One round trip: push local changes, pull the shared view. Redis errors are not raised."""
        wall_now = self._wall()
        local = self._tracker.sync_view(wall_now)
        if not local:
            return
        bucket = math.floor(wall_now / self._width)
        buckets = range(bucket - REDIS_BUCKETS + 1, bucket + 1)
        pipe = self._connect().pipeline(transaction=True)
        for key, health in local.items():
            self._push(pipe, key, health, bucket)
        for key in local:
            base = self._base(key)
            pipe.hgetall(f"{base}:breaker")
            pipe.mget([f"{base}:req:{b}" for b in buckets] + [f"{base}:fail:{b}" for b in buckets])
        try:
            results = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._succeeded()
        reads = results[len(results) - 2 * len(local) :]
        for i, (key, health) in enumerate(local.items()):
            self._pushed[key] = (health.requests, health.failures, health.version)
            shared = self._shared(reads[2 * i], reads[2 * i + 1], buckets, wall_now)
            self._tracker.apply_shared(key[0], key[1], shared)

    # -- internals ----------------------------------------------------------------------------

    def _connect(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.from_url(
                self._url,
                decode_responses=True,
                socket_connect_timeout=_TIMEOUT_S,
                socket_timeout=_TIMEOUT_S,
                retry=Retry(NoBackoff(), 1),  # one quick reconnect; the loop does the backing off
            )
        return self._client

    def _base(self, key: Key) -> str:
        return f"{self._prefix}{quote(key[0], safe='')}:{quote(key[1], safe='')}"

    def _push(self, pipe: Pipeline, key: Key, health: LocalHealth, bucket: int) -> None:
        """Queue this key's new counts and, if it changed, its latest own transition."""
        base = self._base(key)
        requests, failures, version = self._pushed.get(key, (0, 0, 0))
        for name, delta in (("req", health.requests - requests), ("fail", health.failures - failures)):
            if delta > 0:
                counter = f"{base}:{name}:{bucket}"
                pipe.incrby(counter, delta)
                pipe.expire(counter, self._count_ttl)
        if health.version != version and health.event is not None:
            kind, at, until = health.event
            fields: dict[FieldT, EncodableT]
            if kind == "open":
                fields = {"opened_at": repr(at), "open_until": repr(until), "opened_by": self._id}
            else:
                fields = {"closed_at": repr(at), "closed_by": self._id}
            pipe.hset(f"{base}:breaker", mapping=fields)
            pipe.expire(f"{base}:breaker", self._breaker_ttl)

    def _shared(
        self, breaker: dict[str, str], counts: list[str | None], buckets: range, wall_now: float
    ) -> SharedHealth:
        """The shared view of one key; transitions this instance published are left out."""
        opened_at = open_until = closed_at = None
        if breaker.get("opened_by") != self._id:
            opened_at, open_until = _float(breaker.get("opened_at")), _float(breaker.get("open_until"))
        if breaker.get("closed_by") != self._id:
            closed_at = _float(breaker.get("closed_at"))
        n = len(buckets)
        rows = tuple(
            (b * self._width, _int(counts[i]), _int(counts[n + i]))
            for i, b in enumerate(buckets)
            if counts[i] is not None or counts[n + i] is not None
        )
        return SharedHealth(wall_now, opened_at, open_until, closed_at, rows)

    def _failed(self, exc: BaseException) -> None:
        if self._failures == 0:
            log.warning(
                "Redis health sync failed (%s: %s); using local health only, retrying with backoff",
                type(exc).__name__,
                exc,
            )
        self._failures += 1

    def _succeeded(self) -> None:
        if self._failures:
            log.info("Redis health sync is back after %d failed rounds", self._failures)
        self._failures = 0
        self.last_success = self._clock()

    def _delay(self) -> float:
        if not self._failures:
            return self._interval
        return min(self._interval * 2 ** min(self._failures, 16), max(MAX_BACKOFF_S, self._interval))

    async def _run(self) -> None:
        while True:
            try:
                await self.sync_once()
            except Exception:  # a bug must not kill the loop; local health keeps working
                log.exception("Redis health sync round failed")
                self._failures += 1
            await asyncio.sleep(self._delay())


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0
