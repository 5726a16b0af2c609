"""The gateway's own types shared by surfaces, formats, providers and billing.

Every wire format translates to and from these: a :class:`Request` (what the client asked),
a :class:`Response` (what the model answered) and, for streams, a sequence of
:data:`StreamEvent` values. A surface in format A reaches a provider in format B as
``A.decode_request → B.encode_request`` and ``B.decode_response → A.encode_response`` (or the
stream decoder/encoder pair), so N formats need N codecs, not N² translators.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal


@dataclass(slots=True)
class Usage:
    """Token usage of one generation.

    ``input_tokens`` includes ``cached_input_tokens``, ``cache_write_tokens`` and the audio and
    image input tokens; ``output_tokens`` includes ``reasoning_tokens`` and the audio and image
    output tokens (the OpenAI convention, which billing relies on: each part is billed at its
    own meter and the rest at the plain price, never a token twice).
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # part of input_tokens: prompt-cache writes (Anthropic)
    cache_write_1h_tokens: int = 0  # part of cache_write_tokens: Anthropic's 1-hour cache writes
    input_audio_tokens: int = 0  # part of input_tokens, not cached
    output_audio_tokens: int = 0  # part of output_tokens
    input_image_tokens: int = 0  # part of input_tokens, not cached
    output_image_tokens: int = 0  # part of output_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def at_most(self, limit: int) -> Usage:
        """This usage with no count above ``limit``; itself when none is (the usual case)."""
        counts = [getattr(self, name) for name in _USAGE_FIELDS]
        if max(counts) <= limit:
            return self
        return Usage(*(min(count, limit) for count in counts))

    @classmethod
    def from_openai_chat(cls, usage: dict | None) -> Usage | None:
        """Read a Chat Completions ``usage`` object (``prompt_tokens``/``completion_tokens``).

        Also reads ``prompt_tokens_details.cache_write_tokens`` (OpenAI, OpenRouter), DeepSeek's
        ``prompt_cache_hit_tokens`` when ``cached_tokens`` is missing, and the ``audio_tokens`` /
        ``image_tokens`` of both details objects.
        """
        if not usage:
            return None
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        cached = token_count(prompt_details, "cached_tokens") or token_count(usage, "prompt_cache_hit_tokens")
        return cls(
            input_tokens=token_count(usage, "prompt_tokens"),
            cached_input_tokens=cached,
            output_tokens=token_count(usage, "completion_tokens"),
            reasoning_tokens=token_count(completion_details, "reasoning_tokens"),
            cache_write_tokens=token_count(prompt_details, "cache_write_tokens"),
            input_audio_tokens=token_count(prompt_details, "audio_tokens"),
            output_audio_tokens=token_count(completion_details, "audio_tokens"),
            input_image_tokens=token_count(prompt_details, "image_tokens"),
            output_image_tokens=token_count(completion_details, "image_tokens"),
        )

    @classmethod
    def from_openai_responses(cls, usage: dict | None) -> Usage | None:
        """Read a Responses ``usage`` object (``input_tokens``/``output_tokens``), cache writes,
        audio and image token details included when present."""
        if not usage:
            return None
        input_details = usage.get("input_tokens_details") or {}
        output_details = usage.get("output_tokens_details") or {}
        return cls(
            input_tokens=token_count(usage, "input_tokens"),
            cached_input_tokens=token_count(input_details, "cached_tokens"),
            output_tokens=token_count(usage, "output_tokens"),
            reasoning_tokens=token_count(output_details, "reasoning_tokens"),
            cache_write_tokens=token_count(input_details, "cache_write_tokens"),
            input_audio_tokens=token_count(input_details, "audio_tokens"),
            output_audio_tokens=token_count(output_details, "audio_tokens"),
            input_image_tokens=token_count(input_details, "image_tokens"),
            output_image_tokens=token_count(output_details, "image_tokens"),
        )

    @classmethod
    def from_anthropic(cls, usage: dict | None) -> Usage | None:
        """Read an Anthropic ``usage`` object, whose ``input_tokens`` excludes cache reads/writes.

        ``cache_creation.ephemeral_1h_input_tokens`` (1-hour cache writes, dearer than 5-minute
        ones) is kept apart as ``cache_write_1h_tokens``.
        """
        if not usage:
            return None
        cache_read = token_count(usage, "cache_read_input_tokens")
        cache_write = token_count(usage, "cache_creation_input_tokens")
        creation = usage.get("cache_creation")
        output_details = usage.get("output_tokens_details") or {}
        return cls(
            input_tokens=token_count(usage, "input_tokens") + cache_read + cache_write,
            cached_input_tokens=cache_read,
            output_tokens=token_count(usage, "output_tokens"),
            reasoning_tokens=token_count(output_details, "thinking_tokens"),
            cache_write_tokens=cache_write,
            cache_write_1h_tokens=token_count(creation, "ephemeral_1h_input_tokens")
            if isinstance(creation, dict)
            else 0,
        )

    def to_anthropic(self) -> dict:
        """Render as an Anthropic ``usage`` object (``input_tokens`` uncached only)."""
        return {
            "input_tokens": self.input_tokens - self.cached_input_tokens - self.cache_write_tokens,
            "cache_read_input_tokens": self.cached_input_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
        }

    def to_openai_chat(self) -> dict:
        """Render as a Chat Completions ``usage`` object (audio counts only when there are some)."""
        prompt_details: dict[str, int] = {"cached_tokens": self.cached_input_tokens}
        completion_details: dict[str, int] = {"reasoning_tokens": self.reasoning_tokens}
        if self.input_audio_tokens:
            prompt_details["audio_tokens"] = self.input_audio_tokens
        if self.output_audio_tokens:
            completion_details["audio_tokens"] = self.output_audio_tokens
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": prompt_details,
            "completion_tokens_details": completion_details,
        }

    def to_openai_responses(self) -> dict:
        """Render as a Responses ``usage`` object."""
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_input_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }


_NUMERIC = (int, float, str)
_USAGE_FIELDS = tuple(item.name for item in fields(Usage))


def token_count(details: dict | None, key: str) -> int:
    """A token count from a usage object (any provider's); absent, null or non-numeric counts are 0."""
    value = (details or {}).get(key)
    if type(value) is int:  # the usual case, checked first: this runs ~10 times per request
        return value if value > 0 else 0
    if isinstance(value, bool) or not isinstance(value, _NUMERIC):
        return 0
    try:
        return max(int(value), 0)
    except ValueError:
        return 0


# --- content ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(slots=True)
class ImagePart:
    """An image: either a URL (never fetched by the gateway) or inline base64 ``data``."""

    url: str | None = None
    data: str | None = None  # base64, without a data: prefix
    media_type: str | None = None  # e.g. "image/png"; required with ``data``
    detail: str | None = None  # OpenAI's "low" | "high" | "auto" hint
    type: Literal["image"] = "image"


@dataclass(slots=True)
class ToolCallPart:
    """A function call by the model. ``arguments`` is the JSON text exactly as produced."""

    id: str
    name: str
    arguments: str
    type: Literal["tool_call"] = "tool_call"


@dataclass(slots=True)
class ToolResultPart:
    """The result of a tool call, sent back by the client."""

    call_id: str
    content: list[TextPart | ImagePart]
    is_error: bool = False
    name: str | None = None  # the function's name, when the format carries it (Gemini needs it)
    type: Literal["tool_result"] = "tool_result"


@dataclass(slots=True)
class ThinkingPart:
    """Model reasoning. ``signature`` is Anthropic's opaque proof, needed to send it back."""

    text: str
    signature: str | None = None
    redacted_data: str | None = None  # Anthropic redacted_thinking block
    type: Literal["thinking"] = "thinking"


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ThinkingPart


@dataclass(slots=True)
class Message:
    """One conversation turn. Tool results travel as parts of a ``user`` message (as Anthropic
    does); chat encoders turn them into ``tool`` role messages."""

    role: Literal["user", "assistant"]
    parts: list[Part]


# --- request ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # JSON Schema, kept intact
    strict: bool | None = None


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None  # with mode "tool"


@dataclass(slots=True)
class OutputFormat:
    """Structured output: free text, any JSON object, or JSON matching ``schema``."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


ReasoningEffort = Literal["minimal", "low", "medium", "high"]

# Reasoning effort <-> thinking budget, both ways (docs/compatibility.md shows the table).
EFFORT_BUDGET_TOKENS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}


def effort_for_budget(budget_tokens: int) -> ReasoningEffort:
    """The smallest effort whose budget covers ``budget_tokens``."""
    for effort, budget in EFFORT_BUDGET_TOKENS.items():
        if budget_tokens <= budget:
            return effort  # type: ignore[return-value]
    return "high"


@dataclass(slots=True)
class Reasoning:
    """Reasoning asked for: an ``effort`` level or an explicit thinking ``budget_tokens``."""

    effort: ReasoningEffort | None = None
    budget_tokens: int | None = None
    include_thoughts: bool = True

    def budget(self) -> int:
        if self.budget_tokens is not None:
            return self.budget_tokens
        return EFFORT_BUDGET_TOKENS[self.effort or "medium"]

    def level(self) -> ReasoningEffort:
        if self.effort is not None:
            return self.effort
        return effort_for_budget(self.budget_tokens or EFFORT_BUDGET_TOKENS["medium"])


@dataclass(slots=True)
class Request:
    """A generation request, whatever format it arrived in.

    ``extras`` holds request features that only some providers can honour, keyed by the
    inbound parameter name (``logprobs``, ``n``, ``seed``, ``frequency_penalty``…). A provider
    encoder either maps each one faithfully or refuses the request with a 400 naming the
    parameter and the provider: nothing is silently dropped.
    """

    model: str
    messages: list[Message]
    system: list[TextPart] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    output_format: OutputFormat | None = None
    reasoning: Reasoning | None = None
    stream: bool = False
    user: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


# --- response --------------------------------------------------------------------------------

# Why a generation ended, in the gateway's words; each format maps its own values to these.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "stop_sequence", "error"]


@dataclass(slots=True)
class Response:
    """A whole model answer: output parts in order (thinking, text, tool calls)."""

    parts: list[Part]
    finish_reason: FinishReason
    usage: Usage | None = None
    stop_sequence: str | None = None
    id: str | None = None  # the provider's id (the gateway replaces it with its own)
    model: str | None = None  # the provider's model id


# --- stream events ---------------------------------------------------------------------------


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ThinkingDelta:
    text: str


@dataclass(slots=True)
class ThinkingSignature:
    signature: str


@dataclass(slots=True)
class ToolCallStart:
    """A new tool call; ``index`` numbers the calls of this response from 0."""

    index: int
    id: str
    name: str


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # a fragment of the JSON text


@dataclass(slots=True)
class UsageUpdate:
    """Usage so far (cumulative; the last one wins)."""

    usage: Usage


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    stop_sequence: str | None = None


StreamEvent = (
    TextDelta | ThinkingDelta | ThinkingSignature | ToolCallStart | ToolCallDelta | UsageUpdate | Finish
)
