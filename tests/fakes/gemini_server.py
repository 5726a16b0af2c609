"""A fake Google Gemini API server on loopback that speaks the real ``generateContent`` wire format.

Tests point providers (or the official ``google-genai`` SDK) at it and script what it answers::

    fake = FakeGemini(api_key="gm-test")
    fake.enqueue(Behaviour(status=429))
    with FakeGeminiServer(fake=fake) as server:
        ...  # genai.Client(api_key="gm-test",
        #          http_options=types.HttpOptions(base_url=server.base_url, api_version="v1beta"))

Endpoints (any version prefix, dispatch is on the suffix): ``POST …/models/{model}:generateContent``,
``POST …/models/{model}:streamGenerateContent?alt=sse`` (``data: {GenerateContentResponse}`` SSE
frames with CRLF line ends, as Google sends them; without ``alt=sse`` the stream is one JSON
array, as the real API sends it), ``POST …/models/{model}:countTokens``, ``GET …/models``, and
``:batchEmbedContents`` / ``:embedContent`` (:mod:`tests.fakes.gemini_embeddings`); a
``generateContent`` asking for an IMAGE modality is answered by :mod:`tests.fakes.gemini_images`.
Answers are camelCase JSON, like the REST API; request fields are read in camelCase or snake_case
(Google's JSON mapping takes both, and the SDK sends some nested ones, e.g.
``thinkingConfig.include_thoughts``, in snake_case).

When :attr:`FakeGemini.api_key` is set the key must come in ``x-goog-api-key`` or ``?key=``. As the
real API does, a missing key is 403 ``PERMISSION_DENIED`` and a wrong key is 400
``INVALID_ARGUMENT`` with an ``ErrorInfo`` detail of reason ``API_KEY_INVALID`` (not 401). Empty
``contents`` is 400 ``INVALID_ARGUMENT``. These checks run before a behaviour is consumed.

Deterministic defaults when a :class:`Behaviour` leaves them unset:

- reply text: if the last ``user`` content that has text contains ``Reply with: X`` the reply is
  exactly ``X`` (the rest of that line, stripped); otherwise ``echo: <that text>``. User turns
  holding only ``functionResponse`` parts are skipped. With ``tool_calls`` and no ``text`` there
  is no text part.
- JSON mode (``generationConfig.responseMimeType`` ``application/json``, default reply only): the
  text is JSON built from ``responseSchema`` or ``responseJsonSchema``: an object gets every
  property (in ``propertyOrdering`` when given), a string is the reply text, integer and number
  ``0``, boolean ``true``, an array one item, an enum its first value, ``anyOf`` its first
  option, ``$ref`` is followed. So ``{"type": "object", "properties": {"answer": {"type":
  "string"}}}`` gives ``{"answer": "<reply>"}``; without a schema the text is ``{"text": "<reply>"}``.
- parts, in order: a thought summary ``{"text": thinking, "thought": true}`` (only when
  :attr:`Behaviour.thinking` is set *and* the request asks
  ``thinkingConfig.includeThoughts``; the thinking tokens count either way), the text part, one
  ``functionCall`` part per tool call (``args`` is the dict given, or the JSON ``arguments``
  string parsed). With thinking, a base64 ``thoughtSignature`` rides on the first function call
  part, else on the last text part.
- ``finishReason``: ``STOP`` — also with function calls, as the real API does — unless
  ``finish_reason`` says otherwise (``MAX_TOKENS``, ``SAFETY``…).
- ``promptTokenCount`` = (characters of all input text) // 4 + (number of contents, plus one for
  a ``systemInstruction`` with text), at least ``cached_tokens`` (``cachedContentTokenCount``,
  included in the prompt count as in the real API). Input text is text parts, ``functionCall``
  args and ``functionResponse`` response (as ``json.dumps``).
- ``thoughtsTokenCount`` = number of thinking deltas (reported only when non-zero).
- ``candidatesTokenCount`` = text deltas + argument fragments (3 slices of each call's args JSON);
  thoughts are *not* included. ``totalTokenCount`` = prompt + candidates + thoughts.
- stream chunks: one part per chunk — each thought delta, each text delta (the text split before
  each run of whitespace, a single piece of 2+ characters cut in two halves), then each function
  call whole (the real API never splits a call). Every chunk carries ``usageMetadata`` with
  cumulative counts; the last one is authoritative and carries ``finishReason``.

``drop_after_chunks`` aborts the connection after that many chunks; ``stream_error`` instead sends
a ``{"error": {...}}`` chunk after ``drop_after_chunks`` chunks (default 1) and ends the stream.
``omit_usage`` leaves ``usageMetadata`` out.

Run in the foreground with ``python -m tests.fakes.gemini_server --port 9992 [--api-key K]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
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
from tests.fakes.gemini_embeddings import EMBED_METHODS, embed_reply
from tests.fakes.gemini_images import image_reply, wants_image
from tests.fakes.veo import FakeVeo

DEFAULT_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite")
_METHOD_PATH = re.compile(r"/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$")

# ---------------------------------------------------------------------------------------------
# Script and state
# ---------------------------------------------------------------------------------------------


@dataclass
class Behaviour:
    """What the fake answers to one generate request (see the module docstring for the defaults)."""

    status: int = 200
    # Whole JSON body for a non-200 answer; None gives a Google-shaped error for the status.
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    # Each {"name": str, "input": dict} (or "args": dict) or {"name": str, "arguments": "<json>"},
    # optionally "id".
    tool_calls: list[dict[str, Any]] | None = None
    thinking: str | None = None
    # Native finishReason override: "MAX_TOKENS", "SAFETY", "RECITATION"…
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    thoughts_tokens: int | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    drop_after_chunks: int | None = None
    # HTTP-like status of an error chunk sent mid-stream (e.g. 503 -> UNAVAILABLE).
    stream_error: int | None = None
    omit_usage: bool = False


class FakeGemini(ScriptedFake[Behaviour]):
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
        self.veo = FakeVeo()  # Veo long-running operations (tests/fakes/veo.py)


# ---------------------------------------------------------------------------------------------
# The reply a behaviour produces for a given request
# ---------------------------------------------------------------------------------------------


def field_of(mapping: Any, name: str) -> Any:
    """``mapping[name]`` for a camelCase field name, falling back to its snake_case spelling.

    Google's JSON mapping accepts both spellings, and the SDK sends some nested fields
    (``thinkingConfig``, function declarations, schemas) in snake_case.
    """
    if not isinstance(mapping, dict):
        return None
    if name in mapping:
        return mapping[name]
    return mapping.get(re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower())


def _content_texts(content: Any) -> list[str]:
    """Texts of a content that count as input: text, functionCall args, functionResponse response."""
    if not isinstance(content, dict):
        return part_texts(content)
    texts: list[str] = []
    for part in content.get("parts") or []:
        if not isinstance(part, dict):
            continue
        call, response = field_of(part, "functionCall"), field_of(part, "functionResponse")
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(call, dict):
            texts.append(json.dumps(call.get("args", {})))
        elif isinstance(response, dict):
            texts.append(json.dumps(response.get("response", {})))
    return texts


def contents_prompt(body: dict[str, Any]) -> Prompt:
    """The prompt facts of a generate request (see the module docstring for the rule)."""
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    system = _content_texts(field_of(body, "systemInstruction"))
    characters = sum(len(t) for t in system)
    count = len(contents) + (1 if any(system) else 0)
    last_user = ""
    for content in contents:
        characters += sum(len(t) for t in _content_texts(content))
        texts = part_texts(content.get("parts"))
        if content.get("role", "user") == "user" and texts:
            last_user = "\n".join(texts)
    return Prompt(last_user, characters, count)


def json_for_schema(schema: Any, reply: str, root: Any = None) -> Any:
    """A JSON value matching ``schema`` whose strings are ``reply`` (the JSON-mode rule)."""
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return reply
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        return json_for_schema(target, reply, root)
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("anyOf", "oneOf"):
        options = field_of(schema, union)
        if options:
            return json_for_schema(options[0], reply, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    kind = str(kind).lower() if kind is not None else ("object" if "properties" in schema else "string")
    if kind == "object":
        properties = schema.get("properties") or {}
        order = field_of(schema, "propertyOrdering") or list(properties)
        return {name: json_for_schema(properties[name], reply, root) for name in order if name in properties}
    if kind == "array":
        return [json_for_schema(schema.get("items"), reply, root)]
    return {"integer": 0, "number": 0, "boolean": True, "null": None}.get(kind, reply)


def _json_mode_text(body: dict[str, Any], reply: str) -> str | None:
    config = field_of(body, "generationConfig") or {}
    if field_of(config, "responseMimeType") != "application/json":
        return None
    schema = field_of(config, "responseSchema") or field_of(config, "responseJsonSchema")
    value = json_for_schema(schema, reply) if schema else {"text": reply}
    return json.dumps(value)


@dataclass
class _Call:
    name: str
    args: Any
    arguments: str
    id: str | None

    @property
    def fragments(self) -> list[str]:
        return split_arguments(self.arguments)


@dataclass
class _Reply:
    thinking: str | None
    show_thoughts: bool
    signature: str | None
    text: str | None
    calls: list[_Call]
    finish_reason: str
    prompt_tokens: int
    candidates_tokens: int
    cached_tokens: int
    thoughts_tokens: int


def _call(call: dict[str, Any]) -> _Call:
    given = call.get("input", call.get("args"))
    if given is not None:
        arguments = json.dumps(given)
    else:
        arguments = str(call.get("arguments", "{}"))
        given = json.loads(arguments)
    call_id = call.get("id")
    return _Call(
        name=str(call["name"]), args=given, arguments=arguments, id=str(call_id) if call_id else None
    )


def _plan_reply(behaviour: Behaviour, body: dict[str, Any]) -> _Reply:
    prompt = contents_prompt(body)
    calls = [_call(call) for call in behaviour.tool_calls or []]
    text = behaviour.text
    if text is None and not calls:
        reply = reply_text_for(prompt.last_user_text)
        text = _json_mode_text(body, reply) or reply
    thinking_config = field_of(field_of(body, "generationConfig"), "thinkingConfig")
    thoughts = behaviour.thoughts_tokens
    if thoughts is None:
        thoughts = len(text_deltas(behaviour.thinking)) if behaviour.thinking else 0
    prompt_tokens = behaviour.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = max(prompt.tokens, behaviour.cached_tokens)
    candidates = behaviour.output_tokens
    if candidates is None:
        candidates = len(text_deltas(text or "")) + sum(len(call.fragments) for call in calls)
    signature = base64.b64encode(secrets.token_bytes(32)).decode() if behaviour.thinking else None
    return _Reply(
        thinking=behaviour.thinking,
        show_thoughts=field_of(thinking_config, "includeThoughts") is True,
        signature=signature,
        text=text,
        calls=calls,
        finish_reason=behaviour.finish_reason or "STOP",
        prompt_tokens=prompt_tokens,
        candidates_tokens=candidates,
        cached_tokens=behaviour.cached_tokens,
        thoughts_tokens=thoughts,
    )


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

_STATUSES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def status_for(code: int) -> str:
    """The ``google.rpc`` status name for an HTTP status."""
    if code in _STATUSES:
        return _STATUSES[code]
    return "INTERNAL" if code >= 500 else "FAILED_PRECONDITION"


def google_error(code: int, message: str | None = None, details: list[Any] | None = None) -> dict[str, Any]:
    """A Google-shaped error body ``{"error": {code, message, status}}`` for an HTTP status."""
    text = message or f"The fake Gemini server returned HTTP {code} as scripted."
    error: dict[str, Any] = {"code": code, "message": text, "status": status_for(code)}
    if details is not None:
        error["details"] = details
    return {"error": error}


_INVALID_KEY = "API key not valid. Please pass a valid API key."
_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity)."
    " Please use API Key or other form of API consumer identity to call this API."
)


def _invalid_key_error() -> dict[str, Any]:
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {
            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
            "locale": "en-US",
            "message": _INVALID_KEY,
        },
    ]
    return google_error(400, _INVALID_KEY, details)


# ---------------------------------------------------------------------------------------------
# Responses and stream chunks
# ---------------------------------------------------------------------------------------------


def _usage(reply: _Reply, candidates: int, thoughts: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": reply.prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": reply.prompt_tokens + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": reply.prompt_tokens}],
    }
    if reply.cached_tokens:
        usage["cachedContentTokenCount"] = reply.cached_tokens
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.cached_tokens}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _call_part(call: _Call) -> dict[str, Any]:
    function_call: dict[str, Any] = {"name": call.name, "args": call.args}
    if call.id is not None:
        function_call["id"] = call.id
    return {"functionCall": function_call}


@dataclass
class _Chunk:
    """One stream chunk's part and how many candidate / thought tokens it adds."""

    part: dict[str, Any]
    candidates: int = 0
    thoughts: int = 0


def _chunks(reply: _Reply) -> list[_Chunk]:
    chunks: list[_Chunk] = []
    if reply.thinking is not None and reply.show_thoughts:
        chunks += [_Chunk({"text": p, "thought": True}, thoughts=1) for p in text_deltas(reply.thinking)]
    if reply.text is not None:
        pieces = text_deltas(reply.text) or [""]
        chunks += [_Chunk({"text": p}, candidates=1 if p else 0) for p in pieces]
    chunks += [_Chunk(_call_part(call), candidates=len(call.fragments)) for call in reply.calls]
    if not chunks:
        chunks.append(_Chunk({"text": ""}))
    if reply.signature is not None:
        calls = [c for c in chunks if "functionCall" in c.part]
        answer = [c for c in chunks if "functionCall" not in c.part and not c.part.get("thought")]
        carrier = calls[0] if calls else (answer[-1] if answer else chunks[-1])
        carrier.part["thoughtSignature"] = reply.signature
    return chunks


def _parts(reply: _Reply) -> list[dict[str, Any]]:
    """The whole answer's parts: chunk parts with consecutive texts of one kind merged."""
    parts: list[dict[str, Any]] = []
    for chunk in _chunks(reply):
        part = dict(chunk.part)
        previous = parts[-1] if parts else None
        if (
            previous is not None
            and "text" in part
            and "text" in previous
            and previous.get("thought") == part.get("thought")
        ):
            previous["text"] += part.pop("text")
            previous.update(part)
        else:
            parts.append(part)
    return parts


class _Envelope:
    """Builds ``GenerateContentResponse`` objects for one request."""

    def __init__(self, model: str, reply: _Reply, *, with_usage: bool) -> None:
        self.model = model
        self.reply = reply
        self.with_usage = with_usage
        self.response_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")

    def response(
        self, parts: list[dict[str, Any]], usage: dict[str, Any] | None, *, last: bool
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if last:
            candidate["finishReason"] = self.reply.finish_reason
        result: dict[str, Any] = {"candidates": [candidate]}
        if self.with_usage and usage is not None:
            result["usageMetadata"] = usage
        result.update(modelVersion=self.model, responseId=self.response_id)
        return result

    def whole(self) -> dict[str, Any]:
        """The non-streaming response."""
        reply = self.reply
        usage = _usage(reply, reply.candidates_tokens, reply.thoughts_tokens)
        return self.response(_parts(reply), usage, last=True)

    def stream(self) -> Iterator[dict[str, Any]]:
        """The stream's chunks with cumulative usage; the last one has the final counts."""
        reply = self.reply
        chunks = _chunks(reply)
        candidates = 0
        # Hidden thoughts were all spent before the first visible token.
        thoughts = 0 if reply.show_thoughts else reply.thoughts_tokens
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            candidates += chunk.candidates
            thoughts += chunk.thoughts
            if last:
                usage = _usage(reply, reply.candidates_tokens, reply.thoughts_tokens)
            else:
                shown_thoughts = min(thoughts, reply.thoughts_tokens)
                usage = _usage(reply, min(candidates, reply.candidates_tokens), shown_thoughts)
            yield self.response([chunk.part], usage, last=last)


def _stream_items(envelope: _Envelope, behaviour: Behaviour) -> Iterator[dict[str, Any]]:
    """The stream's chunks, cut by the scripted in-stream error chunk when there is one."""
    if behaviour.stream_error is None:
        yield from envelope.stream()
        return
    error_at = 1 if behaviour.drop_after_chunks is None else behaviour.drop_after_chunks
    for sent, chunk in enumerate(envelope.stream()):
        if sent >= error_at:
            break
        yield chunk
    yield google_error(behaviour.stream_error)


def _sse_frames(envelope: _Envelope, behaviour: Behaviour) -> Iterator[bytes]:
    for item in _stream_items(envelope, behaviour):
        yield sse_frame(item, crlf=True)


def _array_frames(envelope: _Envelope, behaviour: Behaviour) -> Iterator[bytes]:
    """The stream as one JSON array (``streamGenerateContent`` without ``alt=sse``), sans ``]``."""
    for sent, item in enumerate(_stream_items(envelope, behaviour)):
        yield (b"[" if sent == 0 else b",\r\n") + orjson.dumps(item)


# ---------------------------------------------------------------------------------------------
# The ASGI app
# ---------------------------------------------------------------------------------------------


def _check_key(fake: FakeGemini, request: Request) -> Response | None:
    if fake.api_key is None:
        return None
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not key:
        return json_response(google_error(403, _NO_KEY), 403)
    if key != fake.api_key:
        return json_response(_invalid_key_error(), 400)
    return None


def _check_body(body: Any) -> Response | None:
    if not isinstance(body, dict):
        return json_response(google_error(400, "Invalid JSON payload received."), 400)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        message = "* GenerateContentRequest.contents: contents is not specified\n"
        return json_response(google_error(400, message), 400)
    return None


async def _generate(
    fake: FakeGemini, model: str, body: dict[str, Any], *, stream: bool, sse: bool
) -> Response:
    behaviour = fake.next_behaviour()
    if behaviour.delay:
        await asyncio.sleep(behaviour.delay)
    headers = dict(behaviour.headers)
    if behaviour.status != 200:
        error = behaviour.error if behaviour.error is not None else google_error(behaviour.status)
        return json_response(error, behaviour.status, headers)
    envelope = _Envelope(model, _plan_reply(behaviour, body), with_usage=not behaviour.omit_usage)
    if not stream:
        return json_response(envelope.whole(), headers=headers)
    # With stream_error the frames end themselves; drop_after_chunks then only places the error.
    drop = None if behaviour.stream_error is not None else behaviour.drop_after_chunks
    if sse:
        frames = paced(
            _sse_frames(envelope, behaviour), chunk_delay=behaviour.chunk_delay, drop_after_chunks=drop
        )
        return streaming_response(frames, headers)
    frames = paced(
        _array_frames(envelope, behaviour),
        chunk_delay=behaviour.chunk_delay,
        drop_after_chunks=drop,
        closing=b"]",
    )
    return streaming_response(frames, headers, media_type="application/json")


def _models(fake: FakeGemini) -> Response:
    methods = ["generateContent", "streamGenerateContent", "countTokens"]
    models = [
        {"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": methods} for m in fake.models
    ]
    return json_response({"models": models})


def build_app(fake: FakeGemini) -> Starlette:
    """The Starlette app serving ``fake`` on any version prefix."""

    async def dispatch(request: Request) -> Response:
        body = await read_json(request)
        fake.record(recorded(request, body))
        problem = _check_key(fake, request)
        if problem is not None:
            return problem
        path = request.url.path.rstrip("/")
        if fake.veo.handles(path):
            return await fake.veo.dispatch(request, body)
        if request.method == "GET" and path.endswith("/models"):
            return _models(fake)
        match = _METHOD_PATH.search(path)
        if request.method == "POST" and match and match["method"] in EMBED_METHODS:
            return await embed_reply(fake, match["model"], match["method"], body)
        methods = ("generateContent", "streamGenerateContent", "countTokens")
        if request.method == "POST" and match and match["method"] in methods:
            problem = _check_body(body)
            if problem is not None:
                return problem
            if match["method"] == "countTokens":
                return json_response({"totalTokens": contents_prompt(body).tokens})
            if match["method"] == "generateContent" and wants_image(body):
                return await image_reply(fake, match["model"], body)
            stream = match["method"] == "streamGenerateContent"
            sse = request.query_params.get("alt") == "sse"
            return await _generate(fake, match["model"], body, stream=stream, sse=sse)
        message = f"Method not found: {request.method} {request.url.path}"
        return json_response(google_error(404, message), 404)

    return Starlette(routes=[Route("/{path:path}", dispatch, methods=["GET", "POST"])])


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------


class FakeGeminiServer(ThreadedServer):
    """Serves a :class:`FakeGemini` with uvicorn in a daemon thread on an ephemeral loopback port."""

    label = "fake-gemini"

    def __init__(self, fake: FakeGemini | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.fake = fake if fake is not None else FakeGemini()

    def build(self) -> Starlette:
        """The app serving :attr:`fake`."""
        return build_app(self.fake)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the SDK's ``HttpOptions.base_url`` (it adds ``/v1beta/…``)."""
        return self.root_url


def main(argv: list[str] | None = None) -> None:
    """Foreground entry point: ``python -m tests.fakes.gemini_server --port 9992``."""
    parser = argparse.ArgumentParser(description="Fake Google Gemini API server for local trials and tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9992)
    parser.add_argument("--api-key", default=None, help="require 'x-goog-api-key: <key>' or '?key=<key>'")
    args = parser.parse_args(argv)
    fake = FakeGemini(api_key=args.api_key)
    print(f"fake Gemini server: base_url http://{args.host}:{args.port} (paths /v1beta/models/…)", flush=True)
    serve_forever(build_app(fake), args.host, args.port)


if __name__ == "__main__":
    main()
