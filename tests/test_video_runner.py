"""The video job runner: durable across restarts, bills once, and never polls one job twice at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aistats_gateway.jobs.records import VideoJob, new_video_id
from aistats_gateway.jobs.store import VideoJobStore, utcnow
from aistats_gateway.money import parse_usd
from aistats_gateway.settings import Settings
from aistats_gateway.store.db import create_engine
from aistats_gateway.store.migrate import migrate
from aistats_gateway.store.repositories import Store
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Admin, GatewayServer, gateway_settings, wait_for
from tests.video_fixtures import OPENAI_PRICE, OPENAI_VIDEO_MODEL, start_fakes, video_config

GRANT = parse_usd("10")


@pytest.fixture
def fakes() -> Iterator[tuple[FakeOpenAIServer, FakeGeminiServer]]:
    openai_fake, gemini_fake = start_fakes()
    try:
        yield openai_fake, gemini_fake
    finally:
        openai_fake.stop()
        gemini_fake.stop()


def _create(gateway: GatewayServer, key: str, prompt: str, seconds: str = "4") -> dict[str, Any]:
    response = httpx.post(
        f"{gateway.base_url}/v1/videos",
        headers={"authorization": f"Bearer {key}"},
        json={"model": OPENAI_VIDEO_MODEL, "prompt": prompt, "seconds": seconds},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _job(admin: Admin, job_id: str) -> VideoJob:
    job = admin.run(lambda store: VideoJobStore(store.engine).get(job_id))
    assert job is not None
    return job


def _charges(admin: Admin, workspace_id: str) -> list[dict[str, Any]]:
    return [e for e in admin.run(lambda store: store.list_ledger(workspace_id)) if e["kind"] == "charge"]


def test_a_job_survives_a_restart_and_is_billed_once(
    tmp_path: Path, fakes: tuple[FakeOpenAIServer, FakeGeminiServer]
) -> None:
    openai_fake, gemini_fake = fakes
    openai_fake.fake.videos.duration_s = 3.0
    settings = gateway_settings(tmp_path, video_config(openai_fake.base_url, gemini_fake.base_url))
    admin = Admin(settings)
    key, _ = admin.create_key()
    admin.grant(GRANT)
    workspace_id = admin.workspace_id()
    with GatewayServer(settings) as first:
        video = _create(first, key, "long take")
        wait_for(lambda: _job(admin, video["id"]).status == "in_progress", timeout=10)
    assert _job(admin, video["id"]).status == "in_progress"  # stopped mid-job
    polls_before = sum(openai_fake.fake.videos.polls.values())

    with GatewayServer(settings):  # a new process on the same database carries the job on
        job = wait_for(lambda: (j := _job(admin, video["id"])).settled_at is not None and j, timeout=15)
    assert job.status == "completed" and job.content_path and Path(job.content_path).exists()
    assert sum(openai_fake.fake.videos.polls.values()) > polls_before
    cost = 4 * parse_usd(OPENAI_PRICE)
    assert [c["amount_nano"] for c in _charges(admin, workspace_id)] == [-cost]

    # A crash after the charge was written but before the job was marked settled: the next
    # runner settles again, and the ledger's unique generation id keeps it to one charge.
    admin.run(lambda store: VideoJobStore(store.engine).update(video["id"], settled_at=None))
    with GatewayServer(settings):
        wait_for(lambda: _job(admin, video["id"]).settled_at is not None, timeout=10)
    assert [c["amount_nano"] for c in _charges(admin, workspace_id)] == [-cost]
    wallet = admin.run(lambda store: store.get_wallet(workspace_id))
    assert wallet.balance_nano == GRANT - cost


def test_two_gateways_on_one_database_never_poll_a_job_at_once(
    tmp_path: Path, fakes: tuple[FakeOpenAIServer, FakeGeminiServer]
) -> None:
    openai_fake, gemini_fake = fakes
    videos = openai_fake.fake.videos
    videos.duration_s, videos.poll_delay_s = 2.0, 0.15  # slow polls: overlaps would show
    # Leases outlast every step; polls are due every 0.1-0.2 s on both runners.
    config = video_config(openai_fake.base_url, gemini_fake.base_url, poll_max_s=0.2, tick_s=0.05)
    settings = gateway_settings(tmp_path, config)
    admin = Admin(settings)
    key, _ = admin.create_key()
    admin.grant(GRANT)
    workspace_id = admin.workspace_id()
    with GatewayServer(settings) as one, GatewayServer(settings) as two:
        ids = [_create(gateway, key, f"clip {i}")["id"] for i, gateway in enumerate([one, two, one, two])]
        wait_for(lambda: all(_job(admin, i).settled_at is not None for i in ids), timeout=20)
    assert videos.overlaps == 0
    upstream = {str(_job(admin, i).upstream_id) for i in ids}
    assert all(videos.polls[u] >= 3 for u in upstream)  # each job was polled repeatedly...
    assert all(_job(admin, i).status == "completed" for i in ids)
    charges = _charges(admin, workspace_id)
    assert len(charges) == 4 and len({c["generation_id"] for c in charges}) == 4  # ...and billed once


async def _race_claims(database_url: str) -> list[bool]:
    store = Store(create_engine(database_url))
    await migrate(store.engine)
    jobs = VideoJobStore(store.engine)
    now = utcnow()
    job = VideoJob(
        id=new_video_id(), workspace_id="ws_x", key_id=None, generation_id="gen_race", model="m",
        provider="p", upstream_model="u", upstream_id="up", status="in_progress", progress=0, seconds=4,
        size="720x1280", error=None, request={"prompt": "x"}, reserved_nano=0, cost_nano=0,
        content_path=None, content_type=None, content_bytes=None, created_at=now, updated_at=now,
        completed_at=None, expires_at=None, next_poll_at=now, poll_attempts=0, lease_owner=None,
        lease_until=None, cancel_requested=False, settled_at=None, deleted_at=None,
    )  # fmt: skip
    await jobs.insert(job)
    try:
        results = await asyncio.gather(*(jobs.claim(job.id, f"runner-{i}", 30) for i in range(8)))
        assert await jobs.due(utcnow(), 10) == []  # leased: nobody else sees it as due
        winner = next(r for r in results if r is not None)
        assert await jobs.release(winner.id, "someone-else") is False  # only the owner releases
        assert await jobs.release(winner.id, str(winner.lease_owner))
        assert await jobs.due(utcnow(), 10) == [job.id]
        return [r is not None for r in results]
    finally:
        await store.engine.dispose()


def test_a_lease_is_claimed_by_exactly_one_runner(database_url: str) -> None:
    assert sum(asyncio.run(_race_claims(database_url))) == 1


def test_settings_reject_a_bad_videos_block(tmp_path: Path) -> None:
    from aistats_gateway.settings import ConfigError

    with pytest.raises(ConfigError, match=r"videos\.poll_max_s"):
        gateway_settings(tmp_path, {"videos": {"poll_max_s": 0}})
    settings: Settings = gateway_settings(tmp_path, {"videos": {"retention_days": 1, "storage_dir": "clips"}})
    assert settings.videos.retention_days == 1 and settings.videos.storage_dir == tmp_path / "clips"
