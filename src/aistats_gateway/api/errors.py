"""The gateway's error type and its two wire shapes (OpenAI surfaces, Anthropic surface).

Every failure a client can see is a :class:`GatewayError`; its ``reason`` fixes the HTTP
status unless the error carries an upstream status of its own (an upstream 4xx keeps its code).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

# reason -> default HTTP status (the ★ contract in DESIGN.md).
REASON_STATUS: dict[str, int] = {
    "validation_error": 400,
    "authentication_error": 401,
    "insufficient_credits": 402,
    "authorization_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "server_error": 500,
    "provider_error": 502,
    "no_provider_available": 503,
    "timeout_error": 504,
}

# Anthropic's own error type names, for the Messages surface.
ANTHROPIC_TYPES: dict[str, str] = {
    "validation_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "insufficient_credits": "billing_error",
    "authorization_error": "permission_error",
    "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "server_error": "api_error",
    "provider_error": "api_error",
    "no_provider_available": "overloaded_error",
    "timeout_error": "timeout_error",
}


class GatewayError(Exception):
    """A failure with a contract ``reason``, a message for the user, and optional details."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        if reason not in REASON_STATUS:
            raise ValueError(f"unknown error reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status if status is not None else REASON_STATUS[reason]
        self.code = code
        self.param = param
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether a client may retry: 429 and 5xx are, other 4xx are final."""
        return self.status == 429 or self.status >= 500

    def headers(self, generation_id: str | None = None) -> dict[str, str]:
        """Response headers for this error: generation id, Retry-After, x-should-retry."""
        headers: dict[str, str] = {}
        if generation_id:
            headers["x-generation-id"] = generation_id
        if self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        if not self.retryable:
            headers["x-should-retry"] = "false"
        return headers

    def openai_body(self, generation_id: str | None = None) -> dict[str, Any]:
        """The OpenAI-surface body: ``{error: {message, type, code, param}, generation_id, …}``."""
        return {
            "error": {"message": self.message, "type": self.reason, "code": self.code, "param": self.param},
            "generation_id": generation_id,
            "status_code": self.status,
            "reason": self.reason,
        }

    def anthropic_body(self, generation_id: str | None = None) -> dict[str, Any]:
        """The Anthropic-surface body: ``{type: "error", error: {type, message}, generation_id}``."""
        return {
            "type": "error",
            "error": {"type": ANTHROPIC_TYPES[self.reason], "message": self.message},
            "generation_id": generation_id,
        }

    def json(self, generation_id: str | None = None, *, anthropic: bool = False) -> bytes:
        """The encoded body: OpenAI's shape, or Anthropic's for the Messages surface."""
        body = self.anthropic_body(generation_id) if anthropic else self.openai_body(generation_id)
        return orjson.dumps(body)


def invalid(message: str, param: str | None = None, code: str | None = "invalid_request") -> GatewayError:
    """Shorthand for a 400 ``validation_error``."""
    return GatewayError("validation_error", message, param=param, code=code)


def error_response(error: GatewayError, generation_id: str | None, *, anthropic: bool = False) -> Response:
    """The HTTP response for ``error`` in the OpenAI (default) or Anthropic shape."""
    return Response(
        error.json(generation_id, anthropic=anthropic),
        status_code=error.status,
        headers=error.headers(generation_id),
        media_type="application/json",
    )
