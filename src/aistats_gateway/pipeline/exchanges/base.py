"""What an exchange is, and helpers shared by the passthrough exchanges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ...api.errors import GatewayError
from ...canonical import Usage
from ...formats.base import ResponseContext, Target
from ...formats.sse import ServerSentEvent


@dataclass(slots=True)
class Completed:
    """A whole upstream reply, read: its usage and how it ended. ``finalize`` renders the body."""

    payload: Any  # the provider's parsed body (passthrough) or a canonical Response (translation)
    usage: Usage | None
    finish_reason: str | None
    output_text: str = ""  # generated text, to count tokens when the provider reports no usage


class StreamTranslator(Protocol):
    """Upstream SSE events in, client frames out; remembers usage and how the stream ended."""

    @property
    def usage(self) -> Usage | None: ...
    @property
    def finish_reason(self) -> str | None: ...
    def generated_text(self) -> str:
        """Text and tool arguments generated so far (to count tokens the provider did not report)."""
        ...

    def start(self) -> list[bytes]: ...
    def feed(self, event: ServerSentEvent) -> list[bytes]: ...
    def finish(self, usage: Usage, cost_usd: float) -> list[bytes]: ...
    def fail(self, error: GatewayError) -> list[bytes]: ...


class Exchange(Protocol):
    """How one client surface talks to one provider format."""

    upstream_format: str

    def upstream_body(self, body: dict[str, Any], target: Target, stream: bool) -> bytes: ...
    def read(self, upstream: bytes, ctx: ResponseContext) -> Completed: ...
    def finalize(self, completed: Completed, ctx: ResponseContext, cost_usd: float) -> bytes: ...
    def translator(self, ctx: ResponseContext) -> StreamTranslator: ...


def json_object(data: bytes | str, what: str) -> dict[str, Any]:
    """Parse a provider's JSON object, or fail as a provider error."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise GatewayError("provider_error", f"The provider sent invalid JSON in its {what}") from exc
    if not isinstance(value, dict):
        raise GatewayError("provider_error", f"The provider sent a non-object {what}")
    return value


def usage_with_cost(
    upstream: dict[str, Any] | None, fallback: dict[str, Any], cost_usd: float
) -> dict[str, Any]:
    """The provider's usage object as sent (else ``fallback``) plus the gateway's ``cost`` in USD."""
    return {**(upstream or fallback), "cost": cost_usd}


def stream_error_payload(error: GatewayError) -> dict[str, Any]:
    """The ``error`` object sent inside an OpenAI-format stream (plus the gateway's reason)."""
    return {"message": error.message, "type": error.reason, "code": error.code or error.reason, "param": None}
