"""What one admission checks, and the in-memory counters that check it exactly in one process.

A request is admitted by checking a list of :class:`Check` objects all at once: either every
check passes and every one counts its ``amount``, or nothing is counted and the first failing
check is reported. The Redis backend (:mod:`.limits_redis`) applies the same rules in a Lua script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .limit_windows import bucket_at, estimate

WINDOW = "w"  # a sliding-window counter (requests or tokens per minute)
COUNT = "c"  # a counter for one calendar period (free-tier requests per day)
SPEND = "s"  # spent + held in nano-USD for one period (daily, monthly, total)

# Check names; the request-like ones share the x-ratelimit-*-requests headers.
REQUESTS = "requests"
TOKENS = "tokens"
FREE_REQUESTS = "free_requests"
FREE_DAILY = "free_daily"
REQUEST_CHECKS = (REQUESTS, FREE_REQUESTS, FREE_DAILY)


@dataclass(frozen=True, slots=True)
class Check:
    """One limit to check: counter ``key`` must stay under ``limit`` after adding ``amount``.

    Windows count while the estimate is under ``limit`` (the request itself counts once admitted;
    tokens are added at settlement with ``amount`` 0 at admission). Spend checks admit while
    ``spent + held + amount <= limit`` and hold ``amount`` until settlement.
    """

    name: str
    kind: str
    key: str
    limit: int
    amount: int
    bucket: int = 0  # windows: the current bucket index
    weight: float = 0.0  # windows: the weight of the previous bucket
    window_s: float = 0.0
    expires_at: float = 0.0  # epoch s after which the counter is worthless (0: never)
    reset_at: float | None = None  # calendar periods: when the period ends
    seed: int = 0  # spend: what this instance knows was spent (from the database at start-up)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of an admission: the first failing check (None: admitted) and, per check,
    two integers: ``(current, previous)`` for windows, ``(count, 0)``, or ``(spent, held)``,
    after counting when admitted, before it otherwise."""

    failed: Check | None
    values: list[tuple[int, int]]


def window_check(name: str, key: str, limit: int, amount: int, now: float, window_s: float) -> Check:
    bucket, weight = bucket_at(now, window_s)
    return Check(
        name, WINDOW, key, limit, amount, bucket, weight, window_s, expires_at=(bucket + 2) * window_s
    )


class MemoryCounters:
    """Every counter in this process's memory; exact for one instance.

    Admission is a check then an add with no ``await`` in between, so it is atomic on the
    event loop. Expired counters are swept once a minute.
    """

    def __init__(self) -> None:
        self._windows: dict[str, list[float]] = {}  # key -> [bucket, current, previous, expires_at]
        self._counts: dict[str, list[float]] = {}  # key -> [count, expires_at]
        self._spend: dict[str, list[float]] = {}  # key -> [spent, held, expires_at]
        self._next_sweep = 0.0

    def admit(self, checks: Sequence[Check], now: float) -> Outcome:
        """Check every limit; count them all only when all pass."""
        if now >= self._next_sweep:
            self._sweep(now)
        failed: Check | None = None
        values: list[tuple[int, int]] = []
        for check in checks:
            if check.kind == WINDOW:
                entry = self._window(check)
                current, previous = int(entry[1]), int(entry[2])
                if failed is None and estimate(current, previous, check.weight) >= check.limit:
                    failed = check
                values.append((current, previous))
            elif check.kind == COUNT:
                count = int(self._count(check)[0])
                if failed is None and count + check.amount > check.limit:
                    failed = check
                values.append((count, 0))
            else:
                spend = self._spending(check)
                spent, held = int(spend[0]), int(spend[1])
                if failed is None and check.amount > 0 and spent + held + check.amount > check.limit:
                    failed = check
                values.append((spent, held))
        if failed is not None:
            return Outcome(failed, values)
        for i, check in enumerate(checks):
            if check.amount == 0:
                continue
            first, second = values[i]
            if check.kind == WINDOW:
                self._windows[check.key][1] += check.amount
                values[i] = (first + check.amount, second)
            elif check.kind == COUNT:
                self._counts[check.key][0] += check.amount
                values[i] = (first + check.amount, second)
            else:
                self._spend[check.key][1] += check.amount
                values[i] = (first, second + check.amount)
        return Outcome(None, values)

    def settle_spend(self, check: Check, cost: int) -> None:
        """Replace the hold taken by ``check`` with the actual ``cost``."""
        spend = self._spending(check)
        spend[1] -= check.amount
        spend[0] += cost

    def add_tokens(self, check: Check, tokens: int) -> None:
        """Count ``tokens`` in the window of ``check`` (built at settlement time)."""
        self._window(check)[1] += tokens

    def read(self, checks: Sequence[Check]) -> list[tuple[int, int]]:
        """The counters' values, as :class:`Outcome` reports them, without counting."""
        values: list[tuple[int, int]] = []
        for check in checks:
            if check.kind == WINDOW:
                entry = self._windows.get(check.key)
                if entry is None or entry[0] < check.bucket - 1:
                    values.append((0, 0))
                elif entry[0] == check.bucket - 1:
                    values.append((0, int(entry[1])))
                else:
                    values.append((int(entry[1]), int(entry[2])))
            elif check.kind == COUNT:
                count = self._counts.get(check.key)
                values.append((int(count[0]) if count else 0, 0))
            else:
                spend = self._spend.get(check.key)
                values.append((int(spend[0]), int(spend[1])) if spend else (check.seed, 0))
        return values

    def _window(self, check: Check) -> list[float]:
        entry = self._windows.get(check.key)
        if entry is None or entry[0] < check.bucket - 1:
            entry = self._windows[check.key] = [check.bucket, 0, 0, check.expires_at]
        elif entry[0] == check.bucket - 1:
            entry[0:4] = [check.bucket, 0, entry[1], check.expires_at]
        return entry

    def _count(self, check: Check) -> list[float]:
        entry = self._counts.get(check.key)
        if entry is None:
            entry = self._counts[check.key] = [0, check.expires_at]
        return entry

    def _spending(self, check: Check) -> list[float]:
        entry = self._spend.get(check.key)
        if entry is None:
            entry = self._spend[check.key] = [check.seed, 0, check.expires_at]
        return entry

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 60.0
        for table in (self._windows, self._counts):
            for key in [key for key, entry in table.items() if 0 < entry[-1] < now]:
                del table[key]
        for key in [key for key, entry in self._spend.items() if 0 < entry[2] < now and entry[1] == 0]:
            del self._spend[key]
