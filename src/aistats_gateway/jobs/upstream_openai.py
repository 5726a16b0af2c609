"""OpenAI's Videos API (``/videos``): also served by OpenAI-compatible video providers.

Create is JSON, or multipart when an ``input_reference`` image is sent; the job object carries
``status`` and ``progress``; the finished MP4 is ``GET /videos/{id}/content``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx

from ..providers.credentials import AuthHeaders
from ..settings import ProviderConfig
from .upstream import UpstreamState, VideoSpec, calling, json_of, stream_to_file, timeout

_STATUSES = {"queued", "in_progress", "completed", "failed"}


class OpenAIVideos:
    """An OpenAI-shaped video API at ``{base_url}/videos``."""

    def __init__(self, config: ProviderConfig, client: httpx.AsyncClient, timeout_s: float) -> None:
        self.config = config
        self._client = client
        self._base = config.base_url.rstrip("/") + "/videos"
        self._timeout = timeout(config, timeout_s)
        self._auth = AuthHeaders(config, config.headers, "authorization", "Bearer ")

    def check(self, spec: VideoSpec) -> None:
        """OpenAI validates seconds and size itself (its 400 reaches the client)."""

    def _url(self, upstream_id: str, suffix: str = "") -> str:
        return f"{self._base}/{quote(upstream_id, safe='')}{suffix}"

    async def create(
        self, model: str, spec: VideoSpec, credential: str | None = None
    ) -> tuple[str, UpstreamState]:
        fields = {"model": model, "prompt": spec.prompt, "seconds": str(spec.seconds), "size": spec.size}
        headers = self._auth.headers(credential)
        async with calling(self.config.name):
            if spec.image is not None:
                files = {"input_reference": ("reference", spec.image, spec.image_type or "image/png")}
                response = await self._client.post(
                    self._base, data=fields, files=files, headers=headers, timeout=self._timeout
                )
            else:
                response = await self._client.post(
                    self._base, json=fields, headers=headers, timeout=self._timeout
                )
        job = json_of(self.config, response, credential)
        return str(job["id"]), _state(job)

    async def poll(self, upstream_id: str, credential: str | None = None) -> UpstreamState:
        async with calling(self.config.name):
            response = await self._client.get(
                self._url(upstream_id), headers=self._auth.headers(credential), timeout=self._timeout
            )
        return _state(json_of(self.config, response, credential))

    async def download(
        self, upstream_id: str, state: UpstreamState, dest: Path, credential: str | None = None
    ) -> str:
        request = self._client.build_request(
            "GET",
            self._url(upstream_id, "/content"),
            headers=self._auth.headers(credential),
            timeout=self._timeout,
        )
        return await stream_to_file(self._client, self.config, request, dest, credential)

    async def cancel(self, upstream_id: str, credential: str | None = None) -> None:
        """OpenAI has no cancel: deleting the job is the closest (failures are ignored)."""
        async with calling(self.config.name):
            await self._client.delete(
                self._url(upstream_id), headers=self._auth.headers(credential), timeout=self._timeout
            )


def _state(job: dict) -> UpstreamState:
    status = job.get("status")
    if status not in _STATUSES:
        status = "in_progress"
    progress = job.get("progress")
    error = job.get("error")
    if status == "failed" and not isinstance(error, dict):
        error = {"code": "video_generation_failed", "message": "The provider reported the job as failed."}
    return UpstreamState(
        status=str(status),
        progress=max(0, min(100, int(progress))) if isinstance(progress, int | float) else 0,
        error={
            "code": str(error.get("code") or "video_generation_failed"),
            "message": str(error.get("message") or ""),
        }
        if isinstance(error, dict)
        else None,
    )
