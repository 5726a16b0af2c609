"""Shared set-up for the video job tests: fake OpenAI and Veo providers and a gateway config."""

from __future__ import annotations

from typing import Any

from tests.fakes.gemini_server import FakeGemini, FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAI, FakeOpenAIServer

OPENAI_VIDEO_MODEL = "test/video-openai"
VEO_MODEL = "google/veo-3.1"
OPENAI_PRICE = "0.10"  # USD per second
VEO_PRICE = "0.40"
FAST_VIDEOS = {"poll_initial_s": 0.1, "poll_max_s": 0.3, "tick_s": 0.1, "lease_s": 5, "timeout_s": 5}


def start_fakes() -> tuple[FakeOpenAIServer, FakeGeminiServer]:
    openai_server = FakeOpenAIServer(FakeOpenAI(api_key="sk-fake")).start()
    gemini_server = FakeGeminiServer(FakeGemini(api_key="gm-fake")).start()
    return openai_server, gemini_server


def video_config(openai_url: str, gemini_url: str, **videos: Any) -> dict[str, Any]:
    """Providers ``fake`` (OpenAI videos) and ``fake-google`` (Veo); one video model on each."""
    return {
        "providers": {
            "fake": {"type": "openai", "base_url": openai_url, "api_key": "sk-fake"},
            "fake-google": {"type": "google", "base_url": gemini_url, "api_key": "gm-fake"},
        },
        "models": {
            OPENAI_VIDEO_MODEL: {
                "kind": "videos",
                "providers": [
                    {
                        "provider": "fake",
                        "model": "sora-2",
                        "price": {"input": "0", "output": "0", "video_second": OPENAI_PRICE},
                    }
                ],
            },
            VEO_MODEL: {
                "kind": "videos",
                "providers": [
                    {
                        "provider": "fake-google",
                        "model": "veo-3.1-generate-preview",
                        "price": {"input": "0", "output": "0", "video_second": VEO_PRICE},
                    }
                ],
            },
        },
        "videos": {**FAST_VIDEOS, **videos},
    }
