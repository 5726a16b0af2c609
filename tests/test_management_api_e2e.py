"""The management API over real sockets: keys, workspaces, credit grants and the ledger.

The gateway runs under uvicorn (tests/harness.py) in front of the fake OpenAI provider; the
management calls go through httpx, model calls through the official openai SDK.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from aistats_gateway.services import KeyService
from aistats_gateway.store.repositories import Store
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import TEST_PEPPER, Admin, GatewayServer, fake_provider_config, gateway_settings, wait_for

ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"
PAID = "openai/gpt-4o-mini"


@dataclass
class Mgmt:
    gateway: GatewayServer
    admin: Admin
    http: httpx.Client
    default_id: str
    management_key: str  # a management key of 'default', made through the service layer (as the CLI does)

    def as_admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {ADMIN_TOKEN}"}

    def as_key(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}


@pytest.fixture
def mgmt(tmp_path: Path, fake_server: FakeOpenAIServer) -> Iterator[Mgmt]:
    config = fake_provider_config(fake_server.base_url, read=2.0)
    config["admin_token"] = ADMIN_TOKEN
    settings = gateway_settings(tmp_path, config)
    admin = Admin(settings)
    default_id = admin.workspace_id("default")

    async def make_management_key(store: Store) -> str:
        created = await KeyService(store, TEST_PEPPER.encode()).create(
            default_id, name="ops", kind="management"
        )
        return created.key

    management_key = admin.run(make_management_key)
    with GatewayServer(settings) as gateway, httpx.Client(base_url=gateway.base_url, timeout=10) as http:
        yield Mgmt(gateway, admin, http, default_id, management_key)


def _error(response: httpx.Response, status: int, reason: str, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason and body["error"]["type"] == reason and body["status_code"] == status
    if param is not None:
        assert body["error"]["param"] == param, body
    return body


def _accepted(client: openai.OpenAI) -> bool:
    """Whether the gateway authenticates this key (a limit refusal still means it did)."""
    try:
        client.chat.completions.create(model=PAID, messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError:
        return False
    except openai.RateLimitError:
        return True
    return True


def _rate_limited(client: openai.OpenAI) -> bool:
    try:
        client.chat.completions.create(model=PAID, messages=[{"role": "user", "content": "hi"}])
    except openai.RateLimitError:
        return True
    return False


def test_management_key_issues_limits_and_revokes_an_inference_key(
    mgmt: Mgmt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http, ops = mgmt.http, mgmt.as_key(mgmt.management_key)
    granted = http.post(
        "/v1/credits/grants",
        headers=mgmt.as_admin(),
        json={"workspace_id": mgmt.default_id, "amount_usd": "1"},
    )
    assert granted.status_code == 201 and granted.json()["balance_usd"] == "1"

    limits = {"requests_per_minute": 100, "spend_usd": {"daily": "0.50"}, "allowed_models": ["openai/*"]}
    created = http.post("/v1/keys", headers=ops, json={"name": "app", "limits": limits})
    assert created.status_code == 201, created.text
    body = created.json()
    key, kid = body["key"], body["id"]
    assert key.startswith(f"aistats_v1_sk_{kid}_") and created.headers["cache-control"] == "no-store"
    assert (
        body["workspace_id"] == mgmt.default_id
        and body["kind"] == "inference"
        and body["object"] == "api_key"
    )
    assert body["limits"]["spend_usd"]["daily"] == "0.5" and body["limits"]["allowed_models"] == ["openai/*"]

    client = mgmt.gateway.openai(key)
    wait_for(lambda: _accepted(client), timeout=2.0)
    reply = client.chat.completions.create(model=PAID, messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content

    patched = http.patch(f"/v1/keys/{kid}", headers=ops, json={"limits": {"requests_per_minute": 1}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["limits"]["requests_per_minute"] == 1
    assert patched.json()["limits"]["allowed_models"] == ["openai/*"], "a PATCH changes only what it names"
    assert patched.json()["updated_at"] is not None
    # The running gateway picks the edit up: one request a minute, and this key has used more.
    wait_for(lambda: _rate_limited(client), timeout=2.0, interval=0.1)

    shown = http.get(f"/v1/keys/{kid}", headers=ops).json()
    assert shown["name"] == "app" and shown["usage"]["requests"] >= 0 and shown["status"] == "active"
    listed = http.get("/v1/keys", headers=ops).json()
    assert {row["id"] for row in listed["data"]} >= {kid} and listed["object"] == "list"

    revoked = http.delete(f"/v1/keys/{kid}", headers=ops)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    started = time.monotonic()
    wait_for(lambda: not _accepted(client), timeout=1.5, interval=0.05)
    assert time.monotonic() - started < 1.2
    again = http.delete(f"/v1/keys/{kid}", headers=ops)
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert kid not in {row["id"] for row in http.get("/v1/keys", headers=ops).json()["data"]}
    with_revoked = http.get("/v1/keys", headers=ops, params={"include_revoked": "true"}).json()["data"]
    assert kid in {row["id"] for row in with_revoked}
    _error(http.patch(f"/v1/keys/{kid}", headers=ops, json={"name": "x"}), 400, "validation_error")

    # The secret is shown once: never in list/get output, nor its hash, nor in any log line.
    secret = key.rsplit("_", 1)[1]
    stored = mgmt.admin.run(lambda store: store.get_api_key(kid))
    for text in (
        http.get("/v1/keys", headers=ops, params={"include_revoked": "true"}).text,
        http.get(f"/v1/keys/{kid}", headers=ops).text,
        http.get("/v1/keys", headers=mgmt.as_admin(), params={"include_revoked": "true"}).text,
    ):
        assert secret not in text and stored.secret_hash not in text and "secret" not in text
    assert secret not in caplog.text and mgmt.management_key not in caplog.text


def test_scopes_admin_management_and_inference_keys(mgmt: Mgmt) -> None:
    http, ops, root = mgmt.http, mgmt.as_key(mgmt.management_key), mgmt.as_admin()
    made = http.post("/v1/workspaces", headers=root, json={"name": "other"})
    assert made.status_code == 201 and made.json()["wallet"]["balance_usd"] == "0"
    other_id = made.json()["id"]
    theirs = http.post("/v1/keys", headers=root, json={"workspace_id": other_id, "name": "theirs"}).json()

    # A management key sees only its own workspace; another one's objects answer 404.
    _error(http.get(f"/v1/workspaces/{other_id}", headers=ops), 404, "not_found_error")
    _error(http.get("/v1/keys", headers=ops, params={"workspace_id": other_id}), 404, "not_found_error")
    _error(http.get(f"/v1/keys/{theirs['id']}", headers=ops), 404, "not_found_error")
    _error(http.delete(f"/v1/keys/{theirs['id']}", headers=ops), 404, "not_found_error")
    _error(http.get("/v1/ledger", headers=ops, params={"workspace_id": other_id}), 404, "not_found_error")
    own = http.get("/v1/workspaces", headers=ops).json()["data"]
    assert [ws["id"] for ws in own] == [mgmt.default_id]
    assert http.get(f"/v1/workspaces/{mgmt.default_id}", headers=ops).json()["wallet"]["currency"] == "USD"
    # ... and cannot mint money or create workspaces.
    _error(
        http.post(
            "/v1/credits/grants", headers=ops, json={"workspace_id": mgmt.default_id, "amount_usd": "5"}
        ),
        403,
        "authorization_error",
    )
    _error(http.post("/v1/workspaces", headers=ops, json={"name": "mine"}), 403, "authorization_error")
    # A management key may create another management key in its workspace, and it cannot call models.
    sibling = http.post("/v1/keys", headers=ops, json={"kind": "management"}).json()
    assert sibling["kind"] == "management" and sibling["workspace_id"] == mgmt.default_id

    # The admin sees every workspace.
    names = {ws["name"] for ws in http.get("/v1/workspaces", headers=root).json()["data"]}
    assert names == {"default", "other"}
    assert theirs["id"] in {row["id"] for row in http.get("/v1/keys", headers=root).json()["data"]}

    # An inference key cannot manage; no key, or a wrong admin token, is 401.
    inference = http.post("/v1/keys", headers=ops, json={}).json()["key"]
    wait_for(lambda: http.get("/v1/keys", headers=mgmt.as_key(inference)).status_code != 401, timeout=2)
    for method, path in (("GET", "/v1/keys"), ("GET", "/v1/ledger"), ("GET", "/v1/workspaces")):
        body = _error(http.request(method, path, headers=mgmt.as_key(inference)), 403, "authorization_error")
        assert body["error"]["code"] == "wrong_key_kind"
    _error(http.get("/v1/keys"), 401, "authentication_error")
    _error(http.get("/v1/keys", headers={"authorization": "Bearer " + "x" * 40}), 401, "authentication_error")
    with pytest.raises(openai.PermissionDeniedError):
        mgmt.gateway.openai(mgmt.management_key).chat.completions.create(
            model=PAID, messages=[{"role": "user", "content": "hi"}]
        )


def test_validation_errors_name_the_field(mgmt: Mgmt) -> None:
    http, root, ops = mgmt.http, mgmt.as_admin(), mgmt.as_key(mgmt.management_key)
    _error(http.post("/v1/keys", headers=root, json={}), 400, "validation_error", "workspace_id")
    _error(http.post("/v1/keys", headers=ops, json={"nmae": "typo"}), 400, "validation_error", "nmae")
    bad_limits = {"limits": {"requests_per_minute": -1}}
    _error(
        http.post("/v1/keys", headers=ops, json=bad_limits),
        400,
        "validation_error",
        "limits.requests_per_minute",
    )
    bad_spend = {"limits": {"spend_usd": {"weekly": "1"}}}
    _error(
        http.post("/v1/keys", headers=ops, json=bad_spend), 400, "validation_error", "limits.spend_usd.weekly"
    )
    _error(http.post("/v1/keys", headers=ops, json={"kind": "root"}), 400, "validation_error", "kind")
    _error(http.post("/v1/keys", headers=ops, content=b"{not json"), 400, "validation_error")
    _error(http.post("/v1/keys", headers=root, json={"workspace_id": "ws_nope"}), 404, "not_found_error")
    _error(http.get("/v1/keys/nosuchkid000", headers=ops), 404, "not_found_error")
    _error(http.get("/v1/keys", headers=ops, params={"limit": "x"}), 400, "validation_error", "limit")
    _error(
        http.post("/v1/workspaces", headers=root, json={"name": "default"}), 400, "validation_error", "name"
    )
    grant = {"workspace_id": mgmt.default_id, "amount_usd": 0.1}
    _error(http.post("/v1/credits/grants", headers=root, json=grant), 400, "validation_error", "amount_usd")
    _error(http.get("/v1/ledger", headers=ops, params={"kind": "refund"}), 400, "validation_error", "kind")
    _error(http.get("/v1/ledger", headers=ops, params={"limit": "0"}), 400, "validation_error", "limit")
    _error(http.get("/v1/ledger", headers=ops, params={"format": "xml"}), 400, "validation_error", "format")


def test_grants_are_idempotent_and_the_ledger_pages_and_exports_exactly(mgmt: Mgmt) -> None:
    http, root, ops = mgmt.http, mgmt.as_admin(), mgmt.as_key(mgmt.management_key)
    grant = {"workspace_id": "default", "amount_usd": "2.000000001", "note": "welcome, team"}
    first = http.post("/v1/credits/grants", headers={**root, "idempotency-key": "g-1"}, json=grant)
    retry = http.post("/v1/credits/grants", headers={**root, "idempotency-key": "g-1"}, json=grant)
    assert first.status_code == 201 and retry.status_code == 200, retry.text
    assert retry.headers["idempotent-replayed"] == "true" and retry.json()["replayed"] is True
    assert retry.json()["id"] == first.json()["id"] and retry.json()["balance_usd"] == "2.000000001"
    reused = {**grant, "amount_usd": "3"}
    body = _error(
        http.post("/v1/credits/grants", headers={**root, "idempotency-key": "g-1"}, json=reused),
        400,
        "validation_error",
        "Idempotency-Key",
    )
    assert body["error"]["code"] == "idempotency_key_reused"
    for amount in ("0.25", "0.000000001", "7"):
        assert http.post("/v1/credits/grants", headers=root, json={**grant, "amount_usd": amount}).is_success

    # One paid call: a charge entry is written behind the response.
    key = http.post("/v1/keys", headers=ops, json={"name": "spender"}).json()["key"]
    client = mgmt.gateway.openai(key)
    wait_for(lambda: _accepted(client), timeout=2.0)
    wait_for(lambda: mgmt.gateway.state.writer.queue_depth == 0)

    def charged() -> list[dict[str, Any]]:
        return list(http.get("/v1/ledger", headers=ops, params={"kind": "charge"}).json()["data"])

    charges = wait_for(charged, timeout=3)
    assert (
        len(charges) == 1
        and charges[0]["amount_nanos"] < 0
        and charges[0]["generation_id"].startswith("gen_")
    )

    pages: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        page = http.get("/v1/ledger", headers=ops, params=params).json()
        pages.extend(page["data"])
        if not page["has_more"]:
            break
        after = page["next_cursor"]
    assert len(pages) == 5 and [e["id"] for e in pages] == sorted(e["id"] for e in pages)
    assert [e["kind"] for e in pages] == ["grant"] * 4 + ["charge"]
    newest = http.get("/v1/ledger", headers=ops, params={"order": "desc", "limit": 1}).json()["data"]
    assert newest[0]["id"] == pages[-1]["id"]

    exported = http.get("/v1/ledger", headers=ops, params={"format": "csv"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    by_accept = http.get(
        "/v1/ledger", headers={**root, "accept": "text/csv"}, params={"workspace_id": "default"}
    )
    assert by_accept.text == exported.text
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0]) == [
        "id",
        "created_at",
        "workspace_id",
        "kind",
        "amount_usd",
        "amount_nanos",
        "generation_id",
        "note",
    ]
    assert [int(row["id"]) for row in rows] == [e["id"] for e in pages]
    for row, entry in zip(rows, pages, strict=True):
        assert row["amount_usd"] == entry["amount_usd"] and int(row["amount_nanos"]) == entry["amount_nanos"]
        assert Decimal(row["amount_usd"]) * 10**9 == int(row["amount_nanos"])
        assert row["created_at"] == entry["created_at"] and row["created_at"].endswith("Z")
    assert rows[0]["note"] == "welcome, team"
    assert [row["amount_usd"] for row in rows[:4]] == ["2.000000001", "0.25", "0.000000001", "7"]
    balance = http.get("/v1/workspaces/default", headers=root).json()["wallet"]["balance_nanos"]
    assert sum(int(row["amount_nanos"]) for row in rows) == balance
