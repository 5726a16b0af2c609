"""``/v1/videos``: async video jobs in OpenAI's wire shape (create, retrieve, list, content, cancel, delete).

Creating a job holds its worst-case cost, stores it, and submits it to a provider; the job
runner (jobs/runner.py) polls it from then on. Every job is visible only to its own workspace:
another workspace's job answers exactly like a missing one.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..ids import new_generation_id
from ..jobs.records import VideoJob
from ..jobs.service import VideoService
from ..jobs.upstream import VideoSpec
from ..pipeline.auth import Principal
from .errors import GatewayError, error_response, invalid
from .json import json_response

DEFAULT_SECONDS = 4  # OpenAI's defaults, since clients speak its format
DEFAULT_SIZE = "720x1280"
MAX_SECONDS = 60
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_PAGE = 100


class VideoEndpoints:
    """The video job routes, over one :class:`VideoService`."""

    def __init__(self, service: VideoService) -> None:
        self._service = service
        self._state = service.state

    def _principal(self, request: Request) -> Principal:
        return self._state.keys.authenticate(request.headers)

    async def _job(self, request: Request, principal: Principal) -> VideoJob:
        video_id = request.path_params["video_id"]
        job = await self._service.store.get_visible(video_id, principal.workspace_id)
        if job is None:
            raise GatewayError("not_found_error", f"Video '{video_id}' not found", param="video_id")
        return job

    @staticmethod
    def _reply(job: VideoJob, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return json_response(job.to_api(), status, {"x-generation-id": job.generation_id, **(headers or {})})

    async def create(self, request: Request) -> Response:
        try:
            principal = self._principal(request)
            model, spec = await parse_create(request)
            job = await self._service.create(principal, model, spec)
        except GatewayError as error:
            return error_response(error, new_generation_id())
        ticket = self._service.tickets.get(job.id)  # limited keys: x-ratelimit-* as on every endpoint
        return self._reply(job, headers=ticket.headers if ticket is not None else None)

    async def retrieve(self, request: Request) -> Response:
        try:
            job = await self._job(request, self._principal(request))
        except GatewayError as error:
            return error_response(error, new_generation_id())
        return self._reply(job)

    async def list_jobs(self, request: Request) -> Response:
        try:
            principal = self._principal(request)
            query = request.query_params
            limit = _int_param(query.get("limit"), "limit", 20, 1, MAX_PAGE)
            order = query.get("order", "desc")
            if order not in ("asc", "desc"):
                raise invalid("'order' must be 'asc' or 'desc'", param="order")
            jobs, has_more = await self._service.store.page(
                principal.workspace_id,
                after=query.get("after") or None,
                limit=limit,
                descending=order == "desc",
            )
        except GatewayError as error:
            return error_response(error, new_generation_id())
        data = [job.to_api() for job in jobs]
        return json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": has_more,
            }
        )

    async def content(self, request: Request) -> Response:
        try:
            job = await self._job(request, self._principal(request))
            variant = request.query_params.get("variant", "video")
            if variant != "video":
                raise invalid(
                    f"variant '{variant}' is not kept by the gateway; only 'video' can be downloaded",
                    param="variant",
                )
            if job.status != "completed":
                raise GatewayError(
                    "validation_error",
                    f"Video '{job.id}' is {job.status}; its content can be downloaded once it is completed",
                    status=409,
                    code="video_not_ready",
                )
            if not job.content_path:
                raise GatewayError(
                    "not_found_error",
                    f"The content of video '{job.id}' has expired (kept for a limited time after completion)",
                    code="video_expired",
                )
        except GatewayError as error:
            return error_response(error, new_generation_id())
        return FileResponse(
            job.content_path,
            media_type=job.content_type or "video/mp4",
            filename=f"{job.id}.mp4" if (job.content_type or "video/mp4") == "video/mp4" else None,
            headers={"x-generation-id": job.generation_id},
            content_disposition_type="inline",
        )

    async def cancel(self, request: Request) -> Response:
        try:
            job = await self._job(request, self._principal(request))
            job = await self._service.cancel(job)
        except GatewayError as error:
            return error_response(error, new_generation_id())
        return self._reply(job)

    async def delete(self, request: Request) -> Response:
        try:
            job = await self._job(request, self._principal(request))
            await self._service.delete(job)
        except GatewayError as error:
            return error_response(error, new_generation_id())
        return json_response(
            {"id": job.id, "object": "video.deleted", "deleted": True},
            headers={"x-generation-id": job.generation_id},
        )

    async def unsupported(self, request: Request) -> Response:
        what = request.url.path.removeprefix("/v1/videos/")
        error = GatewayError(
            "validation_error",
            f"POST /v1/videos/{what} (remix, edits, extensions, characters) is not supported by the "
            "gateway; create a new video with POST /v1/videos",
            code="unsupported_endpoint",
        )
        return error_response(error, new_generation_id())

    def routes(self) -> list[Route]:
        return [
            Route("/v1/videos", self.create, methods=["POST"]),
            Route("/v1/videos", self.list_jobs, methods=["GET"]),
            Route("/v1/videos/{name:str}", self.unsupported, methods=["POST"]),
            Route("/v1/videos/{video_id:str}", self.retrieve, methods=["GET"]),
            Route("/v1/videos/{video_id:str}", self.delete, methods=["DELETE"]),
            Route("/v1/videos/{video_id:str}/content", self.content, methods=["GET"]),
            Route("/v1/videos/{video_id:str}/cancel", self.cancel, methods=["POST"]),
            Route("/v1/videos/{video_id:str}/remix", self.unsupported, methods=["POST"]),
        ]


async def parse_create(request: Request) -> tuple[str, VideoSpec]:
    """The model and what to generate, from a JSON or a multipart/form-data body."""
    content_type = request.headers.get("content-type", "")
    image: bytes | None = None
    image_type: str | None = None
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=20, max_part_size=MAX_IMAGE_BYTES)
        fields: dict[str, Any] = {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
        upload = form.get("input_reference")
        if isinstance(upload, UploadFile):
            image = await upload.read()
            image_type = (upload.content_type or "").split(";")[0].strip()
        elif isinstance(upload, str) and upload:
            raise invalid("input_reference must be an uploaded image file", param="input_reference")
    else:
        try:
            fields = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise invalid("The body is not valid JSON (or send multipart/form-data)") from None
        if not isinstance(fields, dict):
            raise invalid("The body must be a JSON object")
        reference = fields.get("input_reference")
        if reference is not None:
            image, image_type = _json_reference(reference)
    model = fields.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("'model' is required: a video model id (GET /v1/models lists them)", param="model")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("'prompt' is required: a non-empty string", param="prompt")
    seconds = _int_param(fields.get("seconds"), "seconds", DEFAULT_SECONDS, 1, MAX_SECONDS)
    size = fields.get("size") or DEFAULT_SIZE
    if not isinstance(size, str) or "x" not in size:
        raise invalid("'size' must be WIDTHxHEIGHT, e.g. '1280x720'", param="size")
    if image is not None:
        if image_type not in IMAGE_TYPES:
            raise invalid(
                f"input_reference must be one of {', '.join(IMAGE_TYPES)}, not '{image_type}'",
                param="input_reference",
            )
        if len(image) > MAX_IMAGE_BYTES:
            raise invalid("input_reference is larger than 20 MB", param="input_reference")
    return model.strip(), VideoSpec(prompt, seconds, size, image, image_type)


def _json_reference(reference: object) -> tuple[bytes, str]:
    """``{"image_url": "data:image/png;base64,…"}``; remote URLs and file ids are not fetched."""
    url = reference.get("image_url") if isinstance(reference, dict) else None
    if not isinstance(url, str) or not url.startswith("data:"):
        raise invalid(
            'input_reference in JSON must be {"image_url": "data:<type>;base64,…"}; remote URLs and '
            "file ids are not supported (or upload the image as multipart/form-data)",
            param="input_reference",
        )
    header, _, data = url.partition(",")
    if not header.endswith(";base64"):
        raise invalid("input_reference.image_url must be a base64 data URL", param="input_reference")
    try:
        return base64.b64decode(data, validate=True), header[5:].removesuffix(";base64")
    except binascii.Error:
        raise invalid("input_reference.image_url is not valid base64", param="input_reference") from None


def _int_param(value: object, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"'{name}' must be a whole number from {low} to {high}", param=name)
    return value
