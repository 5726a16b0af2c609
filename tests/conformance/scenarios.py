"""The conformance matrix: what each (surface, provider format, scenario, stream) case sends,
how each fake provider is scripted, and what the client must get back.

Surfaces are called with the official SDKs (``openai`` for chat and responses, ``anthropic``
for messages); provider formats are served by the fake servers of ``tests/fakes``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import anthropic_server, gemini_server, openai_server

SURFACES = ("chat", "responses", "messages")
PROVIDER_FORMATS = ("chat", "responses", "messages", "gemini")
SCENARIOS = ("text", "tools", "image", "structured", "reasoning")

MODEL_FOR_FORMAT = {fmt: f"matrix/{fmt}" for fmt in PROVIDER_FORMATS}
PRICE = {"input": "1", "output": "4", "cached_input": "0.5"}

REPLY = "hello matrix"
PROMPT = f"Reply with: {REPLY}"
TOOL_NAME = "get_weather"
TOOL_ARGS = {"city": "Paris", "days": 3, "units": "celsius", "details": {"hourly": True, "alerts": ["wind"]}}
TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "details": {"type": "object", "properties": {"hourly": {"type": "boolean"}}},
    },
    "required": ["city"],
}
STRUCTURED = {"answer": REPLY, "confidence": 1}
STRUCTURED_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "integer"}},
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}
THINKING = "First I think, then I answer."
# A 1x1 transparent PNG.
PNG_B64 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
DATA_URL = f"data:image/png;base64,{PNG_B64}"


@dataclass
class Outcome:
    """What the client saw, normalised across surfaces."""

    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    finish: str = ""  # canonical: stop | tool_calls | length
    cost: float | None = None
    reasoning_tokens: int | None = None  # None when the surface does not report them
    thinking: str = ""
    output_tokens: int = 0


def script(surface: str, provider_format: str, scenario: str) -> Any:
    """The behaviour to queue on the provider's fake for this scenario."""
    args_json = json.dumps(TOOL_ARGS)
    if surface == provider_format == "messages" and scenario == "structured":
        # Passed through as Anthropic's own output_config, answered with JSON text.
        return anthropic_server.Behaviour(text=json.dumps(STRUCTURED))
    if provider_format in ("chat", "responses"):
        return {
            "text": openai_server.Behaviour(),
            "tools": openai_server.Behaviour(tool_calls=[{"name": TOOL_NAME, "arguments": args_json}]),
            "image": openai_server.Behaviour(),
            "structured": openai_server.Behaviour(text=json.dumps(STRUCTURED)),
            "reasoning": openai_server.Behaviour(reasoning_tokens=7),
        }[scenario]
    if provider_format == "messages":
        return {
            "text": anthropic_server.Behaviour(),
            "tools": anthropic_server.Behaviour(tool_calls=[{"name": TOOL_NAME, "arguments": args_json}]),
            "image": anthropic_server.Behaviour(),
            "structured": anthropic_server.Behaviour(
                tool_calls=[{"name": "aistats_structured_output", "input": STRUCTURED}]
            ),
            "reasoning": anthropic_server.Behaviour(thinking=THINKING),
        }[scenario]
    return {
        "text": gemini_server.Behaviour(),
        "tools": gemini_server.Behaviour(tool_calls=[{"name": TOOL_NAME, "arguments": args_json}]),
        "image": gemini_server.Behaviour(),
        "structured": gemini_server.Behaviour(text=json.dumps(STRUCTURED)),
        "reasoning": gemini_server.Behaviour(thinking=THINKING),
    }[scenario]


def upstream_saw(surface: str, provider_format: str, scenario: str, body: dict[str, Any]) -> None:
    """Assert the provider received the scenario's feature in its own format."""
    if surface == provider_format == "messages" and scenario == "structured":
        assert body["output_config"]["format"]["schema"] == STRUCTURED_SCHEMA
        return
    if scenario == "tools":
        if provider_format == "chat":
            tool = body["tools"][0]["function"]
            assert tool["name"] == TOOL_NAME and tool["parameters"] == TOOL_SCHEMA
        elif provider_format == "responses":
            assert body["tools"][0]["name"] == TOOL_NAME and body["tools"][0]["parameters"] == TOOL_SCHEMA
        elif provider_format == "messages":
            assert body["tools"][0] == {"name": TOOL_NAME, "input_schema": TOOL_SCHEMA} | (
                {"description": body["tools"][0]["description"]} if "description" in body["tools"][0] else {}
            )
        else:
            declaration = body["tools"][0]["functionDeclarations"][0]
            schema = declaration.get("parametersJsonSchema", declaration.get("parameters"))
            assert declaration["name"] == TOOL_NAME and schema == TOOL_SCHEMA
    elif scenario == "image":
        text = json.dumps(body)
        assert PNG_B64 in text, "the image bytes reached the provider"
        if provider_format == "messages":
            assert '"type": "base64"' in text and '"media_type": "image/png"' in text
        if provider_format == "gemini":
            assert "inlineData" in text or "inline_data" in text
    elif scenario == "structured":
        text = json.dumps(body)
        if provider_format == "chat":
            assert body["response_format"]["type"] == "json_schema"
            assert body["response_format"]["json_schema"]["schema"] == STRUCTURED_SCHEMA
        elif provider_format == "responses":
            assert body["text"]["format"]["type"] == "json_schema"
            assert body["text"]["format"]["schema"] == STRUCTURED_SCHEMA
        elif provider_format == "messages":
            assert body["tool_choice"]["name"] == "aistats_structured_output"
            assert body["tools"][-1]["input_schema"] == STRUCTURED_SCHEMA
        else:
            config = body["generationConfig"]
            assert config["responseMimeType"] == "application/json"
            assert config.get("responseJsonSchema", config.get("responseSchema")) == STRUCTURED_SCHEMA, text
    elif scenario == "reasoning":
        if provider_format == "chat":
            assert body["reasoning_effort"] == "low"
        elif provider_format == "responses":
            assert body["reasoning"]["effort"] == "low"
        elif provider_format == "messages":
            assert body["thinking"]["type"] == "enabled" and body["thinking"]["budget_tokens"] == 2048
        else:
            assert body["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 2048


# Chat parameters a provider format cannot honour: refused with a 400 naming them (test_gaps.py).
GAP_CASES = [
    ("messages", {"logprobs": True}, "logprobs"),
    ("messages", {"seed": 7}, "seed"),
    ("messages", {"frequency_penalty": 0.5}, "frequency_penalty"),
    ("gemini", {"n": 2}, "n"),
    ("gemini", {"logit_bias": {"50256": -100}}, "logit_bias"),
    ("responses", {"stop": ["END"]}, "stop"),
    ("responses", {"seed": 7}, "seed"),
]
