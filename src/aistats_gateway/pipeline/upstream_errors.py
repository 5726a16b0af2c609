"""Map an upstream failure to the gateway error the client sees (DESIGN.md ★ Errors)."""

from __future__ import annotations

import orjson

from ..api.errors import GatewayError
from ..providers.base import UpstreamConnectError, UpstreamFailure, UpstreamStatusError, UpstreamTimeout

DEFAULT_RETRY_AFTER = 1

_STATUS_REASONS = {
    400: "validation_error",
    404: "not_found_error",
    409: "validation_error",
    413: "validation_error",
    422: "validation_error",
}


def provider_message(body: bytes) -> str | None:
    """The human message inside a provider's error body (OpenAI, Anthropic or Google shapes)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:500] or None
    if isinstance(payload, list) and payload:
        payload = payload[0]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if payload.get("message"):
            return str(payload["message"])
    return None


def _retry_after(headers: dict[str, str]) -> int:
    value = headers.get("retry-after")
    try:
        return max(1, int(float(value))) if value else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER


def to_gateway_error(failure: UpstreamFailure) -> GatewayError:
    """The client-facing error for a failed attempt."""
    if isinstance(failure, UpstreamTimeout):
        return GatewayError(
            "timeout_error", f"The provider '{failure.provider}' timed out: {failure.message}"
        )
    if isinstance(failure, UpstreamConnectError):
        return GatewayError(
            "provider_error", f"The provider '{failure.provider}' is unreachable: {failure.message}"
        )
    if isinstance(failure, UpstreamStatusError):
        message = provider_message(failure.body) or f"HTTP {failure.status}"
        status = failure.status
        where = f"Provider '{failure.provider}'"
        if status == 429:
            return GatewayError(
                "rate_limit_error",
                f"{where} is rate limiting: {message}",
                retry_after=_retry_after(failure.headers),
            )
        if status in (401, 403) or (status == 400 and b"API_KEY_INVALID" in failure.body):
            # Gemini answers a wrong key with 400 INVALID_ARGUMENT / API_KEY_INVALID: not the caller's fault.
            whose = (
                "this workspace's own key (BYOK; replace it with POST /v1/byok)"
                if failure.byok
                else "the gateway's credentials"
            )
            return GatewayError("provider_error", f"{where} rejected {whose} (HTTP {status}): {message}")
        if status == 408:
            return GatewayError("timeout_error", f"{where} timed out: {message}")
        if status >= 500:
            return GatewayError("provider_error", f"{where} failed (HTTP {status}): {message}")
        return GatewayError(
            _STATUS_REASONS.get(status, "validation_error"), message, status=status, code="upstream_error"
        )
    return GatewayError("provider_error", failure.message)
