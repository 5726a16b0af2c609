"""Models, key, credits, health, key revocation and the no-database hot path."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import event

from aistats_gateway.store.direct_sqlite import DirectSqliteStore
from tests.e2e_fixtures import Live
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.harness import Admin, GatewayServer, fake_provider_config, gateway_settings, wait_for

FREE = "google/gemma-3-27b:free"


def test_models_list_includes_builtin_and_configured_models_with_pricing(live: Live) -> None:
    models = {m.id: m for m in live.client().models.list()}
    assert FREE in models and "openai/gpt-4o" in models
    paid = models["openai/gpt-4o-mini"].model_dump()
    assert paid["object"] == "model" and paid["owned_by"] == "openai"
    assert paid["pricing"]["input"] == "0.15" and paid["pricing"]["output"] == "0.6"
    assert paid["context_length"] > 0 and paid["available"] is True
    assert models["openai/gpt-4o"].model_dump()["available"] is False


def test_model_retrieve_and_data_models_status(live: Live) -> None:
    assert live.client().models.retrieve(FREE).id == FREE
    with httpx.Client(base_url=live.gateway.base_url) as http:
        found = http.get("/v1/data/models", params={"model_id": FREE}).json()
        missing = http.get("/v1/data/models", params={"model_id": "no/such"}).json()
        inactive = http.get("/v1/data/models", params={"model_id": "openai/gpt-4o"}).json()
    assert found["models"][0]["model_id"] == FREE and found["models"][0]["status"] == "active"
    assert missing == {"models": []}
    assert inactive["models"][0]["status"] == "inactive"


def test_key_endpoint_reports_this_keys_usage(live: Live) -> None:
    client = live.client()
    client.responses.create(model=FREE, input="count me")
    wait_for(lambda: live.gateway.state.writer.queue_depth == 0)
    time.sleep(0.1)
    data = client.get("/key", cast_to=httpx.Response).json()["data"]
    assert data["kid"] == live.kid and data["name"] == "test"
    assert data["usage"]["requests"] >= 1 and data["is_free_tier"] is True


def test_health_is_ready(live: Live) -> None:
    body = httpx.get(f"{live.gateway.base_url}/healthz").json()
    assert body["status"] == "ok" and body["ready"] is True and body["live"] is True


def test_revoked_key_is_rejected_within_one_second(live: Live) -> None:
    client = live.client()
    client.responses.create(model=FREE, input="still valid")
    assert live.admin.run(lambda store: store.revoke_api_key(live.kid)) is True
    revoked_at = time.monotonic()

    def rejected() -> bool:
        try:
            client.get("/credits", cast_to=httpx.Response)
        except openai.AuthenticationError:
            return True
        return False

    wait_for(rejected, timeout=1.0, interval=0.05)
    assert time.monotonic() - revoked_at < 1.0


def test_new_key_is_accepted_without_restart(live: Live) -> None:
    key, _ = live.admin.create_key(name="later")
    wait_for(lambda: _accepted(live, key), timeout=1.5)


def _accepted(live: Live, key: str) -> bool:
    try:
        live.client(key).get("/credits", cast_to=httpx.Response)
    except openai.AuthenticationError:
        return False
    return True


def test_authenticated_request_makes_no_database_round_trip_before_the_upstream_call(
    tmp_path: Path, fake_server: FakeOpenAIServer
) -> None:
    settings = gateway_settings(tmp_path, fake_provider_config(fake_server.base_url))
    # The video job runner's background polls are pushed out of the window too.
    settings = dataclasses.replace(settings, videos=dataclasses.replace(settings.videos, tick_s=3600))
    admin = Admin(settings)
    key, _ = admin.create_key()
    admin.grant(1_000_000_000)
    # Refreshes are pushed out of the window so only the request itself could touch the database.
    with GatewayServer(settings, refresh_interval=3600) as gateway:
        wait_for(lambda: gateway.app.state.video_runner.passes >= 1)  # its start-up pass is done
        statements: list[str] = []
        event.listen(
            gateway.state.store.engine.sync_engine,
            "before_cursor_execute",
            lambda conn, cursor, statement, *rest: statements.append(statement),
        )
        if isinstance(gateway.state.store, DirectSqliteStore):  # usage batches and reloads: own thread
            gateway.state.store.trace(statements.append)
        fake_server.fake.enqueue(Behaviour(delay=0.5))
        done = threading.Event()

        def call() -> None:
            gateway.openai(key).chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            done.set()

        thread = threading.Thread(target=call)
        thread.start()
        wait_for(lambda: fake_server.fake.requests, timeout=5)
        at_upstream = list(statements)
        thread.join(timeout=10)
        assert done.is_set()
        assert at_upstream == [], f"database statements before the upstream call: {at_upstream}"
        # The counter works: the usage record and ledger entry are written behind the response.
        wait_for(lambda: any("generations" in s for s in statements), timeout=5)


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_credits_needs_a_key(live: Live, header: str) -> None:
    response = httpx.get(f"{live.gateway.base_url}/v1/credits")
    assert response.status_code == 401 and response.json()["reason"] == "authentication_error"
    value = f"Bearer {live.key}" if header == "authorization" else live.key
    ok = httpx.get(f"{live.gateway.base_url}/v1/credits", headers={header: value})
    assert ok.status_code == 200 and ok.json()["balance"] == 0


def test_shutdown_drains_queued_records(tmp_path: Path, fake_server: FakeOpenAIServer) -> None:
    settings = gateway_settings(tmp_path, fake_provider_config(fake_server.base_url))
    admin = Admin(settings)
    key, _ = admin.create_key()
    ids = []
    with GatewayServer(settings) as gateway:
        client = gateway.openai(key)
        for _ in range(20):
            ids.append(
                client.responses.with_raw_response.create(model=FREE, input="x").headers["x-generation-id"]
            )
    stored = admin.run(lambda store: _all(store, ids))
    assert all(stored)


async def _all(store, ids):  # type: ignore[no-untyped-def]
    return [await store.get_generation(i) is not None for i in ids]
