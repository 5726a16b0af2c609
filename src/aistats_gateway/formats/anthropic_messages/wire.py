"""Anthropic Messages wire vocabulary shared by both directions: names, maps, ids, usage, JSON.

Everything here is declarative or a pure function, so the request, response and stream modules
agree on one spelling of each rule.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

from ...api.errors import GatewayError
from ...canonical import FinishReason, ToolChoice, Usage

FORMAT_NAME = "messages"

# The synthetic tool that carries structured output (JSON answers) through tool forcing.
STRUCTURED_TOOL = "aistats_structured_output"
STRUCTURED_TOOL_DESCRIPTION = "Give the final answer as the input of this tool, matching its schema exactly."

# Anthropic stop_reason -> canonical finish reason (provider side).
STOP_TO_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "max_tokens": "length",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
    "model_context_window_exceeded": "length",
}

# Canonical finish reason -> Anthropic stop_reason (client side). "error" has no Anthropic
# counterpart; the answer did end, so it is reported as a natural end of turn.
FINISH_TO_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}

# Anthropic tool_choice.type -> canonical ToolChoice.mode (client side), and back.
TOOL_CHOICE_MODES: dict[str, str] = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
MODE_TO_TOOL_CHOICE: dict[str, str] = {mode: kind for kind, mode in TOOL_CHOICE_MODES.items()}

_VALID_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_INVALID_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def tool_id(raw: str) -> str:
    """A tool-use id Anthropic accepts (``^[a-zA-Z0-9_-]+$``): ``raw`` itself when valid.

    Otherwise ``toolu_`` + ``raw`` with invalid characters replaced + a short hash of ``raw``
    (so two ids differing only in replaced characters stay distinct). The mapping is a pure
    function, so a tool_use id and the matching tool_result id always agree.
    """
    if _VALID_TOOL_ID.match(raw):
        return raw
    if not raw:
        return "toolu_" + secrets.token_hex(12)
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"toolu_{_INVALID_ID_CHARS.sub('_', raw)}_{digest}"


def dumps_arguments(value: Any) -> str:
    """JSON text of a tool ``input`` dict, compact, key order and non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_input(arguments: str) -> dict[str, Any] | None:
    """The ``input`` object for tool-call JSON text (``""`` is ``{}``); None when not an object."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def is_complete_json(text: str) -> bool:
    """Whether ``text`` is already a whole JSON value (more fragments could only break it)."""
    if not text.strip():
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def usage_from_wire(usage: dict[str, Any] | None) -> Usage | None:
    """Canonical usage from an Anthropic ``usage`` object (input totals include cache reads/writes;
    the same reading as the passthrough's, 1-hour cache writes included)."""
    return Usage.from_anthropic(usage)


def usage_to_wire(usage: Usage | None, cost_usd: float) -> dict[str, Any]:
    """An Anthropic ``usage`` object: ``input_tokens`` counts UNCACHED input only, plus ``cost``."""
    usage = usage or Usage()
    uncached = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
    wire: dict[str, Any] = {
        "input_tokens": uncached,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    }
    if usage.reasoning_tokens:
        wire["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    wire["cost"] = cost_usd
    return wire


def tool_choice_to_wire(choice: ToolChoice) -> dict[str, Any]:
    """Anthropic ``tool_choice`` for a canonical choice (without disable_parallel_tool_use)."""
    wire: dict[str, Any] = {"type": MODE_TO_TOOL_CHOICE[choice.mode]}
    if choice.mode == "tool":
        wire["name"] = choice.name
    return wire


def provider_error(event: dict[str, Any]) -> GatewayError:
    """The gateway error for an Anthropic in-stream ``error`` event (or error body)."""
    error = event.get("error")
    if not isinstance(error, dict):
        error = {}
    message = error.get("message") or error.get("type") or "the provider reported an error"
    return GatewayError("provider_error", str(message))
