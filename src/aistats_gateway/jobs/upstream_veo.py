"""Google Veo on the Gemini API: ``models/{model}:predictLongRunning`` and its long-running operation.

Create answers ``{name}``; ``GET /v1beta/{name}`` answers ``done`` and, once done, either
``error`` or ``response.generateVideoResponse.generatedSamples[].video.uri``, a file download URL
that takes the same API key. Veo has no progress percentage: 0 until done, then 100.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ..providers.base import UpstreamFailure
from ..providers.credentials import AuthHeaders
from ..settings import ProviderConfig
from .upstream import UpstreamState, VideoSpec, calling, json_of, stream_to_file, timeout, unsupported

# OpenAI ``size`` -> Veo (aspectRatio, resolution).
SIZES: dict[str, tuple[str, str]] = {
    "1280x720": ("16:9", "720p"),
    "720x1280": ("9:16", "720p"),
    "1920x1080": ("16:9", "1080p"),
    "1080x1920": ("9:16", "1080p"),
}
SECONDS = (4, 6, 8)


class VeoVideos:
    """Veo through one configured ``google`` provider."""

    def __init__(self, config: ProviderConfig, client: httpx.AsyncClient, timeout_s: float) -> None:
        self.config = config
        self._client = client
        self._root = config.base_url.rstrip("/") + "/v1beta/"
        self._timeout = timeout(config, timeout_s)
        self._auth = AuthHeaders(config, config.headers, "x-goog-api-key")

    def check(self, spec: VideoSpec) -> None:
        if spec.size not in SIZES:
            raise unsupported(
                f"Veo cannot make size '{spec.size}'; use one of {', '.join(SIZES)}", param="size"
            )
        if spec.seconds not in SECONDS:
            raise unsupported(
                f"Veo makes clips of {', '.join(map(str, SECONDS))} seconds, not {spec.seconds}",
                param="seconds",
            )

    async def create(
        self, model: str, spec: VideoSpec, credential: str | None = None
    ) -> tuple[str, UpstreamState]:
        aspect_ratio, resolution = SIZES[spec.size]
        instance: dict[str, Any] = {"prompt": spec.prompt}
        if spec.image is not None:
            instance["image"] = {
                "bytesBase64Encoded": base64.b64encode(spec.image).decode(),
                "mimeType": spec.image_type or "image/png",
            }
        body = {
            "instances": [instance],
            "parameters": {
                "durationSeconds": spec.seconds,
                "aspectRatio": aspect_ratio,
                "resolution": resolution,
            },
        }
        url = self._root + "models/" + quote(model, safe="-._~") + ":predictLongRunning"
        async with calling(self.config.name):
            response = await self._client.post(
                url, json=body, headers=self._auth.headers(credential), timeout=self._timeout
            )
        operation = json_of(self.config, response, credential)
        name = operation.get("name")
        if not isinstance(name, str) or not name:
            raise UpstreamFailure(self.config.name, "the provider's operation has no name")
        return name, _state(operation)

    async def poll(self, upstream_id: str, credential: str | None = None) -> UpstreamState:
        async with calling(self.config.name):
            response = await self._client.get(
                self._root + upstream_id, headers=self._auth.headers(credential), timeout=self._timeout
            )
        return _state(json_of(self.config, response, credential))

    async def download(
        self, upstream_id: str, state: UpstreamState, dest: Path, credential: str | None = None
    ) -> str:
        if not state.content_url:
            raise UpstreamFailure(self.config.name, "the finished operation names no video")
        request = self._client.build_request(
            "GET", state.content_url, headers=self._auth.headers(credential), timeout=self._timeout
        )
        return await stream_to_file(self._client, self.config, request, dest, credential)

    async def cancel(self, upstream_id: str, credential: str | None = None) -> None:
        async with calling(self.config.name):
            await self._client.post(
                self._root + upstream_id + ":cancel",
                json={},
                headers=self._auth.headers(credential),
                timeout=self._timeout,
            )


def _state(operation: dict[str, Any]) -> UpstreamState:
    if not operation.get("done"):
        metadata = operation.get("metadata") or {}
        progress = metadata.get("progressPercent") if isinstance(metadata, dict) else None
        # A submitted operation is running: Veo does not report a queue.
        return UpstreamState("in_progress", int(progress) if isinstance(progress, int | float) else 0)
    error = operation.get("error")
    if isinstance(error, dict):
        code = error.get("status") or error.get("code") or "video_generation_failed"
        return UpstreamState("failed", 0, {"code": str(code), "message": str(error.get("message") or "")})
    result = (operation.get("response") or {}).get("generateVideoResponse") or {}
    samples = result.get("generatedSamples") or []
    uri = None
    if samples and isinstance(samples[0], dict):
        uri = (samples[0].get("video") or {}).get("uri")
    if not uri:
        reasons = result.get("raiMediaFilteredReasons") or ["the provider returned no video"]
        return UpstreamState(
            "failed", 0, {"code": "content_filtered", "message": "; ".join(str(r) for r in reasons)}
        )
    return UpstreamState("completed", 100, None, content_url=str(uri))
