"""Check one answer before timing a target: a fast wrong answer is not a result.

A right answer has status 200, the canned text (whole, or as concatenated stream deltas), the
canned usage, a proper end of stream, and, when ``billed``, the gateway's ``usage.cost`` equal to
the price card applied to that usage.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import orjson

from scenarios import Expected, Scenario


class Invalid(Exception):
    """The answer is wrong; the message says how."""


def parse_sse(body: str) -> list[tuple[str | None, str]]:
    """(event, data) of each frame of an SSE body (multi-line data joined by newlines)."""
    frames = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            frames.append((event, "\n".join(data)))
    return frames


def _check_usage(usage: Any, expected: Expected, billed: bool, input_key: str, output_key: str) -> None:
    if not isinstance(usage, dict):
        raise Invalid(f"no usage object (got {usage!r})")
    got = (usage.get(input_key), usage.get(output_key))
    if got != (expected.input_tokens, expected.output_tokens):
        raise Invalid(
            f"usage {input_key}/{output_key} is {got}, expected "
            f"{(expected.input_tokens, expected.output_tokens)}"
        )
    if billed:
        cost = usage.get("cost")
        if not isinstance(cost, int | float) or not math.isclose(cost, expected.cost_usd, rel_tol=1e-9):
            raise Invalid(f"usage.cost is {cost!r}, expected {expected.cost_usd!r}")


def _check_text(text: str, expected: Expected) -> None:
    if text != expected.text:
        raise Invalid(f"text is {text[:120]!r}, expected {expected.text[:120]!r}")


def _chat(body: dict[str, Any], expected: Expected, billed: bool) -> None:
    _check_text(body["choices"][0]["message"]["content"], expected)
    _check_usage(body.get("usage"), expected, billed, "prompt_tokens", "completion_tokens")


def _responses(body: dict[str, Any], expected: Expected, billed: bool) -> None:
    if body.get("status") != "completed":
        raise Invalid(f"response status is {body.get('status')!r}")
    texts = [
        part["text"]
        for item in body.get("output") or []
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    ]
    _check_text("".join(texts), expected)
    _check_usage(body.get("usage"), expected, billed, "input_tokens", "output_tokens")


def _chat_stream(body: str, expected: Expected, billed: bool) -> None:
    frames = [data for _, data in parse_sse(body)]
    if not frames or frames[-1] != "[DONE]":
        raise Invalid("the chat stream does not end with data: [DONE]")
    chunks = [orjson.loads(data) for data in frames[:-1]]
    text = "".join(
        choice.get("delta", {}).get("content") or ""
        for chunk in chunks
        for choice in chunk.get("choices") or []
    )
    _check_text(text, expected)
    if not any(
        choice.get("finish_reason") == "stop" for chunk in chunks for choice in chunk.get("choices") or []
    ):
        raise Invalid("no chunk has finish_reason 'stop'")
    usages = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    if len(usages) != 1:
        raise Invalid(f"expected one usage chunk, got {len(usages)}")
    _check_usage(usages[0], expected, billed, "prompt_tokens", "completion_tokens")


def _responses_stream(body: str, expected: Expected, billed: bool) -> None:
    events = [(event, orjson.loads(data)) for event, data in parse_sse(body) if data != "[DONE]"]
    if not events:
        raise Invalid("empty Responses stream")
    for event, payload in events:
        if event is not None and event != payload.get("type"):
            raise Invalid(f"event name {event!r} differs from its type {payload.get('type')!r}")
    kinds = [payload.get("type") for _, payload in events]
    if kinds[0] != "response.created" or kinds[-1] != "response.completed":
        raise Invalid(f"the stream runs from {kinds[0]!r} to {kinds[-1]!r}, not created → completed")
    deltas = "".join(p["delta"] for _, p in events if p.get("type") == "response.output_text.delta")
    _check_text(deltas, expected)
    final = events[-1][1]["response"]
    _responses(final, expected, billed)


def check_answer(status: int, text: str, scenario: Scenario, expected: Expected, *, billed: bool) -> None:
    """Raise :class:`Invalid` unless (``status``, ``text``) is a right answer to ``scenario``."""
    if status != 200:
        raise Invalid(f"HTTP {status}: {text[:300]}")
    try:
        if scenario.stream:
            if scenario.surface == "chat":
                _chat_stream(text, expected, billed)
            else:
                _responses_stream(text, expected, billed)
        else:
            body = orjson.loads(text)
            if scenario.surface == "chat":
                _chat(body, expected, billed)
            else:
                _responses(body, expected, billed)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise Invalid(f"malformed answer ({exc!r}): {text[:300]}") from exc


def validate(
    client: httpx.Client, url: str, scenario: Scenario, expected: Expected, *, key: str | None, billed: bool
) -> None:
    """Send the scenario's request once and check the answer (raises :class:`Invalid`)."""
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    try:
        response = client.post(url, content=scenario.body(), headers=headers)
    except httpx.HTTPError as exc:
        raise Invalid(f"request failed: {exc!r}") from exc
    check_answer(response.status_code, response.text, scenario, expected, billed=billed)
