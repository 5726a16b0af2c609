"""A fake OpenAI server on loopback that speaks the real Chat Completions and Responses wire formats.

Tests point providers at it and script what it answers::

    fake = FakeOpenAI(api_key="sk-test")
    fake.enqueue(Behaviour(status=429, headers={"retry-after": "1"}))
    with FakeOpenAIServer(fake=fake) as server:
        ...  # talk to server.base_url ("http://127.0.0.1:<port>/v1")

Any path prefix is accepted (``/v1``, ``/v1beta/openai``, ``/openai/v1``…): requests are dispatched
on the path suffix ``/chat/completions``, ``/responses``, ``/embeddings``
(:mod:`tests.fakes.openai_embeddings`), ``/images/generations`` (:mod:`tests.fakes.openai_images`)
or ``/models``.

Deterministic defaults when a :class:`Behaviour` leaves them unset:

- reply text: if the last user message contains ``Reply with: X`` the reply is exactly ``X`` (the
  rest of that line, stripped); otherwise ``echo: <last user text>``. With ``tool_calls`` and no
  ``text`` there is no text at all (``content: null`` / no message item).
- text pieces (stream deltas): the text split before each run of whitespace, so
  ``"Hello big world"`` streams as ``"Hello"``, ``" big"``, ``" world"``.
- argument fragments: a tool call's ``arguments`` split into 3 near-equal slices (fewer only when
  shorter than 3 characters).
- ``prompt_tokens`` = (characters of all input text) // 4 + (number of input messages), at least
  ``cached_tokens``. Input text is message content (strings and text parts), tool-call
  arguments and tool outputs; Responses ``instructions`` and a plain-string ``input`` each count
  as one message.
- ``completion_tokens`` = text pieces + argument fragments + ``reasoning_tokens``.

Run in the foreground with ``python -m tests.fakes.openai_server --port 9990 [--api-key K]``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.common import (
    DroppedConnection,
    Prompt,
    RecordedRequest,
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
    split_text,
    streaming_response,
)
from tests.fakes.openai_embeddings import embeddings_reply
from tests.fakes.openai_images import images_reply
from tests.fakes.openai_videos import FakeVideos
from tests.fakes.openai_videos import handle as videos_reply

__all__ = [
    "Behaviour",
    "DroppedConnection",
    "FakeOpenAI",
    "FakeOpenAIServer",
    "RecordedRequest",
    "build_app",
    "chat_chunks",
    "chat_completion",
    "main",
    "openai_error",
    "reply_text_for",
    "response_frames",
    "split_arguments",
    "split_text",
]

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")

# ---------------------------------------------------------------------------------------------
# Script and state
# ---------------------------------------------------------------------------------------------


@dataclass
class Behaviour:
    """What the fake answers to one request (see the module docstring for the defaults)."""

    status: int = 200
    # Whole JSON body for a non-200 answer; None gives an OpenAI-shaped error for the status.
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    # Each {"name": str, "arguments": "<json string>"}, optionally "call_id".
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    delay: float = 0.0
    chunk_delay: float = 0.0
    drop_after_chunks: int | None = None
    omit_usage: bool = False
    # Embeddings: answer in this encoding ("float"/"base64") whatever the request asks.
    embedding_encoding: str | None = None


class FakeOpenAI(ScriptedFake[Behaviour]):
    """State of the fake: the expected key, the behaviour queue, the recorded requests, the models.

    Safe to script from the test thread while the server thread serves requests.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default: Behaviour | None = None,
        models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
    ) -> None:
        super().__init__(api_key=api_key, default=default if default is not None else Behaviour())
        self.models = list(models)
        self.videos = FakeVideos()  # the Videos API (tests/fakes/openai_videos.py)


# ---------------------------------------------------------------------------------------------
# The reply a behaviour produces for a given input
# ---------------------------------------------------------------------------------------------


@dataclass
class _ToolCall:
    name: str
    arguments: str
    call_id: str

    @property
    def fragments(self) -> list[str]:
        return split_arguments(self.arguments)


@dataclass
class _Reply:
    text: str | None
    tool_calls: list[_ToolCall]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int

    @property
    def pieces(self) -> list[str]:
        return split_text(self.text or "")


def _chat_prompt(body: dict[str, Any]) -> Prompt:
    messages = body.get("messages") or []
    characters = 0
    last_user = ""
    for message in messages:
        if not isinstance(message, dict):
            continue
        texts = part_texts(message.get("content"))
        for call in message.get("tool_calls") or []:
            arguments = (call.get("function") or {}).get("arguments")
            if isinstance(arguments, str):
                texts.append(arguments)
        characters += sum(len(t) for t in texts)
        if message.get("role") == "user":
            last_user = "\n".join(part_texts(message.get("content")))
    return Prompt(last_user, characters, len(messages))


def _responses_prompt(body: dict[str, Any]) -> Prompt:
    characters = 0
    messages = 0
    last_user = ""
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        characters += len(instructions)
        messages += 1
    items = body.get("input")
    if isinstance(items, str):
        return Prompt(items, characters + len(items), messages + 1)
    for item in items or []:
        if not isinstance(item, dict):
            continue
        messages += 1
        texts = part_texts(item.get("content"))
        texts += [item[k] for k in ("arguments", "output") if isinstance(item.get(k), str)]
        characters += sum(len(t) for t in texts)
        if item.get("role") == "user" and item.get("type", "message") == "message":
            last_user = "\n".join(part_texts(item.get("content")))
    return Prompt(last_user, characters, messages)


def _plan_reply(behaviour: Behaviour, prompt: Prompt) -> _Reply:
    tool_calls = [
        _ToolCall(
            name=str(call["name"]),
            arguments=str(call.get("arguments", "{}")),
            call_id=str(call.get("call_id") or f"call_{secrets.token_hex(12)}"),
        )
        for call in behaviour.tool_calls or []
    ]
    text = behaviour.text
    if text is None and not tool_calls:
        text = reply_text_for(prompt.last_user_text)
    finish_reason = behaviour.finish_reason or ("tool_calls" if tool_calls else "stop")
    reply = _Reply(
        text=text,
        tool_calls=tool_calls,
        finish_reason=finish_reason,
        prompt_tokens=0,
        completion_tokens=0,
        cached_tokens=behaviour.cached_tokens,
        reasoning_tokens=behaviour.reasoning_tokens,
    )
    if behaviour.prompt_tokens is not None:
        reply.prompt_tokens = behaviour.prompt_tokens
    else:
        reply.prompt_tokens = max(prompt.tokens, behaviour.cached_tokens)
    if behaviour.completion_tokens is not None:
        reply.completion_tokens = behaviour.completion_tokens
    else:
        fragments = sum(len(call.fragments) for call in tool_calls)
        reply.completion_tokens = len(reply.pieces) + fragments + behaviour.reasoning_tokens
    return reply


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def openai_error(status: int, message: str | None = None) -> dict[str, Any]:
    """An OpenAI-shaped error body for an HTTP status."""
    kind, code = _ERROR_KINDS.get(status, ("server_error", None))
    text = message or f"The fake OpenAI server returned HTTP {status} as scripted."
    return {"error": {"message": text, "type": kind, "param": None, "code": code}}


# ---------------------------------------------------------------------------------------------
# Chat Completions
# ---------------------------------------------------------------------------------------------


def _chat_usage(reply: _Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(body: dict[str, Any], reply: _Reply, *, with_usage: bool = True) -> dict[str, Any]:
    """A full non-streaming ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.tool_calls
        ]
    completion: dict[str, Any] = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
        "service_tier": "default",
        "system_fingerprint": "fp_fake0001",
    }
    if with_usage:
        completion["usage"] = _chat_usage(reply)
    return completion


def chat_chunks(body: dict[str, Any], reply: _Reply, *, include_usage: bool) -> Iterator[bytes]:
    """``data:`` frames of a streamed completion, in OpenAI's order (without ``[DONE]``)."""
    base: dict[str, Any] = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "service_tier": "default",
        "system_fingerprint": "fp_fake0001",
    }

    def frame(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    yield frame({"role": "assistant", "content": "" if reply.text is not None else None, "refusal": None})
    for piece in reply.pieces:
        yield frame({"content": piece})
    for index, call in enumerate(reply.tool_calls):
        opening = {
            "index": index,
            "id": call.call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield frame({"tool_calls": [opening]})
        for fragment in call.fragments:
            yield frame({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
    yield frame({}, reply.finish_reason)
    if include_usage:
        yield b"data: " + orjson.dumps({**base, "choices": [], "usage": _chat_usage(reply)}) + b"\n\n"


# ---------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------

_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _responses_usage(reply: _Reply) -> dict[str, Any]:
    return {
        "input_tokens": reply.prompt_tokens,
        "input_tokens_details": {"cached_tokens": reply.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": reply.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


class _ResponseBuilder:
    """Builds the response object and its items for one Responses request."""

    def __init__(self, body: dict[str, Any], reply: _Reply, *, with_usage: bool) -> None:
        self.body = body
        self.reply = reply
        self.with_usage = with_usage
        self.id = f"resp_{secrets.token_hex(24)}"
        self.created_at = int(time.time())
        self.incomplete_reason = _INCOMPLETE_REASONS.get(reply.finish_reason)
        self.message_id = f"msg_{secrets.token_hex(24)}"
        self.call_ids = [f"fc_{secrets.token_hex(24)}" for _ in reply.tool_calls]

    @property
    def item_status(self) -> str:
        return "incomplete" if self.incomplete_reason else "completed"

    def text_part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def message_item(self, *, done: bool) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "type": "message",
            "status": self.item_status if done else "in_progress",
            "content": [self.text_part(self.reply.text or "")] if done else [],
            "role": "assistant",
        }

    def call_item(self, index: int, *, done: bool) -> dict[str, Any]:
        call = self.reply.tool_calls[index]
        return {
            "id": self.call_ids[index],
            "type": "function_call",
            "status": self.item_status if done else "in_progress",
            "arguments": call.arguments if done else "",
            "call_id": call.call_id,
            "name": call.name,
        }

    def output(self) -> list[dict[str, Any]]:
        items = [self.message_item(done=True)] if self.reply.text is not None else []
        return items + [self.call_item(i, done=True) for i in range(len(self.reply.tool_calls))]

    def response(self, *, final: bool) -> dict[str, Any]:
        """The response object: in progress (``final=False``) or finished."""
        body = self.body
        status = "in_progress"
        if final:
            status = "incomplete" if self.incomplete_reason else "completed"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if final and status == "completed" else None,
            "error": None,
            "incomplete_details": (
                {"reason": self.incomplete_reason} if final and self.incomplete_reason else None
            ),
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": body.get("model", ""),
            "output": self.output() if final else [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": _responses_usage(self.reply) if final and self.with_usage else None,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """The stream's events in OpenAI's order, each without its ``sequence_number``."""
        yield "response.created", {"response": self.response(final=False)}
        yield "response.in_progress", {"response": self.response(final=False)}
        output_index = 0
        if self.reply.text is not None:
            yield from self._message_events(output_index)
            output_index += 1
        for call_index in range(len(self.reply.tool_calls)):
            yield from self._call_events(output_index, call_index)
            output_index += 1
        terminal = "response.incomplete" if self.incomplete_reason else "response.completed"
        yield terminal, {"response": self.response(final=True)}

    def _message_events(self, output_index: int) -> Iterator[tuple[str, dict[str, Any]]]:
        text = self.reply.text or ""
        where = {"item_id": self.message_id, "output_index": output_index, "content_index": 0}
        yield (
            "response.output_item.added",
            {"output_index": output_index, "item": self.message_item(done=False)},
        )
        yield "response.content_part.added", {**where, "part": self.text_part("")}
        for piece in self.reply.pieces:
            yield "response.output_text.delta", {**where, "delta": piece, "logprobs": []}
        yield "response.output_text.done", {**where, "text": text, "logprobs": []}
        yield "response.content_part.done", {**where, "part": self.text_part(text)}
        yield (
            "response.output_item.done",
            {"output_index": output_index, "item": self.message_item(done=True)},
        )

    def _call_events(self, output_index: int, call_index: int) -> Iterator[tuple[str, dict[str, Any]]]:
        call = self.reply.tool_calls[call_index]
        where = {"item_id": self.call_ids[call_index], "output_index": output_index}
        added = self.call_item(call_index, done=False)
        yield "response.output_item.added", {"output_index": output_index, "item": added}
        for fragment in call.fragments:
            yield "response.function_call_arguments.delta", {**where, "delta": fragment}
        yield "response.function_call_arguments.done", {**where, "arguments": call.arguments}
        done = self.call_item(call_index, done=True)
        yield "response.output_item.done", {"output_index": output_index, "item": done}


def response_frames(builder: _ResponseBuilder) -> Iterator[bytes]:
    """Named SSE frames (``event:`` + ``data:``) with consecutive ``sequence_number`` from 0."""
    for sequence_number, (kind, payload) in enumerate(builder.events()):
        data = {"type": kind, "sequence_number": sequence_number, **payload}
        yield b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# ---------------------------------------------------------------------------------------------
# The ASGI app
# ---------------------------------------------------------------------------------------------


def _authorized(fake: FakeOpenAI, request: Request) -> bool:
    if fake.api_key is None:
        return True
    return request.headers.get("authorization") == f"Bearer {fake.api_key}"


def _models(fake: FakeOpenAI) -> Response:
    data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "openai"} for m in fake.models]
    return json_response({"object": "list", "data": data})


async def _generate(fake: FakeOpenAI, kind: str, body: dict[str, Any]) -> Response:
    behaviour = fake.next_behaviour()
    if behaviour.delay:
        await asyncio.sleep(behaviour.delay)
    headers = {"x-request-id": f"req_{secrets.token_hex(16)}", **behaviour.headers}
    if behaviour.status != 200:
        error = behaviour.error if behaviour.error is not None else openai_error(behaviour.status)
        return json_response(error, behaviour.status, headers)

    stream = body.get("stream") is True
    if kind == "chat":
        reply = _plan_reply(behaviour, _chat_prompt(body))
        if not stream:
            completion = chat_completion(body, reply, with_usage=not behaviour.omit_usage)
            return json_response(completion, headers=headers)
        options = body.get("stream_options") or {}
        include_usage = options.get("include_usage") is True and not behaviour.omit_usage
        frames = chat_chunks(body, reply, include_usage=include_usage)
        return streaming_response(_paced(frames, behaviour, b"data: [DONE]\n\n"), headers)

    reply = _plan_reply(behaviour, _responses_prompt(body))
    builder = _ResponseBuilder(body, reply, with_usage=not behaviour.omit_usage)
    if not stream:
        return json_response(builder.response(final=True), headers=headers)
    return streaming_response(_paced(response_frames(builder), behaviour, None), headers)


def _paced(frames: Iterator[bytes], behaviour: Behaviour, closing: bytes | None) -> AsyncIterator[bytes]:
    delay, drop = behaviour.chunk_delay, behaviour.drop_after_chunks
    return paced(frames, chunk_delay=delay, drop_after_chunks=drop, closing=closing)


def build_app(fake: FakeOpenAI) -> Starlette:
    """The Starlette app serving ``fake`` on any path prefix."""

    async def dispatch(request: Request) -> Response:
        body = await read_json(request)
        path = request.url.path.rstrip("/")
        fake.record(recorded(request, body))
        if not _authorized(fake, request):
            message = "Incorrect API key provided. You can find your API key at https://platform.openai.com."
            return json_response(openai_error(401, message), 401)
        if "/videos" in path:
            return await videos_reply(fake.videos, request)
        if request.method == "GET" and path.endswith("/models"):
            return _models(fake)
        if request.method == "POST" and path.endswith("/embeddings"):
            return await embeddings_reply(fake, body)
        if request.method == "POST" and path.endswith("/images/generations"):
            return await images_reply(fake, body)
        if request.method == "POST" and path.endswith(("/chat/completions", "/responses")):
            if not isinstance(body, dict):
                unparsable = "We could not parse the JSON body of your request."
                return json_response(openai_error(400, unparsable), 400)
            return await _generate(fake, "chat" if path.endswith("/chat/completions") else "responses", body)
        message = f"Invalid URL ({request.method} {request.url.path})"
        return json_response(
            {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}, 404
        )

    return Starlette(routes=[Route("/{path:path}", dispatch, methods=["GET", "POST", "DELETE"])])


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------


class FakeOpenAIServer(ThreadedServer):
    """Serves a :class:`FakeOpenAI` with uvicorn in a daemon thread on an ephemeral loopback port."""

    label = "fake-openai"

    def __init__(self, fake: FakeOpenAI | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.fake = fake if fake is not None else FakeOpenAI()

    def build(self) -> Starlette:
        """The app serving :attr:`fake`."""
        return build_app(self.fake)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, what an OpenAI client takes as ``base_url``."""
        return f"{self.root_url}/v1"


def main(argv: list[str] | None = None) -> None:
    """Foreground entry point: ``python -m tests.fakes.openai_server --port 9990``."""
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server for local trials and tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9990)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <key>'")
    args = parser.parse_args(argv)
    fake = FakeOpenAI(api_key=args.api_key)
    print(f"fake OpenAI server: base_url http://{args.host}:{args.port}/v1", flush=True)
    serve_forever(build_app(fake), args.host, args.port)


if __name__ == "__main__":
    main()
