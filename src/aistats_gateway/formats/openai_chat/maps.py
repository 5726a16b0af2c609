"""Declarative tables shared by the chat codec's modules: finish reasons, tool choice, roles,
reasoning efforts, request parameters, and the usage object both ways."""

from __future__ import annotations

from typing import Any

from ...canonical import FinishReason, ReasoningEffort, Usage

FORMAT = "chat"

# Provider finish_reason -> canonical. `function_call` is the deprecated functions API.
# A value not listed (a server's own, e.g. "eos") counts as a natural "stop".
FINISH_FROM_CHAT: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

# Canonical -> chat. Chat has one "stop" for a natural end and a stop sequence. "error" (the
# provider ended abnormally, e.g. Gemini's MALFORMED_FUNCTION_CALL) also becomes "stop": the
# SDKs only accept these five values and "stop" is the one that claims nothing false about
# length, filtering or tool calls.
FINISH_TO_CHAT: dict[FinishReason, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "stop_sequence": "stop",
    "error": "stop",
}

TOOL_CHOICE_MODES = frozenset({"none", "auto", "required"})
SYSTEM_ROLES = frozenset({"system", "developer"})
IMAGE_DETAILS = frozenset({"auto", "low", "high", "original"})

# Client `reasoning_effort` values the canonical Reasoning cannot name: "xhigh" and "max" keep
# the top level ("high") for effort-based providers and a larger thinking budget for
# budget-based ones (Anthropic, Gemini). "none" is handled apart (no reasoning requested).
CANONICAL_EFFORTS: frozenset[ReasoningEffort] = frozenset({"minimal", "low", "medium", "high"})
ABOVE_HIGH_BUDGET_TOKENS: dict[str, int] = {"xhigh": 32768, "max": 65536}

# Values of extra parameters that ask for nothing beyond the default, so no provider needs to
# honour them (the OpenAI SDKs and some frameworks send them explicitly). Any other value of a
# parameter not read into canonical fields is kept in Request.extras.
DEFAULT_EXTRA_VALUES: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logit_bias": ({},),
    "modalities": (["text"],),
    "service_tier": ("auto", "default"),
}

# Client parameters that change nothing a provider could be asked to do: storage and dashboard
# tags at OpenAI, prompt-cache routing hints, and stream options (include_usage is read by the
# surface into ResponseContext.wants_usage; the gateway always asks providers for usage).
HARMLESS_PARAMS = frozenset(
    {
        "store",
        "metadata",
        "stream_options",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
    }
)

# Parameters the client-side decoder reads into canonical fields.
CANONICAL_PARAMS = frozenset(
    {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_completion_tokens",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "response_format",
        "reasoning_effort",
        "user",
        "safety_identifier",
        "stream",
    }
)

# Extras a chat provider honours when passed through under their own name: the chat
# parameters whose effect is entirely on the provider's side, plus the sampling knobs that
# OpenAI-compatible servers (vLLM, llama.cpp, Ollama) accept.
PASSTHROUGH_EXTRAS = frozenset(
    {
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "service_tier",
        "prediction",
        "web_search_options",
        "verbosity",
        "min_p",
        "repetition_penalty",
    }
)

# Extras whose result the canonical Response has no place for (more choices, log
# probabilities, audio, moderation results): passing them on would bill the client for an
# answer it never receives, so they are refused unless they ask for the default.
RESULT_EXTRAS = frozenset({"n", "logprobs", "top_logprobs", "modalities", "audio", "moderation"})


def usage_from_chat(usage: dict[str, Any] | None) -> Usage | None:
    """A chat ``usage`` object as canonical Usage (None when absent or empty).

    The passthrough reads usage with the same :meth:`Usage.from_openai_chat` (cache writes,
    DeepSeek's ``prompt_cache_hit_tokens``, audio and image details), so both bill alike.
    """
    return Usage.from_openai_chat(usage)


def usage_to_chat(usage: Usage, cost_usd: float) -> dict[str, Any]:
    """Canonical usage as a chat ``usage`` object with the gateway's ``cost`` (USD)."""
    body = usage.to_openai_chat()
    if usage.cache_write_tokens:
        body["prompt_tokens_details"]["cache_write_tokens"] = usage.cache_write_tokens
    body["cost"] = cost_usd
    return body


def unsupported_by_provider(param: str, provider: str) -> str:
    """The message of a provider-side refusal (the shared wording of every codec)."""
    return f"'{param}' is not supported by provider '{provider}' ({FORMAT})"
