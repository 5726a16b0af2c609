"""Per-key limits and free-tier limits: one admission per request, one settlement when it closes.

``await limiter.admit(principal, model_id, free=…, fallbacks=…, hold_nano=…)`` checks, in one atomic step:

* ``allowed_models`` (403 ``authorization_error``, checked in memory, before anything is counted);
* requests and tokens per minute (sliding windows; 429 ``rate_limit_error`` + ``Retry-After``);
* the free tier on ``:free`` models (per key: requests per minute, requests per UTC day);
* spend limits per UTC day / month / total: the request's worst case is held against what the
  key has left, and replaced by the actual cost at settlement, so concurrent requests can never
  overspend (429 until the period resets for daily/monthly; 403 for total).

It returns a :class:`LimitTicket` (or ``None`` when nothing applies: a key without limits on a
paid model costs one identity test). ``ticket.settle(tokens, cost)`` is called by
:meth:`~.generation.Generation.close`. Counters live in Redis when ``redis_url`` is set
(:mod:`.limits_redis`), else in memory (:mod:`.limit_checks`). See docs/limits.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..api.errors import GatewayError
from ..key_limits import UNLIMITED, KeyLimits
from ..money import format_usd
from ..settings import FreeTierSettings
from ..tasks import cancel_and_wait
from .auth import Principal
from .limit_checks import (
    COUNT,
    FREE_DAILY,
    FREE_REQUESTS,
    REQUEST_CHECKS,
    REQUESTS,
    SPEND,
    TOKENS,
    WINDOW,
    Check,
    MemoryCounters,
    Outcome,
    window_check,
)
from .limit_windows import (
    WINDOW_S,
    day_period,
    duration,
    estimate,
    month_period,
    period_starts,
    retry_after_s,
    seconds_until_below,
    seconds_until_empty,
)
from .limits_redis import RedisCounters, RedisUnavailable, Settlement

if TYPE_CHECKING:
    from ..store.repositories import Store
    from .generation import Generation

log = logging.getLogger(__name__)

REDIS_RETRY_S = 1.0  # after a failure, requests skip Redis this long (no timeout per request)
_DAY_S = 86400.0


class LimitError(GatewayError):
    """A refusal by a limit; carries the ``x-ratelimit-*`` headers along with ``Retry-After``
    (and Anthropic's ``anthropic-ratelimit-*`` too once :func:`for_anthropic` is applied)."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        headers: dict[str, str],
        rates: RateSnapshot | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(reason, message, **kwargs)
        self.extra_headers = headers
        self.rates = rates

    def headers(self, generation_id: str | None = None) -> dict[str, str]:
        headers = super().headers(generation_id)
        headers.update(self.extra_headers)
        return headers


@dataclass(slots=True)
class LimitTicket:
    """An admitted request: its spend holds, and the headers describing the key's limits."""

    limiter: Limiter
    id: str
    kid: str
    on_redis: bool
    spends: tuple[Check, ...]
    tokens_per_minute: int | None
    headers: dict[str, str]  # OpenAI's x-ratelimit-*
    rates: RateSnapshot | None = None  # what the headers say, for other surfaces' header names
    done: bool = field(default=False)

    def settle(self, tokens: int, cost_nano: int) -> None:
        """The request closed: count its ``tokens`` and replace the holds by ``cost_nano``. Idempotent."""
        if not self.done:
            self.done = True
            self.limiter.settle(self, tokens, cost_nano)


class Limiter:
    """Admission and settlement against every key's limits and the free tier."""

    def __init__(
        self,
        free_tier: FreeTierSettings,
        topped_up: Callable[[str], bool],
        *,
        redis_url: str | None = None,
        redis_prefix: str = "aistats:limits:",
        clock: Callable[[], float] = time.time,
        window_s: float = WINDOW_S,
    ) -> None:
        """``topped_up(workspace_id)``: whether the workspace was ever granted credits."""
        self._free = free_tier
        self._topped_up = topped_up
        self._clock = clock
        self._window_s = window_s
        self._memory = MemoryCounters()
        self._redis = RedisCounters(redis_url, prefix=redis_prefix) if redis_url else None
        self._redis_down_until = 0.0  # time.monotonic()
        self._outage = False
        self._spent: dict[str, list[float]] = {}  # spend key -> [nano-USD, expires_at]: this instance's view
        self._tasks: set[asyncio.Task[None]] = set()
        self._retry_task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, store: Store) -> None:
        """Seed the spend counters from the database; start retrying held-back settlements."""
        now = self._clock()
        day_start, month_start = period_starts(now)
        spent = await store.key_spend(day_start, month_start)
        for kid, (daily, monthly, total) in spent.items():
            for period, amount in (("daily", daily), ("monthly", monthly), ("total", total)):
                key, _, expires_at = self._spend_period(kid, period, now)
                self._spent[key] = [amount, expires_at]
        if self._redis is not None:
            self._retry_task = asyncio.create_task(self._retry_loop(), name="aistats-limits-retry")

    async def stop(self) -> None:
        """Finish the settlements in flight and close the Redis connections."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._retry_task is not None:  # cancelled again if a Redis timeout swallows the cancel
            await cancel_and_wait(self._retry_task, timeout_s=2.0)
            self._retry_task = None
        if self._redis is not None:
            await self._redis.retry_pending(self._clock())
            with contextlib.suppress(Exception):
                await self._redis.close()

    # --- admission ----------------------------------------------------------------------------

    async def admit(
        self,
        principal: Principal,
        model_id: str,
        *,
        free: bool,
        fallbacks: object = None,
        hold_nano: int = 0,
        now: float | None = None,
    ) -> LimitTicket | None:
        """Admit one request for ``model_id`` (and its ``models`` fallbacks, the body's list), or
        raise the :class:`GatewayError` of the first limit it breaks. ``free``: the model is
        ``:free``; ``hold_nano``: the request's reserved worst-case cost."""
        limits = principal.limits
        if limits is UNLIMITED and not free:
            return None
        if limits.allowed_models is not None:
            _check_models(limits, model_id, fallbacks)
        now = self._clock() if now is None else now
        checks = self._checks(principal, free, hold_nano, now, counting=True)
        if not checks:
            return None
        ticket_id = secrets.token_hex(8)
        outcome, on_redis = await self._admit(checks, ticket_id, now)
        if outcome.failed is not None:
            raise self._refusal(principal, outcome, checks, hold_nano, now)
        rates = RateSnapshot.of(checks, outcome.values, now)
        return LimitTicket(
            self,
            ticket_id,
            principal.kid,
            on_redis,
            tuple(check for check in checks if check.kind == SPEND and check.amount > 0),
            limits.tokens_per_minute,
            rates.openai(),
            rates,
        )

    async def admit_generation(
        self, generation: Generation, model_id: str, fallbacks: object = None, *, hold_nano: int = 0
    ) -> None:
        """Admit ``generation`` (authenticated) and attach its ticket, so ``close`` settles it.

        The call every surface makes after parsing and planning and before holding the wallet;
        the free tier applies when ``model_id`` is ``:free``. Add ``limit_headers(generation)``
        to the success headers."""
        assert generation.principal is not None
        generation.limit_ticket = await self.admit(
            generation.principal,
            model_id,
            free=model_id.endswith(":free"),
            fallbacks=fallbacks,
            hold_nano=hold_nano,
        )

    async def _admit(self, checks: list[Check], ticket_id: str, now: float) -> tuple[Outcome, bool]:
        if self._redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                outcome = await self._redis.admit(checks, ticket_id, now)
            except RedisUnavailable as exc:
                self._redis_failed(exc)
            else:
                if self._outage:
                    self._outage = False
                    log.warning("limits: Redis is back; limits are global again")
                return outcome, True
        return self._memory.admit(checks, now), False

    def _redis_failed(self, exc: Exception) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_S
        if not self._outage:
            self._outage = True
            log.warning(
                "limits: Redis unreachable (%s); counting in this instance's memory until it is back", exc
            )

    def _checks(
        self, principal: Principal, free: bool, hold: int, now: float, *, counting: bool
    ) -> list[Check]:
        limits = principal.limits
        kid = principal.kid
        request = 1 if counting else 0
        checks: list[Check] = []
        window = self._window_s
        if limits.requests_per_minute is not None:
            checks.append(
                window_check(REQUESTS, f"rpm:{kid}", limits.requests_per_minute, request, now, window)
            )
        if limits.tokens_per_minute is not None:
            checks.append(window_check(TOKENS, f"tpm:{kid}", limits.tokens_per_minute, 0, now, window))
        if free:
            checks.append(
                window_check(
                    FREE_REQUESTS, f"free-rpm:{kid}", self._free.requests_per_minute, request, now, window
                )
            )
            day, reset_at = day_period(now)
            checks.append(
                Check(
                    FREE_DAILY,
                    COUNT,
                    f"free-day:{kid}:{day}",
                    self._free_daily_limit(principal.workspace_id),
                    request,
                    expires_at=reset_at + _DAY_S,
                    reset_at=reset_at,
                )
            )
        for period, limit in limits.spend_limits().items():
            key, period_end, expires_at = self._spend_period(kid, period, now)
            seed = self._spent.get(key)
            checks.append(
                Check(
                    f"spend_{period}",
                    SPEND,
                    key,
                    limit,
                    hold if counting else 0,
                    expires_at=expires_at,
                    reset_at=period_end,
                    seed=int(seed[0]) if seed else 0,
                )
            )
        return checks

    def _free_daily_limit(self, workspace_id: str) -> int:
        if self._topped_up(workspace_id):
            return self._free.requests_per_day_topped_up
        return self._free.requests_per_day

    @staticmethod
    def _spend_period(kid: str, period: str, now: float) -> tuple[str, float | None, float]:
        """The counter key, reset time and expiry of ``kid``'s spend in ``period`` at ``now``."""
        if period == "daily":
            day, reset_at = day_period(now)
            return f"spend:{kid}:d:{day}", reset_at, reset_at + _DAY_S
        if period == "monthly":
            month, reset_at = month_period(now)
            return f"spend:{kid}:m:{month}", reset_at, reset_at + _DAY_S
        return f"spend:{kid}:total", None, 0.0

    # --- settlement ---------------------------------------------------------------------------

    def settle(self, ticket: LimitTicket, tokens: int, cost_nano: int) -> None:
        """Count ``tokens``; replace the ticket's holds by ``cost_nano`` (via :meth:`LimitTicket.settle`)."""
        now = self._clock()
        seeds = []
        for check in ticket.spends:
            entry = self._spent.get(check.key)
            if entry is None:
                entry = self._spent[check.key] = [0, check.expires_at]
            seeds.append(int(entry[0]))
            entry[0] += cost_nano
        token_check = None
        if ticket.tokens_per_minute is not None and tokens > 0:
            token_check = window_check(
                TOKENS, f"tpm:{ticket.kid}", ticket.tokens_per_minute, 0, now, self._window_s
            )
        if not ticket.spends and token_check is None:
            return
        if not ticket.on_redis or self._redis is None:
            for check in ticket.spends:
                self._memory.settle_spend(check, cost_nano)
            if token_check is not None:
                self._memory.add_tokens(token_check, tokens)
            return
        settlement = Settlement(ticket.id, ticket.spends, cost_nano, tuple(seeds), token_check, tokens)
        task = asyncio.get_running_loop().create_task(self._redis.settle(settlement, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry_loop(self) -> None:
        assert self._redis is not None
        while True:
            await asyncio.sleep(REDIS_RETRY_S)
            if self._redis.pending:
                await self._redis.retry_pending(self._clock())

    # --- refusals -----------------------------------------------------------------------------

    def _refusal(
        self, principal: Principal, outcome: Outcome, checks: list[Check], hold: int, now: float
    ) -> GatewayError:
        check = outcome.failed
        assert check is not None
        first, second = outcome.values[checks.index(check)]
        rates = RateSnapshot.of(checks, outcome.values, now)
        headers = rates.openai()
        if check.kind == SPEND:
            return _spend_refusal(check, first, second, hold, now, headers, rates)
        if check.kind == WINDOW:
            wait = seconds_until_below(first, second, now, check.window_s, check.limit)
        else:
            wait = (check.reset_at or now) - now
        retry = retry_after_s(wait)
        if check.name == REQUESTS:
            message = f"Rate limit reached: this API key allows {check.limit} requests per minute."
            code = "rate_limit_exceeded"
        elif check.name == TOKENS:
            message = (
                f"Rate limit reached: this API key allows {check.limit} tokens per minute "
                "and the last minute used them."
            )
            code = "rate_limit_exceeded"
        elif check.name == FREE_REQUESTS:
            message = (
                f"Free-tier rate limit reached: {check.limit} requests per minute per key on ':free' models."
            )
            code = "free_tier_rate_limit"
        else:
            message = (
                f"Free-tier daily limit reached: {check.limit} requests per UTC day per key on ':free' models"
            )
            if not self._topped_up(principal.workspace_id):
                message += (
                    f" ({self._free.requests_per_day_topped_up} per day once the workspace has added credits)"
                )
            message += "."
        message += f" Retry in {duration(retry)}."
        return LimitError(
            "rate_limit_error",
            message,
            code=code if check.name != FREE_DAILY else "free_tier_daily_limit",
            retry_after=retry,
            headers=headers,
            rates=rates,
        )

    # --- GET /v1/key --------------------------------------------------------------------------

    async def status(self, principal: Principal, now: float | None = None) -> dict[str, Any]:
        """The key's limits and its current usage against each, for ``GET /v1/key``."""
        now = self._clock() if now is None else now
        checks = self._checks(principal, True, 0, now, counting=False)
        values = None
        if self._redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                values = await self._redis.read(checks)
            except RedisUnavailable as exc:
                self._redis_failed(exc)
        if values is None:
            values = self._memory.read(checks)
        found = {check.name: (check, value) for check, value in zip(checks, values, strict=True)}
        limits = principal.limits

        def rate(name: str) -> dict[str, Any] | None:
            if name not in found:
                return None
            check, (first, second) = found[name]
            if check.kind == COUNT:
                used = first
                reset = (check.reset_at or now) - now
            else:
                used = math.ceil(estimate(first, second, check.weight))
                reset = seconds_until_empty(first, second, now, check.window_s)
            return {
                "limit": check.limit,
                "used": used,
                "remaining": max(0, check.limit - used),
                "resets_in_s": round(reset, 3),
            }

        def spend(period: str) -> dict[str, Any] | None:
            if f"spend_{period}" not in found:
                return None
            check, (spent, held) = found[f"spend_{period}"]
            return {
                "limit": format_usd(check.limit),
                "spent": format_usd(spent),
                "held": format_usd(held),
                "remaining": format_usd(max(0, check.limit - spent - held)),
                "remaining_nanos": max(0, check.limit - spent - held),
                "resets_at": _iso(check.reset_at),
            }

        return {
            "limits": limits.to_api(),
            "requests_per_minute": rate(REQUESTS),
            "tokens_per_minute": rate(TOKENS),
            "spend": {period: spend(period) for period in ("daily", "monthly", "total")},
            "free_tier": {
                "requests_per_minute": rate(FREE_REQUESTS),
                "requests_per_day": rate(FREE_DAILY),
            },
            "shared": self._redis is not None and not self._outage,
        }


def _check_models(limits: KeyLimits, model_id: str, fallbacks: object) -> None:
    """403 naming the first model (the primary, then ``models`` fallbacks) the key may not use.

    Fallbacks are checked, not filtered: a request naming a model its key may not use is refused
    whole, rather than silently served by fewer models than it asked for."""
    requested = [(model_id, "model")]
    if isinstance(fallbacks, list):
        requested += [(m, "models") for m in fallbacks if isinstance(m, str)]
    for requested_id, param in requested:
        if not limits.allows_model(requested_id):
            patterns = ", ".join(limits.allowed_models or ())
            raise GatewayError(
                "authorization_error",
                f"This API key may not use model '{requested_id}'; its allowed_models are: {patterns}.",
                code="model_not_allowed",
                param=param,
            )


def _spend_refusal(
    check: Check,
    spent: int,
    held: int,
    hold: int,
    now: float,
    headers: dict[str, str],
    rates: RateSnapshot,
) -> GatewayError:
    period = check.name.removeprefix("spend_")
    left = max(0, check.limit - spent - held)
    message = (
        f"Spend limit reached: this request may cost up to ${format_usd(hold)} but the key has "
        f"${format_usd(left)} left of its {period} limit of ${format_usd(check.limit)}"
    )
    if held:
        message += f" (${format_usd(held)} is held by requests in flight)"
    message += ". A lower max_tokens lowers the worst case."
    if check.reset_at is None:
        return LimitError(
            "authorization_error",
            message + " Raise the key's total limit to continue.",
            code="spend_limit_exceeded",
            headers=headers,
            rates=rates,
        )
    wait = check.reset_at - now
    message += f" The {period} limit resets at {_iso(check.reset_at)} (in {duration(wait)})."
    return LimitError(
        "rate_limit_error",
        message,
        code="spend_limit_exceeded",
        retry_after=retry_after_s(wait),
        headers=headers,
        rates=rates,
    )


# (limit, remaining, seconds until the window is empty / the count resets)
RateEntry = tuple[int, int, float]


@dataclass(frozen=True, slots=True)
class RateSnapshot:
    """The key's request and token limits as one admission saw them, at ``now``.

    ``requests`` is the tightest request limit that applies (key, free tier per minute or per
    day); either is None when no such limit applies. Rendered as OpenAI's ``x-ratelimit-*``
    (:meth:`openai`) and as Anthropic's ``anthropic-ratelimit-*`` (:meth:`anthropic`).
    """

    requests: RateEntry | None
    tokens: RateEntry | None
    now: float

    @classmethod
    def of(cls, checks: Sequence[Check], values: Sequence[tuple[int, int]], now: float) -> RateSnapshot:
        """The snapshot of ``checks`` given their counter ``values``."""
        requests: RateEntry | None = None
        tokens: RateEntry | None = None
        for check, (first, second) in zip(checks, values, strict=True):
            if check.kind == SPEND:
                continue
            if check.kind == COUNT:
                remaining = check.limit - first
                reset = (check.reset_at or now) - now
            else:
                remaining = math.floor(check.limit - estimate(first, second, check.weight))
                reset = seconds_until_empty(first, second, now, check.window_s)
            entry = (check.limit, max(0, remaining), reset)
            if check.name == TOKENS:
                tokens = entry
            elif check.name in REQUEST_CHECKS and (requests is None or entry[1] < requests[1]):
                requests = entry
        return cls(requests, tokens, now)

    def openai(self) -> dict[str, str]:
        """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (reset as ``12.5s``)."""
        headers: dict[str, str] = {}
        for kind, entry in (("tokens", self.tokens), ("requests", self.requests)):
            if entry is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(entry[0])
                headers[f"x-ratelimit-remaining-{kind}"] = str(entry[1])
                headers[f"x-ratelimit-reset-{kind}"] = duration(entry[2])
        return headers

    def anthropic(self) -> dict[str, str]:
        """``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` (reset in RFC 3339)."""
        headers: dict[str, str] = {}
        for kind, entry in (("requests", self.requests), ("tokens", self.tokens)):
            if entry is not None:
                headers[f"anthropic-ratelimit-{kind}-limit"] = str(entry[0])
                headers[f"anthropic-ratelimit-{kind}-remaining"] = str(entry[1])
                headers[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(self.now + entry[2])
        return headers


def rate_headers(checks: Sequence[Check], values: Sequence[tuple[int, int]], now: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` for the checks that
    apply; the request trio describes the tightest request limit (key, free tier per minute or day)."""
    return RateSnapshot.of(checks, values, now).openai()


def limit_headers(generation: Generation, *, anthropic: bool = False) -> dict[str, str]:
    """The rate-limit headers for a successful reply (empty for a key without limits): OpenAI's
    ``x-ratelimit-*``, plus Anthropic's ``anthropic-ratelimit-*`` when ``anthropic``."""
    ticket = generation.limit_ticket
    if ticket is None:
        return {}
    if not anthropic or ticket.rates is None:
        return ticket.headers
    return {**ticket.headers, **ticket.rates.anthropic()}


def for_anthropic(error: GatewayError) -> GatewayError:
    """``error`` as the Messages surface sends it: a limit's refusal also carries Anthropic's
    ``anthropic-ratelimit-*`` headers (next to the ``x-ratelimit-*`` ones)."""
    if isinstance(error, LimitError) and error.rates is not None:
        error.extra_headers = {**error.extra_headers, **error.rates.anthropic()}
    return error


def _rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(math.ceil(moment), UTC).isoformat().replace("+00:00", "Z")


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
