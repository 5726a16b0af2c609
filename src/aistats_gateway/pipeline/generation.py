"""One generation's bookkeeping: timing, reservation, settlement and its usage record."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..byok.fee import ByokFee
from ..canonical import Usage
from ..metrics import Metrics
from ..money import PriceCard
from ..store.records import MAX_STORED_NANOS, MAX_STORED_TOKENS, Charge, GenerationRecord, storable_text
from ..store.writer import BatchedWriter
from .auth import Principal
from .billing import Reservation, WalletBook
from .limits import LimitTicket
from .tokens import count_tokens_async


async def estimate_usage(request_body: bytes, output_text: str) -> Usage:
    """Usage counted by the gateway when a provider reports none (the record is marked estimated).

    The input is counted over the whole JSON body, so it errs on the high side by the JSON syntax.
    Counting runs in a worker thread (the tokenizer loads on first use).
    """
    return Usage(
        input_tokens=await count_tokens_async(request_body.decode("utf-8", "replace")),
        output_tokens=await count_tokens_async(output_text),
    )


@dataclass(slots=True)
class Attempt:
    provider: str
    upstream_model: str
    outcome: str  # "ok", "circuit_open", or the error class name
    latency_ms: int
    status: int | None = None  # the provider's HTTP status, when it answered
    byok: bool = False  # sent with the workspace's own provider key


@dataclass(slots=True)
class Generation:
    """Tracks one request from auth to record; ``close`` writes it behind the response."""

    id: str
    endpoint: str
    principal: Principal | None
    wallets: WalletBook
    writer: BatchedWriter
    metrics: Metrics
    started: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    model_id: str | None = None
    streamed: bool = False
    reservation: Reservation | None = None
    price: PriceCard | None = None
    provider: str | None = None
    upstream_model: str | None = None
    first_byte: float | None = None
    upstream_s: float = 0.0  # time spent waiting on providers (all attempts)
    attempt_started: float | None = None
    serving_started: float | None = None  # start of the attempt that is serving (streams)
    attempts: list[Attempt] = field(default_factory=list)
    closed: bool = False
    limit_ticket: LimitTicket | None = None  # the key's limits: settled by close()
    byok_fee: ByokFee | None = None  # set while an attempt uses the workspace's own key (BYOK)

    @property
    def created(self) -> int:
        return int(self.created_at.timestamp())

    def mark_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()

    def upstream_begin(
        self,
        provider: str,
        upstream_model: str,
        price: PriceCard,
        model_id: str,
        byok_fee: ByokFee | None = None,
    ) -> None:
        """An attempt on ``provider`` for catalog model ``model_id`` starts now; ``byok_fee``
        when it uses the workspace's own key (it is then billed that fee of the list price)."""
        self.provider = provider
        self.upstream_model = upstream_model
        self.price = price
        self.model_id = model_id
        self.byok_fee = byok_fee
        self.attempt_started = self.serving_started = time.perf_counter()

    def skip(self, provider: str, upstream_model: str, outcome: str) -> None:
        """A candidate passed over without a call (e.g. its circuit is open)."""
        self.attempts.append(Attempt(provider, upstream_model, outcome, 0))

    def upstream_end(self, outcome: str, status: int | None = None) -> float:
        """The provider's part of this attempt is over (reply read, first event, or failure);
        returns how long it took."""
        if self.attempt_started is None:
            return 0.0
        elapsed = time.perf_counter() - self.attempt_started
        self.attempt_started = None
        self.upstream_s += elapsed
        self.attempts.append(
            Attempt(
                self.provider or "",
                self.upstream_model or "",
                outcome,
                round(elapsed * 1000),
                status,
                self.byok_fee is not None,
            )
        )
        return elapsed

    def overhead_s(self) -> float:
        """The gateway's own time so far: elapsed minus the time spent waiting on providers."""
        return max(0.0, time.perf_counter() - self.started - self.upstream_s)

    def cost_of(self, usage: Usage, *, images: int = 0) -> int:
        """What ``usage`` (and ``images`` generated) is billed: the list price, or the BYOK fee of
        it (rounded up).

        Counts above what the usage columns hold (a provider reporting billions of tokens) are
        billed and recorded as that maximum, so the record can always be written.
        """
        usage = usage.at_most(MAX_STORED_TOKENS)
        cost = self.price.cost(usage, images=images) if self.price else 0
        fee = self.byok_fee
        return min(cost if fee is None else fee.apply(cost), MAX_STORED_NANOS)

    def close(
        self,
        status: str,
        *,
        usage: Usage | None = None,
        cost: int | None = None,
        finish_reason: str | None = None,
        error: str | None = None,
        usage_estimated: bool = False,
    ) -> None:
        """Settle (or release) the reservation and queue the record; later calls do nothing.

        Without ``usage`` nothing is charged; ``cost`` (from :meth:`cost_of`, so within what the
        columns hold) defaults to the price of ``usage``.
        """
        if self.closed or self.principal is None:
            return
        self.closed = True
        if cost is None:
            cost = self.cost_of(usage) if usage is not None else 0
        charge = None
        if self.reservation is not None:
            if usage is not None:
                self.wallets.settle(self.reservation, cost)
                if self.reservation.amount > 0 or cost > 0:
                    charge = Charge(self.id, self.principal.workspace_id, cost)
            else:
                self.wallets.release(self.reservation)
        usage = (usage or Usage()).at_most(MAX_STORED_TOKENS)
        if self.limit_ticket is not None:
            self.limit_ticket.settle(
                usage.input_tokens + usage.output_tokens, cost if charge is not None else 0
            )
        now = time.perf_counter()
        record = GenerationRecord(
            id=self.id,
            workspace_id=self.principal.workspace_id,
            key_id=self.principal.kid,
            endpoint=self.endpoint,
            model=storable_text(self.model_id) or "",
            provider=self.provider,
            upstream_model=storable_text(self.upstream_model),
            status=status,
            streamed=self.streamed,
            finish_reason=storable_text(finish_reason),
            input_tokens=usage.input_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_nano=cost if charge is not None else 0,
            latency_ms=round((now - self.started) * 1000),
            ttft_ms=round((self.first_byte - self.started) * 1000) if self.first_byte else None,
            error=storable_text(error),
            created_at=self.created_at,
            attempts=[
                {
                    "provider": attempt.provider,
                    "upstream_model": attempt.upstream_model,
                    "outcome": attempt.outcome,
                    "status": attempt.status,
                    "latency_ms": attempt.latency_ms,
                    **_BYOK_MARK[attempt.byok],
                }
                for attempt in self.attempts
            ],
            usage_estimated=usage_estimated,
        )
        self.writer.submit(record, charge)
        self.metrics.generation(record, self.upstream_s if self.attempts else None)


_BYOK_MARK: dict[bool, dict[str, bool]] = {True: {"byok": True}, False: {}}  # only BYOK attempts say so


def close_cancelled(
    generation: Generation, usage: Usage, finish_reason: str | None, *, estimated: bool
) -> None:
    """Record a stream the client abandoned; its tokens were generated, so they are billed."""
    generation.close(
        "cancelled",
        usage=usage,
        finish_reason=finish_reason,
        error="client disconnected",
        usage_estimated=estimated,
    )


async def count_then_close_cancelled(generation: Generation, request_body: bytes, output_text: str) -> None:
    """Count an abandoned stream's tokens (the provider never reported them), then record it."""
    usage = await estimate_usage(request_body, output_text)
    close_cancelled(generation, usage, None, estimated=True)


class BackgroundTasks(set[asyncio.Task[None]]):
    """Strong references to fire-and-forget tasks until they finish (asyncio keeps only weak ones)."""

    def add(self, task: asyncio.Task[None]) -> None:
        super().add(task)
        task.add_done_callback(self.discard)
