"""Two gateway processes on one Postgres database: their video runners never poll a job at once,
and every job is completed and charged exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from aistats_gateway.jobs.store import VideoJobStore
from aistats_gateway.money import parse_usd
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import TEST_PEPPER, Admin, gateway_settings, wait_for
from tests.test_cli import _env, _free_port
from tests.video_fixtures import OPENAI_VIDEO_MODEL, start_fakes, video_config

SERVE = [sys.executable, "-m", "aistats_gateway", "serve"]


@pytest.fixture
def fakes() -> Iterator[tuple[FakeOpenAIServer, FakeGeminiServer]]:
    openai_fake, gemini_fake = start_fakes()
    try:
        yield openai_fake, gemini_fake
    finally:
        openai_fake.stop()
        gemini_fake.stop()


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.timeout(120)
def test_two_runner_processes_never_poll_one_job_at_once(
    tmp_path: Path, fakes: tuple[FakeOpenAIServer, FakeGeminiServer], postgres_url: str
) -> None:
    openai_fake, gemini_fake = fakes
    videos = openai_fake.fake.videos
    videos.duration_s, videos.poll_delay_s = 2.0, 0.15  # slow polls: an overlap would show
    config = video_config(openai_fake.base_url, gemini_fake.base_url, poll_max_s=0.2, tick_s=0.05)
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    admin = Admin(gateway_settings(tmp_path, config, database_url=postgres_url))
    key, _ = admin.create_key()
    admin.grant(parse_usd("10"))
    workspace_id = admin.workspace_id()
    env = {**_env(tmp_path), "AISTATS_DATABASE_URL": postgres_url, "AISTATS_KEY_PEPPER": TEST_PEPPER}
    ports = [_free_port(), _free_port()]
    processes = [
        subprocess.Popen(
            [*SERVE, "--config", str(config_path), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"gateway-{port}.log").open("w"),
            start_new_session=True,
        )
        for port in ports
    ]
    try:
        for port in ports:
            wait_for(lambda p=port: _up(p), timeout=30, interval=0.2)
        ids = []
        for i in range(4):
            created = httpx.post(
                f"http://127.0.0.1:{ports[i % 2]}/v1/videos",
                headers={"authorization": f"Bearer {key}"},
                json={"model": OPENAI_VIDEO_MODEL, "prompt": f"clip {i}", "seconds": "4"},
                timeout=10,
            )
            assert created.status_code == 200, created.text
            ids.append(created.json()["id"])

        def job(job_id: str) -> object:
            return admin.run(lambda store: VideoJobStore(store.engine).get(job_id))

        wait_for(lambda: all(getattr(job(i), "settled_at", None) is not None for i in ids), timeout=30)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # never leave a hung gateway behind
                os.killpg(process.pid, signal.SIGKILL)
                raise
    assert videos.overlaps == 0
    assert all(count >= 3 for count in videos.polls.values())  # polled repeatedly, never twice at once
    assert all(getattr(job(i), "status", None) == "completed" for i in ids)
    charges = [e for e in admin.run(lambda store: store.list_ledger(workspace_id)) if e["kind"] == "charge"]
    assert len(charges) == 4 and len({c["generation_id"] for c in charges}) == 4
