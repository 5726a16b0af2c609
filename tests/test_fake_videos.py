"""The fake video providers speak the real wire formats: checked with the openai and google-genai SDKs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from google import genai
from google.genai import types

from tests.fakes.gemini_server import FakeGemini, FakeGeminiServer
from tests.fakes.media import SAMPLE_MP4
from tests.fakes.openai_server import FakeOpenAI, FakeOpenAIServer


@pytest.fixture
def openai_fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(FakeOpenAI(api_key="sk-fake")) as server:
        server.fake.videos.queued_s, server.fake.videos.duration_s = 0.2, 0.8
        yield server


@pytest.fixture
def gemini_fake() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(FakeGemini(api_key="gm-fake")) as server:
        server.fake.veo.duration_s = 0.6
        yield server


def test_openai_sdk_drives_a_fake_video_job_to_completion(openai_fake: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=openai_fake.base_url, api_key="sk-fake", max_retries=0)
    video = client.videos.create(model="sora-2", prompt="a lighthouse at dawn", seconds="4", size="1280x720")
    assert (video.status, video.progress, video.seconds, video.size) == ("queued", 0, "4", "1280x720")
    seen = []
    while video.status in ("queued", "in_progress"):
        time.sleep(0.05)
        video = client.videos.retrieve(video.id)
        seen.append((video.status, video.progress))
    assert video.status == "completed" and video.progress == 100
    progress = [p for status, p in seen if status == "in_progress"]
    assert progress and progress == sorted(progress) and 0 < progress[0] < 100
    assert client.videos.download_content(video.id).content == SAMPLE_MP4
    assert SAMPLE_MP4[4:8] == b"ftyp"
    assert [v.id for v in client.videos.list()] == [video.id]
    assert client.videos.delete(video.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)


def test_fake_openai_video_fails_a_scripted_prompt_and_rejects_bad_seconds(
    openai_fake: FakeOpenAIServer,
) -> None:
    client = openai.OpenAI(base_url=openai_fake.base_url, api_key="sk-fake", max_retries=0)
    video = client.videos.create(model="sora-2", prompt="FAIL please")
    time.sleep(0.3)
    video = client.videos.retrieve(video.id)
    assert video.status == "failed" and video.error is not None and video.error.code == "moderation_blocked"
    with pytest.raises(openai.BadRequestError):
        client.videos.create(model="sora-2", prompt="x", seconds="5")  # type: ignore[arg-type]


def test_google_genai_polls_a_fake_veo_operation_and_downloads_the_video(
    gemini_fake: FakeGeminiServer,
) -> None:
    # google-genai 3.6 no longer sends predictLongRunning in Gemini API mode, so the job is
    # created over raw HTTP (the wire the gateway speaks) and the SDK polls and downloads it.
    created = httpx.post(
        f"{gemini_fake.base_url}/v1beta/models/veo-3.1-generate-preview:predictLongRunning",
        headers={"x-goog-api-key": "gm-fake"},
        json={
            "instances": [{"prompt": "a fox"}],
            "parameters": {"durationSeconds": 8, "aspectRatio": "16:9"},
        },
    )
    assert created.status_code == 200
    name = created.json()["name"]
    client = genai.Client(
        api_key="gm-fake", http_options=types.HttpOptions(base_url=gemini_fake.base_url, api_version="v1beta")
    )
    operation = types.GenerateVideosOperation(name=name)  # type: ignore[call-arg]
    operation = client.operations.get(operation)
    assert not operation.done
    deadline = time.monotonic() + 5
    while not operation.done and time.monotonic() < deadline:
        time.sleep(0.1)
        operation = client.operations.get(operation)
    assert operation.done and operation.result is not None
    generated = operation.result.generated_videos
    assert generated and generated[0].video is not None
    assert client.files.download(file=generated[0].video) == SAMPLE_MP4


def test_fake_veo_reports_a_failed_operation(gemini_fake: FakeGeminiServer) -> None:
    created = httpx.post(
        f"{gemini_fake.base_url}/v1beta/models/veo-3.1-generate-preview:predictLongRunning",
        headers={"x-goog-api-key": "gm-fake"},
        json={"instances": [{"prompt": "FAIL"}]},
    ).json()
    client = genai.Client(
        api_key="gm-fake", http_options=types.HttpOptions(base_url=gemini_fake.base_url, api_version="v1beta")
    )
    time.sleep(0.7)
    pending = types.GenerateVideosOperation(name=created["name"])  # type: ignore[call-arg]
    operation = client.operations.get(pending)
    assert operation.done and operation.error and operation.error["status"] == "INVALID_ARGUMENT"
