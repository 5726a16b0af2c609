"""The fake OpenAI server's Videos API: jobs that move queued -> in_progress -> completed over time.

``POST /videos`` (JSON or multipart with an ``input_reference`` file), ``GET /videos``,
``GET /videos/{id}``, ``GET /videos/{id}/content``, ``DELETE /videos/{id}``, in OpenAI's shapes.
A job is ``queued`` for ``queued_s``, then ``in_progress`` with a rising ``progress`` until
``duration_s``, then ``completed``; a prompt containing ``FAIL`` ends ``failed`` instead. Polls of
one job are timed and counted, and two polls of the same job at once are counted in
:attr:`FakeVideos.overlaps` (the gateway must never do that).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.common import json_response
from tests.fakes.media import SAMPLE_MP4

SECONDS = ("4", "8", "12")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")


@dataclass
class _Job:
    id: str
    model: str
    prompt: str
    seconds: str
    size: str
    created: float
    image: bytes | None = None
    image_type: str | None = None
    deleted: bool = False


@dataclass
class FakeVideos:
    """State of the fake Videos API; safe to read from the test thread."""

    queued_s: float = 0.3
    duration_s: float = 1.5
    poll_delay_s: float = 0.05  # each retrieve takes this long, so overlapping polls can be seen
    jobs: dict[str, _Job] = field(default_factory=dict)
    polls: Counter[str] = field(default_factory=Counter)
    overlaps: int = 0
    _in_flight: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self, job: _Job) -> dict[str, Any]:
        elapsed = time.monotonic() - job.created
        status, progress, error, completed_at = "queued", 0, None, None
        if elapsed >= self.queued_s:
            if "FAIL" in job.prompt:
                status = "failed"
                error = {
                    "code": "moderation_blocked",
                    "message": "The prompt was blocked (scripted failure).",
                }
            elif elapsed >= self.duration_s:
                status, progress, completed_at = "completed", 100, int(time.time())
            else:
                status = "in_progress"
                span = max(self.duration_s - self.queued_s, 1e-6)
                progress = min(99, max(1, int(100 * (elapsed - self.queued_s) / span)))
        return {
            "id": job.id,
            "object": "video",
            "model": job.model,
            "status": status,
            "progress": progress,
            "created_at": int(time.time() - elapsed),
            "completed_at": completed_at,
            "expires_at": completed_at + 3600 if completed_at else None,
            "seconds": job.seconds,
            "size": job.size,
            "prompt": job.prompt,
            "remixed_from_video_id": None,
            "error": error,
        }


def _error(status: int, message: str, param: str | None = None) -> Response:
    return json_response(
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}, status
    )


async def handle(videos: FakeVideos, request: Request) -> Response:
    """Serve one ``…/videos…`` request."""
    parts = request.url.path.rstrip("/").split("/videos", 1)[1].strip("/").split("/")
    parts = [p for p in parts if p]
    method = request.method
    if not parts:
        if method == "POST":
            return await _create(videos, request)
        if method == "GET":
            data = [videos.view(j) for j in reversed(list(videos.jobs.values())) if not j.deleted]
            return json_response({"object": "list", "data": data, "has_more": False})
    job = videos.jobs.get(parts[0]) if parts else None
    if job is None or job.deleted:
        return _error(404, f"Video '{parts[0] if parts else ''}' not found", "video_id")
    if len(parts) == 1 and method == "GET":
        return await _retrieve(videos, job)
    if len(parts) == 1 and method == "DELETE":
        job.deleted = True
        return json_response({"id": job.id, "object": "video.deleted", "deleted": True})
    if parts[1:] == ["content"] and method == "GET":
        if videos.view(job)["status"] != "completed":
            return _error(404, "Video is not ready yet; wait for status completed")
        return Response(SAMPLE_MP4, media_type="video/mp4")
    return _error(404, f"Invalid URL ({method} {request.url.path})")


async def _retrieve(videos: FakeVideos, job: _Job) -> Response:
    with videos._lock:
        videos.polls[job.id] += 1
        videos._in_flight[job.id] += 1
        if videos._in_flight[job.id] > 1:
            videos.overlaps += 1
    try:
        await asyncio.sleep(videos.poll_delay_s)
        return json_response(videos.view(job))
    finally:
        with videos._lock:
            videos._in_flight[job.id] -= 1


async def _create(videos: FakeVideos, request: Request) -> Response:
    image: bytes | None = None
    image_type: str | None = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        fields: dict[str, Any] = {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
        upload = form.get("input_reference")
        if isinstance(upload, UploadFile):
            image, image_type = await upload.read(), upload.content_type
    else:
        try:
            fields = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return _error(400, "Missing required parameter: 'prompt'.", "prompt")
    seconds = str(fields.get("seconds") or "4")
    size = str(fields.get("size") or "720x1280")
    if seconds not in SECONDS:
        return _error(
            400, f"Invalid value: '{seconds}'. Supported values are: {', '.join(SECONDS)}.", "seconds"
        )
    if size not in SIZES:
        return _error(400, f"Invalid value: '{size}'. Supported values are: {', '.join(SIZES)}.", "size")
    job = _Job(
        id=f"video_{secrets.token_hex(16)}",
        model=str(fields.get("model") or "sora-2"),
        prompt=prompt,
        seconds=seconds,
        size=size,
        created=time.monotonic(),
        image=image,
        image_type=image_type,
    )
    videos.jobs[job.id] = job
    return json_response(videos.view(job))
