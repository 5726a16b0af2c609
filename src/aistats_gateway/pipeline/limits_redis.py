"""Limit counters in Redis, shared by every gateway instance: one atomic script per admission.

Keys (``{prefix}`` defaults to ``aistats:limits:``), each with a TTL:

* windows: ``{prefix}{key}:{bucket}`` — an integer per bucket of the sliding window (TTL two windows);
* counts: ``{prefix}{key}`` — e.g. free-tier requests of one UTC day (TTL to a day after the period);
* spend: ``{prefix}{key}`` — a hash ``{spent, held}`` in nano-USD, and ``{prefix}{key}:holds`` — a
  sorted set of the holds in flight (member ``ticket:amount``, score = when the hold lapses). A
  hold of a crashed instance lapses after ``hold_ttl_s`` instead of blocking the key for good.
  A missing hash is created from the instance's own view (the database at start-up plus what it
  settled since), so a Redis restart loses at most what other instances settled meanwhile.

Admission is one ``EVALSHA`` (a Lua script: check every limit, count them all only when all pass).
Settlement is another, run in the background after the response; one that fails while Redis is
away is kept (bounded) and retried. When Redis cannot be reached the caller falls back to its
in-memory counters (:class:`~.limits.Limiter`); this module only reports :class:`RedisUnavailable`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .limit_checks import COUNT, SPEND, WINDOW, Check, Outcome

log = logging.getLogger(__name__)

TIMEOUT_S = 0.25
MAX_CONNECTIONS = 64
MAX_PENDING_SETTLEMENTS = 10_000

# KEYS: two per check. ARGV[1] now (ms), ARGV[2] ticket id, then 6 per check:
# kind, limit, amount, weight (windows), ttl in ms (0: none), seed (spend).
# Returns {index of the first failing check or 0, then two integers per check}.
_ADMIT = """
local now = tonumber(ARGV[1])
local ticket = ARGV[2]
local n = #KEYS / 2
local failed = 0
local x, y = {}, {}
for i = 1, n do
  local a = 2 + (i - 1) * 6
  local kind, limit, amount = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local k1, k2 = KEYS[2 * i - 1], KEYS[2 * i]
  if kind == 'w' then
    x[i] = tonumber(redis.call('GET', k1) or '0')
    y[i] = tonumber(redis.call('GET', k2) or '0')
    if failed == 0 and y[i] * tonumber(ARGV[a + 4]) + x[i] >= limit then failed = i end
  elseif kind == 'c' then
    x[i] = tonumber(redis.call('GET', k1) or '0')
    y[i] = 0
    if failed == 0 and x[i] + amount > limit then failed = i end
  else
    if redis.call('EXISTS', k1) == 0 then
      -- Holds of a lost hash (Redis restarted or evicted it) are dropped with it.
      redis.call('DEL', k2)
      redis.call('HSET', k1, 'spent', ARGV[a + 6], 'held', '0')
    end
    local lapsed = redis.call('ZRANGEBYSCORE', k2, '-inf', now)
    if #lapsed > 0 then
      local sum = 0
      for _, member in ipairs(lapsed) do sum = sum + tonumber(string.match(member, ':(%d+)$')) end
      redis.call('HINCRBY', k1, 'held', string.format('%d', -sum))
      redis.call('ZREMRANGEBYSCORE', k2, '-inf', now)
    end
    x[i] = tonumber(redis.call('HGET', k1, 'spent'))
    y[i] = tonumber(redis.call('HGET', k1, 'held'))
    if failed == 0 and amount > 0 and x[i] + y[i] + amount > limit then failed = i end
  end
end
if failed == 0 then
  for i = 1, n do
    local a = 2 + (i - 1) * 6
    local kind, amount, ttl = ARGV[a + 1], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 5])
    local k1, k2 = KEYS[2 * i - 1], KEYS[2 * i]
    if kind == 's' then
      if amount > 0 then
        redis.call('HINCRBY', k1, 'held', ARGV[a + 3])
        redis.call('ZADD', k2, now + tonumber(ARGV[a + 4]), ticket .. ':' .. ARGV[a + 3])
        redis.call('PEXPIRE', k2, tonumber(ARGV[a + 4]))
        y[i] = y[i] + amount
      end
      if ttl > 0 then redis.call('PEXPIRE', k1, ttl) end
    elseif amount > 0 then
      redis.call('INCRBY', k1, ARGV[a + 3])
      redis.call('PEXPIRE', k1, ttl)
      x[i] = x[i] + amount
    end
  end
end
local out = {failed}
for i = 1, n do
  out[2 * i] = x[i]
  out[2 * i + 1] = y[i]
end
return out
"""

# Spend holds are passed to _ADMIT with ARGV weight = the hold's lifetime in ms (unused otherwise).

# KEYS: spend hash + holds per spend check, then the token window key if any.
# ARGV[1] ticket id, ARGV[2] number of spend checks, then 4 per spend check: hold, cost, ttl ms, seed;
# then, with a token key: tokens, ttl ms.
_SETTLE = """
local ticket = ARGV[1]
local n = tonumber(ARGV[2])
for i = 1, n do
  local a = 2 + (i - 1) * 4
  local k1, k2 = KEYS[2 * i - 1], KEYS[2 * i]
  local removed = redis.call('ZREM', k2, ticket .. ':' .. ARGV[a + 1])
  if redis.call('EXISTS', k1) == 0 then
    redis.call('HSET', k1, 'spent', ARGV[a + 4], 'held', '0')
  elseif removed == 1 then
    redis.call('HINCRBY', k1, 'held', '-' .. ARGV[a + 1])
  end
  redis.call('HINCRBY', k1, 'spent', ARGV[a + 2])
  if tonumber(ARGV[a + 3]) > 0 then redis.call('PEXPIRE', k1, tonumber(ARGV[a + 3])) end
end
if #KEYS > 2 * n then
  local a = 2 + n * 4
  redis.call('INCRBY', KEYS[#KEYS], ARGV[a + 1])
  redis.call('PEXPIRE', KEYS[#KEYS], tonumber(ARGV[a + 2]))
end
return 1
"""

# KEYS: two per check; returns two integers per check (windows: current, previous;
# counts: count, 0; spend: spent, held — or -1, 0 when the hash does not exist).
_READ = """
local out = {}
for i = 1, #KEYS / 2 do
  local kind = ARGV[i]
  local k1, k2 = KEYS[2 * i - 1], KEYS[2 * i]
  if kind == 's' then
    if redis.call('EXISTS', k1) == 0 then
      out[2 * i - 1], out[2 * i] = -1, 0
    else
      out[2 * i - 1] = tonumber(redis.call('HGET', k1, 'spent'))
      out[2 * i] = tonumber(redis.call('HGET', k1, 'held'))
    end
  else
    out[2 * i - 1] = tonumber(redis.call('GET', k1) or '0')
    out[2 * i] = kind == 'w' and tonumber(redis.call('GET', k2) or '0') or 0
  end
end
return out
"""


class RedisUnavailable(Exception):
    """Redis did not answer in time (or refused); the caller falls back to local counters."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one finished request adds: spend checks with their actual cost, and tokens."""

    ticket_id: str
    spends: tuple[Check, ...]  # each holding its ``amount``
    cost: int  # nano-USD, replaces every hold
    seeds: tuple[int, ...]  # the instance's view of each spend counter, before this cost
    tokens: Check | None  # the token window at settlement time
    token_count: int


class RedisCounters:
    """The counters of :mod:`.limit_checks` kept in Redis; see the module docstring."""

    def __init__(self, url: str, *, prefix: str = "aistats:limits:", hold_ttl_s: float = 3600.0) -> None:
        self._prefix = prefix
        self._hold_ttl_ms = int(hold_ttl_s * 1000)
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=TIMEOUT_S,  # waiting for a free connection
            socket_connect_timeout=TIMEOUT_S,
            socket_timeout=TIMEOUT_S,
            retry=Retry(NoBackoff(), 1),  # one quick reconnect after Redis restarted
        )
        self._client = redis.Redis(connection_pool=pool)
        self._admit = self._client.register_script(_ADMIT)
        self._settle = self._client.register_script(_SETTLE)
        self._read = self._client.register_script(_READ)
        self.pending: list[Settlement] = []  # settlements that failed while Redis was away

    async def close(self) -> None:
        await self._client.aclose()

    async def admit(self, checks: Sequence[Check], ticket_id: str, now: float) -> Outcome:
        """Check and count every limit atomically; raises :class:`RedisUnavailable`."""
        now_ms = int(now * 1000)
        keys: list[str] = []
        args: list[str | int] = [now_ms, ticket_id]
        for check in checks:
            keys.extend(self._keys(check))
            weight: str | int = repr(check.weight) if check.kind == WINDOW else self._hold_ttl_ms
            args.extend((check.kind, check.limit, check.amount, weight, self._ttl_ms(check, now), check.seed))
        reply = await self._call(self._admit, keys, args)
        failed = int(reply[0])
        values = [(int(reply[1 + 2 * i]), int(reply[2 + 2 * i])) for i in range(len(checks))]
        return Outcome(checks[failed - 1] if failed else None, values)

    async def settle(self, settlement: Settlement, now: float) -> None:
        """Book a finished request; kept for a retry when Redis is away (never raises)."""
        try:
            await self._apply(settlement, now)
        except RedisUnavailable:
            if len(self.pending) < MAX_PENDING_SETTLEMENTS:
                self.pending.append(settlement)
            else:
                log.error("dropping a limits settlement: %d are waiting for Redis", len(self.pending))

    async def retry_pending(self, now: float) -> None:
        """Apply the settlements kept while Redis was away (stops at the first failure)."""
        while self.pending:
            try:
                await self._apply(self.pending[0], now)
            except RedisUnavailable:
                return
            self.pending.pop(0)

    async def read(self, checks: Sequence[Check]) -> list[tuple[int, int]]:
        """The counters' values without counting (for ``GET /v1/key``)."""
        keys = [key for check in checks for key in self._keys(check)]
        reply = await self._call(self._read, keys, [check.kind for check in checks])
        values = []
        for i, check in enumerate(checks):
            first, second = int(reply[2 * i]), int(reply[2 * i + 1])
            values.append((check.seed, 0) if check.kind == SPEND and first < 0 else (first, second))
        return values

    async def _apply(self, settlement: Settlement, now: float) -> None:
        keys: list[str] = []
        args: list[str | int] = [settlement.ticket_id, len(settlement.spends)]
        for check, seed in zip(settlement.spends, settlement.seeds, strict=True):
            keys.extend(self._keys(check))
            args.extend((check.amount, settlement.cost, self._ttl_ms(check, now), seed))
        tokens = settlement.tokens
        if tokens is not None:
            keys.append(self._keys(tokens)[0])
            args.extend((settlement.token_count, self._ttl_ms(tokens, now)))
        await self._call(self._settle, keys, args)

    async def _call(self, script: object, keys: list[str], args: list[str | int]) -> list[int]:
        try:
            return await script(keys=keys, args=args)  # type: ignore[operator]
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _keys(self, check: Check) -> tuple[str, str]:
        base = self._prefix + check.key
        if check.kind == WINDOW:
            return f"{base}:{check.bucket}", f"{base}:{check.bucket - 1}"
        if check.kind == COUNT:
            return base, base
        return base, f"{base}:holds"

    @staticmethod
    def _ttl_ms(check: Check, now: float) -> int:
        if check.expires_at <= 0:
            return 0
        return max(1000, int((check.expires_at - now) * 1000))
