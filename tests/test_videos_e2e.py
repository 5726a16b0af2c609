"""``/v1/videos`` end to end: the openai SDK against the gateway, fake OpenAI and Veo providers behind it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from aistats_gateway.money import parse_usd
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.media import SAMPLE_MP4
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Admin, GatewayServer, gateway_settings, wait_for
from tests.video_fixtures import (
    OPENAI_PRICE,
    OPENAI_VIDEO_MODEL,
    VEO_MODEL,
    VEO_PRICE,
    start_fakes,
    video_config,
)

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
GRANT = parse_usd("10")


@dataclass
class VideoLive:
    gateway: GatewayServer
    openai_fake: FakeOpenAIServer
    gemini_fake: FakeGeminiServer
    admin: Admin
    key: str
    workspace_id: str

    def client(self, key: str | None = None) -> openai.OpenAI:
        return self.gateway.openai(key or self.key)

    def http(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key or self.key}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.gateway.base_url}{path}", headers=headers, timeout=10, **kwargs)

    def charges(self) -> list[dict[str, Any]]:
        ledger = self.admin.run(lambda store: store.list_ledger(self.workspace_id))
        return [entry for entry in ledger if entry["kind"] == "charge"]

    def wait_status(self, video_id: str, statuses: tuple[str, ...], timeout: float = 15) -> Any:
        client = self.client()
        return wait_for(
            lambda: (v := client.videos.retrieve(video_id)).status in statuses and v, timeout, 0.05
        )

    def available(self) -> float:
        return float(self.http("GET", "/v1/credits").json()["available"])


@pytest.fixture
def video_live(tmp_path: Path) -> Iterator[VideoLive]:
    openai_fake, gemini_fake = start_fakes()
    try:
        settings = gateway_settings(tmp_path, video_config(openai_fake.base_url, gemini_fake.base_url))
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(GRANT)
        with GatewayServer(settings) as gateway:
            yield VideoLive(gateway, openai_fake, gemini_fake, admin, key, admin.workspace_id())
    finally:
        openai_fake.stop()
        gemini_fake.stop()


def test_openai_sdk_creates_polls_and_downloads_a_video(video_live: VideoLive) -> None:
    client = video_live.client()
    video = client.videos.create(
        model=OPENAI_VIDEO_MODEL, prompt="a lighthouse", seconds="4", size="1280x720"
    )
    assert video.id.startswith("video_") and video.status == "queued"
    assert (video.model, video.seconds, video.size) == (OPENAI_VIDEO_MODEL, "4", "1280x720")
    statuses = set()
    deadline = time.monotonic() + 15
    while video.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.05)
        video = client.videos.retrieve(video.id)
        statuses.add(video.status)
    assert video.status == "completed" and video.progress == 100 and "in_progress" in statuses
    assert video.completed_at is not None and video.expires_at is not None
    assert video.expires_at - video.completed_at == 7 * 86400  # default retention
    assert client.videos.download_content(video.id).content == SAMPLE_MP4
    assert [v.id for v in client.videos.list()] == [video.id]

    cost = 4 * parse_usd(OPENAI_PRICE)
    charges = wait_for(video_live.charges)
    assert [c["amount_nano"] for c in charges] == [-cost]
    generation_id = (video.model_extra or {})["generation_id"]
    assert charges[0]["generation_id"] == generation_id
    record = video_live.http("GET", f"/v1/generations?id={generation_id}").json()["data"]
    assert (record["endpoint"], record["status"], record["cost_nanos"]) == ("videos", "completed", cost)
    assert wait_for(lambda: video_live.available() == (GRANT - cost) / 1e9)


def test_content_supports_range_requests(video_live: VideoLive) -> None:
    video = video_live.client().videos.create(model=OPENAI_VIDEO_MODEL, prompt="waves")
    video_live.wait_status(video.id, ("completed",))
    response = video_live.http("GET", f"/v1/videos/{video.id}/content", headers={"range": "bytes=0-99"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 0-99/{len(SAMPLE_MP4)}"
    assert response.headers["content-type"] == "video/mp4"
    assert response.content == SAMPLE_MP4[:100]
    whole = video_live.http("GET", f"/v1/videos/{video.id}/content")
    assert (
        whole.status_code == 200 and whole.content == SAMPLE_MP4 and whole.headers["accept-ranges"] == "bytes"
    )


def test_multipart_create_forwards_the_input_reference_image(video_live: VideoLive) -> None:
    video = video_live.client().videos.create(
        model=OPENAI_VIDEO_MODEL, prompt="animate this", input_reference=("ref.png", PNG, "image/png")
    )
    upstream = list(video_live.openai_fake.fake.videos.jobs.values())
    assert len(upstream) == 1 and upstream[0].image == PNG and upstream[0].image_type == "image/png"
    assert video_live.wait_status(video.id, ("completed",)).status == "completed"


def test_veo_route_generates_through_the_long_running_operation(video_live: VideoLive) -> None:
    client = video_live.client()
    video = client.videos.create(
        model=VEO_MODEL,
        prompt="a fox",
        seconds="8",
        size="1280x720",
        input_reference=("f.png", PNG, "image/png"),
    )
    done = video_live.wait_status(video.id, ("completed", "failed"))
    assert done.status == "completed", done.error
    (operation,) = video_live.gemini_fake.fake.veo.operations.values()
    assert operation.parameters == {"durationSeconds": 8, "aspectRatio": "16:9", "resolution": "720p"}
    assert operation.image is not None and operation.image["mimeType"] == "image/png"
    assert client.videos.download_content(video.id).content == SAMPLE_MP4
    assert [c["amount_nano"] for c in wait_for(video_live.charges)] == [-8 * parse_usd(VEO_PRICE)]


def test_veo_refuses_a_size_it_cannot_make(video_live: VideoLive) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        video_live.client().videos.create(model=VEO_MODEL, prompt="x", size="1024x1792")
    assert "1280x720" in str(caught.value)
    assert video_live.available() == GRANT / 1e9


def test_failing_job_releases_the_hold_and_charges_nothing(video_live: VideoLive) -> None:
    video = video_live.client().videos.create(
        model=OPENAI_VIDEO_MODEL, prompt="FAIL on purpose", seconds="12"
    )
    assert video_live.available() == (GRANT - 12 * parse_usd(OPENAI_PRICE)) / 1e9  # held while it runs
    failed = video_live.wait_status(video.id, ("failed",))
    assert failed.error is not None and failed.error.code == "moderation_blocked"
    assert wait_for(lambda: video_live.available() == GRANT / 1e9)
    generation_id = (failed.model_extra or {})["generation_id"]
    record = wait_for(
        lambda: video_live.http("GET", f"/v1/generations?id={generation_id}").json().get("data")
    )
    assert (record["status"], record["cost_nanos"]) == ("failed", 0)
    assert video_live.charges() == []


def test_cancel_stops_the_job_and_bills_nothing(video_live: VideoLive) -> None:
    video = video_live.client().videos.create(model=OPENAI_VIDEO_MODEL, prompt="slow", seconds="8")
    response = video_live.http("POST", f"/v1/videos/{video.id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert wait_for(lambda: video_live.available() == GRANT / 1e9)
    time.sleep(2)  # longer than the fake job takes: it must stay cancelled and unbilled
    assert video_live.client().videos.retrieve(video.id).status == "cancelled"
    assert video_live.charges() == []
    (upstream,) = video_live.openai_fake.fake.videos.jobs.values()
    assert upstream.deleted  # OpenAI has no cancel: the upstream job is deleted


def test_delete_hides_the_job_and_removes_its_content(video_live: VideoLive, tmp_path: Path) -> None:
    client = video_live.client()
    video = client.videos.create(model=OPENAI_VIDEO_MODEL, prompt="delete me")
    video_live.wait_status(video.id, ("completed",))
    stored = tmp_path / "data" / "videos" / f"{video.id}.mp4"
    assert stored.read_bytes() == SAMPLE_MP4
    deleted = client.videos.delete(video.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (video.id, True, "video.deleted")
    assert not stored.exists()
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    assert list(client.videos.list()) == []


def test_another_workspace_sees_404(video_live: VideoLive) -> None:
    video = video_live.client().videos.create(model=OPENAI_VIDEO_MODEL, prompt="mine")
    other_key, _ = video_live.admin.create_key(workspace="other")
    wait_for(lambda: video_live.http("GET", "/v1/credits", key=other_key).status_code == 200)
    other = video_live.client(other_key)
    with pytest.raises(openai.NotFoundError):
        other.videos.retrieve(video.id)
    for method, suffix in (("GET", "/content"), ("POST", "/cancel"), ("DELETE", "")):
        assert video_live.http(method, f"/v1/videos/{video.id}{suffix}", key=other_key).status_code == 404
    assert list(other.videos.list()) == []
    assert video_live.client().videos.retrieve(video.id).status != "cancelled"


def test_paid_video_without_credits_is_402_and_bad_input_is_400(video_live: VideoLive) -> None:
    broke_key, _ = video_live.admin.create_key(workspace="broke")
    wait_for(lambda: video_live.http("GET", "/v1/credits", key=broke_key).status_code == 200)
    with pytest.raises(openai.APIStatusError) as caught:
        video_live.client(broke_key).videos.create(model=OPENAI_VIDEO_MODEL, prompt="x")
    assert caught.value.status_code == 402
    for body, param in (({"prompt": "x"}, "model"), ({"model": OPENAI_VIDEO_MODEL}, "prompt")):
        response = video_live.http("POST", "/v1/videos", json=body)
        assert response.status_code == 400 and response.json()["error"]["param"] == param
    chat_model = video_live.http("POST", "/v1/videos", json={"model": "openai/gpt-4o-mini", "prompt": "x"})
    assert chat_model.status_code in (400, 404)
    remix = video_live.http("POST", "/v1/videos/video_x/remix", json={"prompt": "x"})
    assert remix.status_code == 400 and "not supported" in remix.json()["error"]["message"]


def test_list_pages_with_after_and_limit(video_live: VideoLive) -> None:
    client = video_live.client()
    ids = [client.videos.create(model=OPENAI_VIDEO_MODEL, prompt=f"clip {i}").id for i in range(3)]
    page = client.videos.list(limit=2)
    assert [v.id for v in page.data] == ids[::-1][:2] and page.has_more
    assert [v.id for v in client.videos.list()] == ids[::-1]  # auto-pagination follows last_id
    assert [v.id for v in client.videos.list(order="asc", limit=100)] == ids
