"""A fake Anthropic server on loopback that speaks the real Messages API wire format.

Tests point providers (or the official ``anthropic`` SDK) at it and script what it answers::

    fake = FakeAnthropic(api_key="sk-ant-test")
    fake.enqueue(Behaviour(status=529))
    with FakeAnthropicServer(fake=fake) as server:
        ...  # anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-test")

Endpoints (any path prefix is accepted, dispatch is on the suffix): ``POST …/v1/messages``
(JSON or, with ``"stream": true``, named SSE events), ``POST …/v1/messages/count_tokens`` and
``GET …/v1/models``. Like the real API it wants an ``anthropic-version`` header (else 400), the
key in ``x-api-key`` (or ``Authorization: Bearer <key>``, which the ``anthropic`` SDK 2.x sends)
when :attr:`FakeAnthropic.api_key` is set (else 401 ``authentication_error``)
and ``model``, ``max_tokens`` and ``messages`` in the body (else 400 ``invalid_request_error``);
these checks run before a behaviour is consumed. Every answer carries a ``request-id`` header.

Deterministic defaults when a :class:`Behaviour` leaves them unset:

- reply text: if the last user message that has text contains ``Reply with: X`` the reply is
  exactly ``X`` (the rest of that line, stripped); otherwise ``echo: <that text>``. User turns
  holding only ``tool_result`` blocks are skipped, so a tool loop keeps answering the original
  prompt. With ``tool_calls`` and no ``text`` there is no text block.
- content order: ``thinking`` block (when :attr:`Behaviour.thinking` is set — whether or not the
  request enabled ``thinking`` — with a random base64 ``signature``), ``text`` block, then one
  ``tool_use`` block per tool call (id ``toolu_01…``; ``input`` is the dict given, or the JSON
  ``arguments`` string parsed).
- text deltas: the text split before each run of whitespace, and a single piece of 2+ characters
  cut in two halves (``"Hello big world"`` -> ``"Hello"``, ``" big"``, ``" world"``; ``"ok"`` ->
  ``"o"``, ``"k"``). Thinking text is split the same way into ``thinking_delta`` events, followed
  by one ``signature_delta``.
- tool input fragments: an ``input_json_delta`` with ``partial_json: ""`` (as the real API sends
  first), then the arguments JSON in 3 near-equal slices. The JSON is the ``arguments`` string as
  given, or ``json.dumps(input)``.
- ``stop_reason``: ``tool_use`` with tool calls, else ``end_turn``, unless ``finish_reason`` says
  otherwise (``max_tokens``, ``stop_sequence`` — then ``stop_sequence`` is the request's first
  stop sequence —, ``refusal``, ``pause_turn``…).
- input tokens: the prompt total P = (characters of all input text) // 4 + (number of messages,
  plus one for a non-empty ``system``). Input text is ``system`` text, text blocks, tool_use
  ``input`` (as ``json.dumps``) and tool_result content. ``usage.input_tokens`` = P minus
  ``cached_tokens`` (``cache_read_input_tokens``) minus ``cache_creation_tokens``, never below 0.
- thinking tokens = the number of thinking deltas; reported in
  ``usage.output_tokens_details.thinking_tokens`` when non-zero.
- ``output_tokens`` = text deltas + non-empty argument fragments + thinking tokens.

Streams send ``message_start`` (usage with the input counts and ``output_tokens`` 1),
``content_block_start`` of the first block, ``ping``, then per block its deltas and
``content_block_stop``, then ``message_delta`` (stop reason and cumulative usage) and
``message_stop``. ``drop_after_chunks`` aborts the connection after that many events;
``stream_error`` instead sends an ``event: error`` after ``drop_after_chunks`` events (default 1)
and ends the stream there. ``omit_usage`` leaves ``usage`` out of the body and the events (not
valid Anthropic output: it is for testing how a gateway copes with a provider without usage).

Run in the foreground with ``python -m tests.fakes.anthropic_server --port 9991 [--api-key K]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.common import (
    Prompt,
    ScriptedFake,
    ThreadedServer,
    json_response,
    paced,
    part_texts,
    read_json,
    recorded,
    reply_text_for,
    serve_forever,
    split_arguments,
    sse_frame,
    streaming_response,
    text_deltas,
)

DEFAULT_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
_ID_ALPHABET = string.ascii_letters + string.digits

# ---------------------------------------------------------------------------------------------
# Script and state
# ---------------------------------------------------------------------------------------------


@dataclass
class Behaviour:
    """What the fake answers to one Messages request (see the module docstring for the defaults)."""

    status: int = 200
    # Whole JSON body for a non-200 answer; None gives an Anthropic-shaped error for the status.
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    # Each {"name": str, "input": dict} or {"name": str, "arguments": "<json string>"}, optionally "id".
    tool_calls: list[dict[str, Any]] | None = None
    thinking: str | None = None
    # Native stop_reason override: "max_tokens", "stop_sequence", "refusal", "pause_turn"…
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    thinking_tokens: int | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    drop_after_chunks: int | None = None
    # HTTP-like status of an ``event: error`` sent mid-stream (e.g. 529 -> overloaded_error).
    stream_error: int | None = None
    omit_usage: bool = False


class FakeAnthropic(ScriptedFake[Behaviour]):
    """State of the fake: the expected key, the behaviour queue, the recorded requests, the models."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default: Behaviour | None = None,
        models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
    ) -> None:
        super().__init__(api_key=api_key, default=default if default is not None else Behaviour())
        self.models = list(models)


# ---------------------------------------------------------------------------------------------
# The reply a behaviour produces for a given request
# ---------------------------------------------------------------------------------------------


def _random_id(prefix: str) -> str:
    return prefix + "01" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


@dataclass
class _ToolUse:
    id: str
    name: str
    input: Any
    arguments: str

    @property
    def fragments(self) -> list[str]:
        return split_arguments(self.arguments)


@dataclass
class _Reply:
    thinking: str | None
    signature: str
    text: str | None
    tool_uses: list[_ToolUse]
    stop_reason: str
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int
    cache_read: int
    cache_creation: int
    thinking_tokens: int


def _block_texts(content: Any) -> list[str]:
    """Texts of a message content that count as input: text, tool_use input, tool_result content."""
    if not isinstance(content, list):
        return part_texts(content)
    texts: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            texts.append(json.dumps(block.get("input", {})))
        elif kind == "tool_result":
            texts.extend(_block_texts(block.get("content")))
    return texts


def messages_prompt(body: dict[str, Any]) -> Prompt:
    """The prompt facts of a Messages request (see the module docstring for the rule)."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    system = part_texts(body.get("system"))
    characters = sum(len(t) for t in system)
    count = len(messages) + (1 if any(system) else 0)
    last_user = ""
    for message in messages:
        characters += sum(len(t) for t in _block_texts(message.get("content")))
        texts = part_texts(message.get("content"))
        if message.get("role") == "user" and texts:
            last_user = "\n".join(texts)
    return Prompt(last_user, characters, count)


def _tool_use(call: dict[str, Any]) -> _ToolUse:
    if "input" in call:
        value = call["input"]
        arguments = json.dumps(value)
    else:
        arguments = str(call.get("arguments", "{}"))
        value = json.loads(arguments)
    return _ToolUse(
        id=str(call.get("id") or _random_id("toolu_")),
        name=str(call["name"]),
        input=value,
        arguments=arguments,
    )


def _plan_reply(behaviour: Behaviour, body: dict[str, Any]) -> _Reply:
    prompt = messages_prompt(body)
    tool_uses = [_tool_use(call) for call in behaviour.tool_calls or []]
    text = behaviour.text
    if text is None and not tool_uses:
        text = reply_text_for(prompt.last_user_text)
    stop_reason = behaviour.finish_reason or ("tool_use" if tool_uses else "end_turn")
    stop_sequence = None
    if stop_reason == "stop_sequence":
        sequences = body.get("stop_sequences") or []
        stop_sequence = str(sequences[0]) if sequences else None
    thinking_tokens = behaviour.thinking_tokens
    if thinking_tokens is None:
        thinking_tokens = len(text_deltas(behaviour.thinking)) if behaviour.thinking else 0
    cached, creation = behaviour.cached_tokens, behaviour.cache_creation_tokens
    input_tokens = behaviour.input_tokens
    if input_tokens is None:
        input_tokens = max(prompt.tokens - cached - creation, 0)
    output_tokens = behaviour.output_tokens
    if output_tokens is None:
        fragments = sum(1 for use in tool_uses for fragment in use.fragments if fragment)
        output_tokens = len(text_deltas(text or "")) + fragments + thinking_tokens
    return _Reply(
        thinking=behaviour.thinking,
        signature=base64.b64encode(secrets.token_bytes(48)).decode(),
        text=text,
        tool_uses=tool_uses,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read=cached,
        cache_creation=creation,
        thinking_tokens=thinking_tokens,
    )


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for(status: int) -> str:
    """The Anthropic ``error.type`` for an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(status: int, message: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """An Anthropic-shaped error body for an HTTP status."""
    text = message or f"The fake Anthropic server returned HTTP {status} as scripted."
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type_for(status), "message": text}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def _request_id() -> str:
    return _random_id("req_")


# ---------------------------------------------------------------------------------------------
# Message body and stream events
# ---------------------------------------------------------------------------------------------


def _usage(reply: _Reply, *, final: bool = True) -> dict[str, Any]:
    """The ``usage`` object: final counts, or the opening one of ``message_start`` (output 1)."""
    usage: dict[str, Any] = {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": reply.cache_creation,
        "cache_read_input_tokens": reply.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": reply.cache_creation,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": reply.output_tokens if final else min(1, reply.output_tokens),
        "service_tier": "standard",
    }
    if final and reply.thinking_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": reply.thinking_tokens}
    return usage


def _content(reply: _Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.thinking is not None:
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": reply.signature})
    if reply.text is not None:
        blocks.append({"type": "text", "text": reply.text})
    for use in reply.tool_uses:
        blocks.append({"type": "tool_use", "id": use.id, "name": use.name, "input": use.input})
    return blocks


def message(
    body: dict[str, Any], reply: _Reply, message_id: str, *, with_usage: bool = True
) -> dict[str, Any]:
    """A full non-streaming ``message`` object."""
    result: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": _content(reply),
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
    }
    if with_usage:
        result["usage"] = _usage(reply)
    return result


def _blocks(reply: _Reply) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each content block as streamed: its ``content_block_start`` form and its deltas."""
    if reply.thinking is not None:
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in text_deltas(reply.thinking)]
        deltas.append({"type": "signature_delta", "signature": reply.signature})
        yield {"type": "thinking", "thinking": "", "signature": ""}, deltas
    if reply.text is not None:
        yield (
            {"type": "text", "text": ""},
            [{"type": "text_delta", "text": piece} for piece in text_deltas(reply.text)],
        )
    for use in reply.tool_uses:
        yield (
            {"type": "tool_use", "id": use.id, "name": use.name, "input": {}},
            [{"type": "input_json_delta", "partial_json": part} for part in ["", *use.fragments]],
        )


# Usage fields only the full usage object has; message_delta leaves them out.
_OPENING_ONLY = ("cache_creation", "service_tier")


def stream_events(
    body: dict[str, Any], reply: _Reply, message_id: str, *, with_usage: bool = True
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The named events of a streamed message, in the real API's order."""
    opening = message(body, reply, message_id, with_usage=False)
    opening.update(content=[], stop_reason=None, stop_sequence=None)
    if with_usage:
        opening["usage"] = _usage(reply, final=False)
    yield "message_start", {"type": "message_start", "message": opening}
    pinged = False
    for index, (start, deltas) in enumerate(_blocks(reply)):
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        if not pinged:
            yield "ping", {"type": "ping"}
            pinged = True
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    if not pinged:
        yield "ping", {"type": "ping"}
    closing: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
    }
    if with_usage:
        # message_delta usage is cumulative: it repeats the input counts next to the final output.
        closing["usage"] = {k: v for k, v in _usage(reply).items() if k not in _OPENING_ONLY}
    yield "message_delta", closing
    yield "message_stop", {"type": "message_stop"}


def _stream_frames(body: dict[str, Any], reply: _Reply, behaviour: Behaviour) -> Iterator[bytes]:
    events = stream_events(body, reply, _random_id("msg_"), with_usage=not behaviour.omit_usage)
    error_at = 1 if behaviour.drop_after_chunks is None else behaviour.drop_after_chunks
    for sent, (kind, data) in enumerate(events):
        if behaviour.stream_error is not None and sent >= error_at:
            error = anthropic_error(behaviour.stream_error)
            yield sse_frame({"type": "error", "error": error["error"]}, "error")
            return
        yield sse_frame(data, kind)


# ---------------------------------------------------------------------------------------------
# The ASGI app
# ---------------------------------------------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    request_id = _request_id()
    body = anthropic_error(status, message, request_id)
    return json_response(body, status, {"request-id": request_id, **(headers or {})})


def _presented_key(request: Request) -> str | None:
    """The key from ``x-api-key``, else from ``Authorization: Bearer`` (what SDK 2.x sends)."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _check_headers(fake: FakeAnthropic, request: Request) -> Response | None:
    """The error the real API gives for a missing version header or a bad key; None when fine."""
    if "anthropic-version" not in request.headers:
        return _error(400, "anthropic-version: header is required")
    if fake.api_key is not None:
        key = _presented_key(request)
        if not key:
            return _error(401, "x-api-key header is required")
        if key != fake.api_key:
            return _error(401, "invalid x-api-key")
    return None


def _check_body(body: Any, *, generation: bool) -> Response | None:
    """The error the real API gives for a body without its required fields; None when fine."""
    if not isinstance(body, dict):
        return _error(400, "There was an issue with your request body: it is not a JSON object.")
    required = ("model", "max_tokens", "messages") if generation else ("model", "messages")
    for name in required:
        if name not in body:
            return _error(400, f"{name}: Field required")
    if not isinstance(body["messages"], list) or not body["messages"]:
        return _error(400, "messages: at least one message is required")
    return None


async def _create_message(fake: FakeAnthropic, body: dict[str, Any]) -> Response:
    behaviour = fake.next_behaviour()
    if behaviour.delay:
        await asyncio.sleep(behaviour.delay)
    request_id = _request_id()
    headers = {"request-id": request_id, **behaviour.headers}
    if behaviour.status != 200:
        error = behaviour.error
        if error is None:
            error = anthropic_error(behaviour.status, request_id=request_id)
        return json_response(error, behaviour.status, headers)
    reply = _plan_reply(behaviour, body)
    if body.get("stream") is not True:
        result = message(body, reply, _random_id("msg_"), with_usage=not behaviour.omit_usage)
        return json_response(result, headers=headers)
    # With stream_error the frames end themselves; drop_after_chunks then only places the error.
    drop = None if behaviour.stream_error is not None else behaviour.drop_after_chunks
    frames = paced(
        _stream_frames(body, reply, behaviour), chunk_delay=behaviour.chunk_delay, drop_after_chunks=drop
    )
    return streaming_response(frames, headers)


def _models(fake: FakeAnthropic) -> Response:
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in fake.models
    ]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return json_response({"data": data, "has_more": False, "first_id": first, "last_id": last})


def build_app(fake: FakeAnthropic) -> Starlette:
    """The Starlette app serving ``fake`` on any path prefix."""

    async def dispatch(request: Request) -> Response:
        body = await read_json(request)
        fake.record(recorded(request, body))
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/v1/models"):
            return _check_headers(fake, request) or _models(fake)
        if request.method == "POST" and path.endswith(("/v1/messages", "/v1/messages/count_tokens")):
            generation = path.endswith("/v1/messages")
            problem = _check_headers(fake, request) or _check_body(body, generation=generation)
            if problem is not None:
                return problem
            if generation:
                return await _create_message(fake, body)
            return json_response({"input_tokens": messages_prompt(body).tokens})
        return _error(404, f"Not found: {request.method} {request.url.path}")

    return Starlette(routes=[Route("/{path:path}", dispatch, methods=["GET", "POST"])])


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------


class FakeAnthropicServer(ThreadedServer):
    """Serves a :class:`FakeAnthropic` with uvicorn in a daemon thread on an ephemeral loopback port."""

    label = "fake-anthropic"

    def __init__(self, fake: FakeAnthropic | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.fake = fake if fake is not None else FakeAnthropic()

    def build(self) -> Starlette:
        """The app serving :attr:`fake`."""
        return build_app(self.fake)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: what ``anthropic.Anthropic`` takes as ``base_url`` (no ``/v1``)."""
        return self.root_url


def main(argv: list[str] | None = None) -> None:
    """Foreground entry point: ``python -m tests.fakes.anthropic_server --port 9991``."""
    parser = argparse.ArgumentParser(
        description="Fake Anthropic Messages API server for local trials and tests."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9991)
    parser.add_argument("--api-key", default=None, help="require 'x-api-key: <key>'")
    args = parser.parse_args(argv)
    fake = FakeAnthropic(api_key=args.api_key)
    print(f"fake Anthropic server: base_url http://{args.host}:{args.port}", flush=True)
    serve_forever(build_app(fake), args.host, args.port)


if __name__ == "__main__":
    main()
