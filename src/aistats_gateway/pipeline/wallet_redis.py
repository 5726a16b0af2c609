"""Wallet holds shared by every gateway instance, atomic in Redis (docs/decisions/008).

Per workspace, three keys with one hash tag (``{ws_…}``) so each script touches one slot:

* ``aistats:w:{ws}`` — a hash: ``balance`` (the live balance in nano-USD: grants minus every
  settled charge, written to the database or not), ``granted`` (the database's granted total this
  balance already includes) and ``reserved`` (the sum of the open holds);
* ``aistats:w:{ws}:holds`` — a sorted set of open hold ids scored by their expiry (ms);
* ``aistats:w:{ws}:amounts`` — a hash, hold id → amount;
* ``aistats:w:{ws}:expired`` — hold ids dropped by expiry and not settled yet (rare: their
  instance died or stopped renewing), so a late settlement still subtracts its cost once.

``reserve`` is one script: drop expired holds, then hold ``amount`` only if ``balance -
reserved`` covers it — the check and the hold are atomic across instances, so N instances can
never overspend one wallet. ``settle`` releases a hold and subtracts the actual cost;
``release`` only releases. Holds expire (``hold_ttl_s``) unless the instance that owns them
renews them, so a crashed instance cannot pin a balance forever.

The database stays the ledger of record. The balance is seeded from it when the hash is missing
(first use, or Redis lost its data) and grants made anywhere (CLI, API, another instance) are
folded in by comparing the database's ``granted_total`` with ``granted``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from ..store.records import WalletRow

log = logging.getLogger(__name__)

_TIMEOUT_S = 1.0

# KEYS: wallet, holds, amounts, expired. ARGV: now_ms, amount, hold_id, expires_ms.
# Returns {1, available_after} when held, {0, available} when it does not fit, {-1} when unseeded.
# A hold id already held is not held again ({1, available}): a retried call whose reply was lost.
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then
  local held_balance = tonumber(redis.call('HGET', KEYS[1], 'balance') or '0')
  local held_reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
  return {1, held_balance - held_reserved}
end
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(expired) do
  local held = redis.call('HGET', KEYS[3], id)
  if held then redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(held)) end
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HSET', KEYS[4], id, 1)
  redis.call('EXPIRE', KEYS[4], 86400)
end
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local amount = tonumber(ARGV[2])
local available = balance - reserved
if available < amount then return {0, available} end
redis.call('HINCRBY', KEYS[1], 'reserved', amount)
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], amount)
return {1, available - amount}
"""

# KEYS: wallet, holds, amounts, expired. ARGV: hold_id, cost. Releases the hold and subtracts
# cost from the balance. A hold id is settled at most once: a repeated settlement (a retry whose
# first reply was lost) finds neither an open nor an expired hold and changes nothing.
_SETTLE = """
local held = redis.call('HGET', KEYS[3], ARGV[1])
if held then
  redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(held))
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif redis.call('HDEL', KEYS[4], ARGV[1]) == 0 then
  return 0
end
local cost = tonumber(ARGV[2])
if cost ~= 0 then redis.call('HINCRBY', KEYS[1], 'balance', -cost) end
return 1
"""

# KEYS: wallet. ARGV: db_balance_minus_local_unflushed, db_granted.
# Seeds a missing wallet; otherwise folds in grants the database has and Redis has not seen.
_SYNC = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'balance', ARGV[1], 'granted', ARGV[2], 'reserved', 0)
  return 1
end
local granted = tonumber(redis.call('HGET', KEYS[1], 'granted') or '0')
local db_granted = tonumber(ARGV[2])
if db_granted > granted then
  redis.call('HINCRBY', KEYS[1], 'balance', db_granted - granted)
  redis.call('HSET', KEYS[1], 'granted', ARGV[2])
  return 2
end
return 0
"""

# KEYS: holds. ARGV: expires_ms, hold ids… Pushes the expiry of holds that are still open.
_RENEW = """
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[1]), ARGV[i]) end
return 0
"""


_SCRIPTS = {"reserve": _RESERVE, "settle": _SETTLE, "sync": _SYNC, "renew": _RENEW}
# EVALSHA names a script by the SHA1 of its text, so the names are known without asking Redis.
_SHAS = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in _SCRIPTS.items()}


class SharedWalletUnavailable(Exception):
    """Redis could not be reached or answered an error; paid requests are refused, not guessed."""


@dataclass(frozen=True, slots=True)
class HoldResult:
    held: bool
    available: int  # after the hold when held, else what was available


def _keys(workspace_id: str) -> tuple[str, str, str, str]:
    base = f"aistats:w:{{{workspace_id}}}"
    return base, f"{base}:holds", f"{base}:amounts", f"{base}:expired"


class RedisWallets:
    """The Redis side of :class:`~.billing.WalletBook` when ``AISTATS_REDIS_URL`` is set."""

    def __init__(self, redis_url: str, *, hold_ttl_s: float = 120.0) -> None:
        self._client: redis.Redis = redis.Redis.from_url(
            redis_url,
            socket_timeout=_TIMEOUT_S,
            socket_connect_timeout=_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self.hold_ttl_s = hold_ttl_s

    async def start(self) -> None:
        """Load the scripts (fails fast with a clear error when Redis is unreachable)."""
        try:
            await self._load_scripts()
        except (RedisError, OSError) as exc:
            raise SharedWalletUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _load_scripts(self) -> None:
        for source in _SCRIPTS.values():
            await self._client.script_load(source)

    async def close(self) -> None:
        await self._client.aclose()

    async def _run(self, name: str, keys: Iterable[str], args: Iterable[str | int]) -> object:
        """One script call."""
        (result,) = await self._pipeline(name, [(list(keys), list(args))])
        return result

    async def _pipeline(self, name: str, calls: list[tuple[list[str], list[str | int]]]) -> list[object]:
        """Script ``name`` once per ``(keys, args)``, in one round trip; the scripts are loaded
        again (and the calls repeated once) if Redis restarted and lost its script cache."""
        for attempt in (1, 2):
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(_SHAS[name], len(keys), *keys, *args)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise SharedWalletUnavailable(f"Redis refused the {name} script") from None
                try:
                    await self._load_scripts()
                except (RedisError, OSError) as exc:
                    raise SharedWalletUnavailable(f"{type(exc).__name__}: {exc}") from exc
            except (RedisError, OSError) as exc:
                raise SharedWalletUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    async def reserve(self, workspace_id: str, hold_id: str, amount: int) -> HoldResult | None:
        """Hold ``amount`` if it fits; ``None`` when the wallet is not seeded in Redis yet."""
        now_ms = int(time.time() * 1000)
        expires_ms = now_ms + int(self.hold_ttl_s * 1000)
        args = (now_ms, amount, hold_id, expires_ms)
        try:
            result = await self._run("reserve", _keys(workspace_id), args)
        except SharedWalletUnavailable as exc:
            # One more try before a paid request is refused: a reply lost to a timeout or a dropped
            # connection must not fail the request, and the script holds a hold id only once.
            log.info("retrying a wallet hold after %s", exc)
            result = await self._run("reserve", _keys(workspace_id), args)
        assert isinstance(result, list)
        if int(result[0]) == -1:
            return None
        return HoldResult(int(result[0]) == 1, int(result[1]))

    async def settle(self, workspace_id: str, hold_id: str, cost: int) -> None:
        """Release the hold and subtract ``cost`` (0 releases only)."""
        await self._run("settle", _keys(workspace_id), (hold_id, cost))

    async def seed(self, row: WalletRow, local_unflushed: int) -> None:
        """Create the Redis wallet from the database row if it is missing; fold in new grants."""
        balance = row.balance_nano - local_unflushed
        await self._run("sync", _keys(row.workspace_id)[:1], (balance, row.granted_total_nano))

    async def sync(self, rows: Iterable[WalletRow], local_unflushed: Mapping[str, int]) -> None:
        """:meth:`seed` for many wallets in one round trip."""
        calls: list[tuple[list[str], list[str | int]]] = [
            (
                [_keys(row.workspace_id)[0]],
                [row.balance_nano - local_unflushed.get(row.workspace_id, 0), row.granted_total_nano],
            )
            for row in rows
        ]
        if calls:
            await self._pipeline("sync", calls)

    async def renew(self, holds: Mapping[str, list[str]]) -> None:
        """Push the expiry of this instance's open holds (workspace id → hold ids)."""
        expires_ms = int((time.time() + self.hold_ttl_s) * 1000)
        calls: list[tuple[list[str], list[str | int]]] = [
            ([_keys(workspace_id)[1]], [expires_ms, *hold_ids])
            for workspace_id, hold_ids in holds.items()
            if hold_ids
        ]
        if calls:
            await self._pipeline("renew", calls)

    async def totals(self, workspace_id: str) -> tuple[int, int] | None:
        """``(balance, reserved)`` across every instance, or None when not seeded."""
        try:
            values = await self._client.hmget(_keys(workspace_id)[0], ["balance", "reserved"])
        except (RedisError, OSError) as exc:
            raise SharedWalletUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if values[0] is None:
            return None
        return int(values[0]), int(values[1] or 0)
