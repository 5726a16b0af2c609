"""Call one surface with its official SDK for a scenario, stream or not, and normalise the answer."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai

from tests.conformance.scenarios import (
    DATA_URL,
    PNG_B64,
    PROMPT,
    STRUCTURED_SCHEMA,
    TOOL_NAME,
    TOOL_SCHEMA,
    Outcome,
)

CHAT_FINISH = {"stop": "stop", "tool_calls": "tool_calls", "length": "length"}
MESSAGES_FINISH = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


# --- chat ------------------------------------------------------------------------------------


def chat_request(scenario: str) -> dict[str, Any]:
    content: Any = PROMPT
    extra: dict[str, Any] = {}
    if scenario == "image":
        content = [{"type": "text", "text": PROMPT}, {"type": "image_url", "image_url": {"url": DATA_URL}}]
    elif scenario == "tools":
        extra["tools"] = [
            {
                "type": "function",
                "function": {"name": TOOL_NAME, "description": "Weather", "parameters": TOOL_SCHEMA},
            }
        ]
        extra["tool_choice"] = "auto"
    elif scenario == "structured":
        extra["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": STRUCTURED_SCHEMA, "strict": True},
        }
    elif scenario == "reasoning":
        extra["reasoning_effort"] = "low"
    return {
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": content}]
    } | extra


def call_chat(client: openai.OpenAI, model: str, scenario: str, stream: bool) -> Outcome:
    request = chat_request(scenario)
    if not stream:
        completion = client.chat.completions.create(model=model, max_tokens=4000, **request)
        message = completion.choices[0].message
        usage = completion.usage
        assert usage is not None and usage.model_extra is not None
        details = usage.completion_tokens_details
        return Outcome(
            text=message.content or "",
            tool_calls=[
                (c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []
            ],  # type: ignore[union-attr]
            finish=CHAT_FINISH[completion.choices[0].finish_reason],
            cost=usage.model_extra["cost"],
            reasoning_tokens=details.reasoning_tokens if details else None,
            thinking=(message.model_extra or {}).get("reasoning_content") or "",
            output_tokens=usage.completion_tokens,
        )
    outcome = Outcome()
    calls: dict[int, list[str]] = {}
    for chunk in client.chat.completions.create(
        model=model, max_tokens=4000, stream=True, stream_options={"include_usage": True}, **request
    ):
        if chunk.usage is not None:
            assert chunk.usage.model_extra is not None
            outcome.cost = chunk.usage.model_extra["cost"]
            details = chunk.usage.completion_tokens_details
            outcome.reasoning_tokens = details.reasoning_tokens if details else None
            outcome.output_tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            delta = choice.delta
            outcome.text += delta.content or ""
            outcome.thinking += (delta.model_extra or {}).get("reasoning_content") or ""
            for call in delta.tool_calls or []:
                entry = calls.setdefault(call.index, ["", ""])
                if call.function and call.function.name:
                    entry[0] = call.function.name
                if call.function and call.function.arguments:
                    entry[1] += call.function.arguments
            if choice.finish_reason:
                outcome.finish = CHAT_FINISH[choice.finish_reason]
    outcome.tool_calls = [(name, json.loads(args)) for name, args in (calls[i] for i in sorted(calls))]
    return outcome


# --- responses -------------------------------------------------------------------------------


def responses_request(scenario: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "input_text", "text": PROMPT}]
    extra: dict[str, Any] = {}
    if scenario == "image":
        content.append({"type": "input_image", "image_url": DATA_URL, "detail": "auto"})
    elif scenario == "tools":
        extra["tools"] = [
            {
                "type": "function",
                "name": TOOL_NAME,
                "description": "Weather",
                "parameters": TOOL_SCHEMA,
                "strict": False,
            }
        ]
    elif scenario == "structured":
        extra["text"] = {
            "format": {"type": "json_schema", "name": "answer", "schema": STRUCTURED_SCHEMA, "strict": True}
        }
    elif scenario == "reasoning":
        extra["reasoning"] = {"effort": "low", "summary": "auto"}
    return {"instructions": "You are terse.", "input": [{"role": "user", "content": content}]} | extra


def _responses_outcome(response: Any) -> Outcome:
    outcome = Outcome(text=response.output_text)
    for item in response.output:
        if item.type == "function_call":
            outcome.tool_calls.append((item.name, json.loads(item.arguments)))
        elif item.type == "reasoning":
            outcome.thinking += "".join(part.text for part in item.summary or [])
    outcome.finish = "tool_calls" if outcome.tool_calls else "stop"
    if response.status == "incomplete":
        outcome.finish = "length"
    usage = response.usage
    assert usage is not None and usage.model_extra is not None
    outcome.cost = usage.model_extra["cost"]
    outcome.reasoning_tokens = usage.output_tokens_details.reasoning_tokens
    outcome.output_tokens = usage.output_tokens
    return outcome


def call_responses(client: openai.OpenAI, model: str, scenario: str, stream: bool) -> Outcome:
    request = responses_request(scenario)
    if not stream:
        return _responses_outcome(client.responses.create(model=model, max_output_tokens=4000, **request))
    final = None
    deltas = ""
    for event in client.responses.create(model=model, max_output_tokens=4000, stream=True, **request):
        if event.type == "response.output_text.delta":
            deltas += event.delta
        if event.type in ("response.completed", "response.incomplete"):
            final = event.response
    assert final is not None, "the stream ended with response.completed"
    outcome = _responses_outcome(final)
    assert deltas == outcome.text, "streamed deltas add up to the final text"
    return outcome


# --- messages --------------------------------------------------------------------------------


def messages_request(scenario: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": PROMPT}]
    extra: dict[str, Any] = {}
    if scenario == "image":
        content.append(
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
        )
    elif scenario == "tools":
        extra["tools"] = [{"name": TOOL_NAME, "description": "Weather", "input_schema": TOOL_SCHEMA}]
        extra["tool_choice"] = {"type": "auto"}
    elif scenario == "structured":
        extra["extra_body"] = {
            "output_config": {"format": {"type": "json_schema", "schema": STRUCTURED_SCHEMA}}
        }
    elif scenario == "reasoning":
        extra["thinking"] = {"type": "enabled", "budget_tokens": 2048}
    return {"system": "You are terse.", "messages": [{"role": "user", "content": content}]} | extra


def _message_outcome(message: Any, cost: float | None) -> Outcome:
    outcome = Outcome(
        finish=MESSAGES_FINISH[message.stop_reason], cost=cost, output_tokens=message.usage.output_tokens
    )
    for block in message.content:
        if block.type == "text":
            outcome.text += block.text
        elif block.type == "tool_use":
            outcome.tool_calls.append((block.name, block.input))
        elif block.type == "thinking":
            outcome.thinking += block.thinking
    return outcome


def call_messages(client: anthropic.Anthropic, model: str, scenario: str, stream: bool) -> Outcome:
    request = messages_request(scenario)
    if not stream:
        message = client.messages.create(model=model, max_tokens=4000, **request)
        assert message.usage.model_extra is not None
        return _message_outcome(message, message.usage.model_extra["cost"])
    cost = None
    with client.messages.stream(model=model, max_tokens=4000, **request) as events:
        for event in events:
            if event.type == "message_delta":
                assert event.usage.model_extra is not None
                cost = event.usage.model_extra["cost"]
        message = events.get_final_message()
    return _message_outcome(message, cost)
