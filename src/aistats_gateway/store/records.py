"""Plain records that cross the boundary between the request path and the store."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

import orjson

from ..money import nanos_to_usd


def json_text(value: Any) -> str:
    """A JSON column's stored text, the same on every write path (SQLAlchemy's ``json_serializer``
    and the raw batch writers): compact orjson, UTF-8 kept, non-string keys turned into strings."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


@dataclass(slots=True)
class GenerationRecord:
    """One generation (one client request), as written to the ``generations`` table."""

    id: str  # gen_<ULID>
    workspace_id: str
    key_id: str | None  # the API key's kid
    endpoint: str  # "chat" | "responses" | "messages" | "embeddings" | ...
    model: str  # the gateway model id the client asked for
    provider: str | None  # provider name from settings that served (or last tried)
    upstream_model: str | None
    status: str  # "completed" | "incomplete" | "failed" | "cancelled"
    streamed: bool
    finish_reason: str | None
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_nano: int
    latency_ms: int | None
    ttft_ms: int | None
    error: str | None
    created_at: datetime
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every provider tried, in order
    usage_estimated: bool = False  # the provider reported no usage; tokens were counted by the gateway

    def to_api(self) -> dict[str, Any]:
        """The body of ``GET /v1/generations?id=``."""
        return {
            "id": self.id,
            "object": "generation",
            "workspace_id": self.workspace_id,
            "key_id": self.key_id,
            "endpoint": self.endpoint,
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "status": self.status,
            "streamed": self.streamed,
            "finish_reason": self.finish_reason,
            "usage": {
                "input_tokens": self.input_tokens,
                "cached_input_tokens": self.cached_input_tokens,
                "output_tokens": self.output_tokens,
                "reasoning_tokens": self.reasoning_tokens,
                "total_tokens": self.input_tokens + self.output_tokens,
            },
            "cost": nanos_to_usd(self.cost_nano),
            "cost_nanos": self.cost_nano,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "error": self.error,
            "usage_estimated": self.usage_estimated,
            "attempts": self.attempts or [],
            "created_at": int(self.created_at.timestamp()),
        }


# The largest values the columns hold on every database (Postgres INTEGER and BIGINT): a count or
# cost above them would make every retry of its batch fail, so nothing larger is ever recorded.
MAX_STORED_TOKENS = 2**31 - 1
MAX_STORED_NANOS = 2**63 - 1


def storable_text(value: str | None) -> str | None:
    """``value`` as every database can store it: NUL, which Postgres text refuses, becomes U+FFFD.

    For text a client or a provider chose (a model name, an error message, a finish reason): one
    NUL in it would make its record's batch fail on every retry.
    """
    if value is None or "\x00" not in value:
        return value
    return value.replace("\x00", "\ufffd")


# The ``generations`` columns a batch writes, in one order for every writer: the record's fields.
GENERATION_COLUMNS = tuple(item.name for item in fields(GenerationRecord))

T = TypeVar("T")


def unique_sorted(items: Iterable[T], key: Callable[[T], Any]) -> list[T]:
    """One item per ``key`` (the first wins: a retried batch repeats its records), sorted by key,
    so concurrent batches take their row locks in the same order."""
    by_key: dict[Hashable, T] = {}
    for item in items:
        by_key.setdefault(key(item), item)
    return [by_key[k] for k in sorted(by_key)]  # type: ignore[type-var]


@dataclass(slots=True, frozen=True)
class Charge:
    """The settled cost of one generation: at most one ledger entry per ``generation_id``."""

    generation_id: str
    workspace_id: str
    amount_nano: int  # >= 0; written to the ledger as a negative entry


@dataclass(slots=True, frozen=True)
class Workspace:
    id: str
    name: str
    created_at: datetime


@dataclass(slots=True, frozen=True)
class ApiKeyRow:
    kid: str
    workspace_id: str
    name: str | None
    secret_hash: str  # hex HMAC-SHA256(pepper, secret)
    created_at: datetime
    revoked_at: datetime | None
    kind: str = "inference"  # "inference" | "management"
    limits: dict[str, Any] | None = None  # key_limits.KeyLimits.to_json()
    updated_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class WalletRow:
    workspace_id: str
    balance_nano: int
    granted_total_nano: int
    spent_total_nano: int


@dataclass(slots=True, frozen=True)
class LedgerEntry:
    """One row of ``ledger_entries``: a signed movement of a workspace's credits."""

    id: int
    workspace_id: str
    kind: str  # "grant" | "charge" | "adjustment"
    amount_nano: int  # signed: charges are negative
    generation_id: str | None
    note: str | None
    created_at: datetime
    idempotency_key: str | None = None  # grants made with an Idempotency-Key


@dataclass(slots=True, frozen=True)
class GrantOutcome:
    """A credit grant: the wallet after it, its ledger entry, and whether this call applied it
    (False: a retry of an earlier grant with the same idempotency key, which was not applied again)."""

    wallet: WalletRow
    entry: LedgerEntry
    applied: bool
