"""Generic parts shared by the fake provider servers (OpenAI, Anthropic, Gemini).

- prompt-text rules: the default reply (``Reply with: X`` -> ``X``, else ``echo: <user text>``),
  how reply text and tool arguments are cut into stream pieces, the :class:`Prompt` token rule;
- :class:`ScriptedFake`: the behaviour script queue and the recorded requests;
- HTTP helpers: JSON responses, request recording, paced streaming with scripted drops;
- :class:`ThreadedServer`: uvicorn in a daemon thread on an ephemeral loopback port.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import orjson
import uvicorn
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp

B = TypeVar("B")

# ---------------------------------------------------------------------------------------------
# Prompt-text rules
# ---------------------------------------------------------------------------------------------

_REPLY_WITH = re.compile(r"Reply with:(.*)")
_PIECE = re.compile(r"\s*\S+|\s+$")


def split_text(text: str) -> list[str]:
    """Stream pieces of a reply text, cut before each run of whitespace; joined they give ``text``."""
    return _PIECE.findall(text)


def text_deltas(text: str) -> list[str]:
    """Like :func:`split_text`, but a single piece of 2+ characters is cut in two halves.

    The Anthropic and Gemini fakes use this so that every streamed text of 2+ characters
    arrives as at least two deltas.
    """
    pieces = split_text(text)
    if len(pieces) == 1 and len(text) >= 2:
        middle = len(text) // 2
        return [text[:middle], text[middle:]]
    return pieces


def split_arguments(arguments: str) -> list[str]:
    """Stream fragments of a tool call's arguments (3 slices, fewer only for tiny strings)."""
    if not arguments:
        return [""]
    size = -(-len(arguments) // 3)
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def reply_text_for(user_text: str) -> str:
    """The default reply: ``X`` for ``Reply with: X``, else ``echo: <user text>``."""
    match = _REPLY_WITH.search(user_text)
    if match:
        return match.group(1).strip()
    return f"echo: {user_text}"


def part_texts(content: Any) -> list[str]:
    """Text of a message content: a string, or a list of parts/blocks carrying ``text``."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


@dataclass
class Prompt:
    """What a fake needs to know about a request's input."""

    last_user_text: str
    characters: int
    messages: int

    @property
    def tokens(self) -> int:
        """The documented input token rule: characters // 4 + number of messages."""
        return self.characters // 4 + self.messages


# ---------------------------------------------------------------------------------------------
# Script queue and recorded requests
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it: headers lower-cased, body parsed (None if not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    query: dict[str, str] = field(default_factory=dict)


class ScriptedFake(Generic[B]):
    """State of a fake: the expected key, the behaviour queue and the recorded requests.

    Safe to script from the test thread while the server thread serves requests.
    """

    def __init__(self, *, api_key: str | None, default: B) -> None:
        self.api_key = api_key
        self.default = default
        self.requests: list[RecordedRequest] = []
        self._queue: deque[B] = deque()
        self._lock = threading.Lock()

    def enqueue(self, *behaviours: B) -> None:
        """Queue behaviours; each generation request consumes the next one."""
        with self._lock:
            self._queue.extend(behaviours)

    def next_behaviour(self) -> B:
        """The next queued behaviour, or :attr:`default` when the queue is empty."""
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    @property
    def pending(self) -> int:
        """How many queued behaviours are not consumed yet."""
        with self._lock:
            return len(self._queue)

    def record(self, request: RecordedRequest) -> None:
        """Append one request to :attr:`requests`."""
        with self._lock:
            self.requests.append(request)

    def reset(self) -> None:
        """Forget queued behaviours and recorded requests."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()


# ---------------------------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------------------------


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type="application/json")


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON, or None when it is empty or not JSON."""
    raw = await request.body()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def recorded(request: Request, body: Any) -> RecordedRequest:
    """The :class:`RecordedRequest` for a Starlette request and its parsed body."""
    return RecordedRequest(
        method=request.method,
        path=request.url.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        query=dict(request.query_params),
    )


def sse_frame(data: Any, event: str | None = None, *, crlf: bool = False) -> bytes:
    """One SSE frame: optional ``event:`` line, a ``data:`` line with ``data`` as JSON.

    ``crlf`` ends lines with CRLF instead of LF (Google's ``alt=sse`` framing).
    """
    end = b"\r\n" if crlf else b"\n"
    head = b"event: " + event.encode() + end if event is not None else b""
    return head + b"data: " + orjson.dumps(data) + end + end


class DroppedConnection(Exception):
    """Raised inside a stream to make uvicorn abort the connection mid-body (scripted drop)."""


def _is_scripted_drop(record: logging.LogRecord) -> bool:
    if not record.exc_info:
        return False
    exc = record.exc_info[1]
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(DroppedConnection) is not None
    return isinstance(exc, DroppedConnection)


class _HideScriptedDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for drops the test asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_scripted_drop(record)


def log_config() -> dict[str, Any]:
    """uvicorn's logging config with scripted drops filtered out."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config.setdefault("filters", {})["hide_scripted_drops"] = {"()": _HideScriptedDrops}
    config["handlers"]["default"]["filters"] = ["hide_scripted_drops"]
    return config


async def paced(
    frames: Iterable[bytes],
    *,
    chunk_delay: float,
    drop_after_chunks: int | None,
    closing: bytes | None = None,
) -> AsyncIterator[bytes]:
    """Send frames with ``chunk_delay`` between them; abort after ``drop_after_chunks`` frames.

    ``closing`` (e.g. ``data: [DONE]``) is sent after the last frame unless the stream is dropped.
    """
    sent = 0
    for frame in frames:
        if drop_after_chunks is not None and sent >= drop_after_chunks:
            raise DroppedConnection(f"scripted drop after {sent} events")
        if sent and chunk_delay:
            await asyncio.sleep(chunk_delay)
        yield frame
        sent += 1
    if drop_after_chunks is not None:
        raise DroppedConnection(f"scripted drop after {sent} events")
    if closing is not None:
        yield closing


def streaming_response(
    frames: AsyncIterator[bytes], headers: dict[str, str], media_type: str = "text/event-stream"
) -> StreamingResponse:
    """A streamed response of ``frames`` (SSE unless told otherwise)."""
    return StreamingResponse(frames, media_type=media_type, headers=headers)


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------


class ThreadedServer:
    """Serves an ASGI app with uvicorn in a daemon thread on an (ephemeral) loopback port.

    Subclasses provide :meth:`build` (the app) and :attr:`label` (for thread names and errors).
    """

    label = "fake"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def build(self) -> ASGIApp:
        """The ASGI app to serve."""
        raise NotImplementedError

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no path)."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        """Bind, start serving, and return once uvicorn accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.build(),
            loop="asyncio",
            log_level="warning",
            log_config=log_config(),
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"{self.label}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.label} server did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit, wait for its thread, release the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(app: ASGIApp, host: str, port: int) -> None:
    """Run ``app`` in the foreground (for the ``python -m tests.fakes.<x>_server`` entry points)."""
    uvicorn.run(app, host=host, port=port, log_level="info", log_config=log_config())
