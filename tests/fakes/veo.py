"""The fake Gemini server's Veo API: ``models/{model}:predictLongRunning`` and its operations.

Create answers ``{name: "models/{model}/operations/{id}"}``; ``GET /v1beta/{name}`` answers
``done: false`` (with ``metadata``) until ``duration_s`` has passed, then ``done: true`` with
``response.generateVideoResponse.generatedSamples[0].video.uri`` pointing at
``/v1beta/files/{id}:download?alt=media`` on this server (same API key). A prompt containing
``FAIL`` ends with an ``error`` instead. Overlapping polls of one operation are counted.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.common import json_response
from tests.fakes.media import SAMPLE_MP4

_CREATE = re.compile(r"/models/(?P<model>[^/:]+):predictLongRunning$")
_OPERATION = re.compile(r"/(?P<name>models/[^/]+/operations/[^/:]+)$")
_FILE = re.compile(r"/files/(?P<file>[^/:]+):download$")


@dataclass
class _Operation:
    name: str
    model: str
    prompt: str
    parameters: dict[str, Any]
    image: dict[str, Any] | None
    created: float


@dataclass
class FakeVeo:
    """State of the fake Veo API."""

    duration_s: float = 1.5
    poll_delay_s: float = 0.05
    operations: dict[str, _Operation] = field(default_factory=dict)
    polls: Counter[str] = field(default_factory=Counter)
    overlaps: int = 0
    _in_flight: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def handles(path: str) -> bool:
        return bool(_CREATE.search(path) or _OPERATION.search(path) or _FILE.search(path))

    def view(self, operation: _Operation, root: str) -> dict[str, Any]:
        elapsed = time.monotonic() - operation.created
        body: dict[str, Any] = {"name": operation.name}
        if elapsed < self.duration_s:
            body["metadata"] = {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningMetadata"
            }
            return body
        body["done"] = True
        if "FAIL" in operation.prompt:
            body["error"] = {
                "code": 3,
                "message": "The prompt was blocked (scripted failure).",
                "status": "INVALID_ARGUMENT",
            }
            return body
        file_id = operation.name.rsplit("/", 1)[1]
        uri = f"{root}/v1beta/files/{file_id}:download?alt=media"
        body["response"] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]},
        }
        return body

    async def dispatch(self, request: Request, body: Any) -> Response:
        path = request.url.path
        root = f"{request.url.scheme}://{request.url.netloc}"
        if request.method == "POST" and (match := _CREATE.search(path)):
            return self._create(match["model"], body)
        if request.method == "GET" and (match := _OPERATION.search(path)):
            operation = self.operations.get(match["name"])
            if operation is None:
                return _google_error(404, f"Operation {match['name']} not found", "NOT_FOUND")
            return await self._poll(operation, root)
        if request.method == "GET" and (match := _FILE.search(path)):
            if not any(name.endswith("/" + match["file"]) for name in self.operations):
                return _google_error(404, "File not found", "NOT_FOUND")
            return Response(SAMPLE_MP4, media_type="video/mp4")
        return _google_error(404, f"Method not found: {request.method} {path}", "NOT_FOUND")

    def _create(self, model: str, body: Any) -> Response:
        instances = body.get("instances") if isinstance(body, dict) else None
        if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
            return _google_error(400, "instances is required", "INVALID_ARGUMENT")
        prompt = instances[0].get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return _google_error(400, "instances[0].prompt is required", "INVALID_ARGUMENT")
        parameters = body.get("parameters") or {}
        if parameters.get("durationSeconds", 8) not in (4, 6, 8):
            return _google_error(400, "durationSeconds must be 4, 6 or 8", "INVALID_ARGUMENT")
        name = f"models/{model}/operations/{secrets.token_hex(8)}"
        self.operations[name] = _Operation(
            name, model, prompt, parameters, instances[0].get("image"), time.monotonic()
        )
        return json_response({"name": name})

    async def _poll(self, operation: _Operation, root: str) -> Response:
        with self._lock:
            self.polls[operation.name] += 1
            self._in_flight[operation.name] += 1
            if self._in_flight[operation.name] > 1:
                self.overlaps += 1
        try:
            await asyncio.sleep(self.poll_delay_s)
            return json_response(self.view(operation, root))
        finally:
            with self._lock:
                self._in_flight[operation.name] -= 1


def _google_error(status: int, message: str, reason: str) -> Response:
    return json_response({"error": {"code": status, "message": message, "status": reason}}, status)
