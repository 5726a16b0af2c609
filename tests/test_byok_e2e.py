"""BYOK end to end: a workspace's own provider key is stored through the API, used instead of the
gateway's key (the fake provider checks the header it receives), billed the BYOK fee, and never
shown again: not in API or CLI output, error messages, usage records or logs."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from aistats_gateway.cli import main as cli_main
from aistats_gateway.keys import generate_key
from aistats_gateway.settings import load_settings
from aistats_gateway.store.repositories import Store
from tests.fakes.openai_server import Behaviour, FakeOpenAI, FakeOpenAIServer, openai_error
from tests.harness import TEST_PEPPER, Admin, GatewayServer, wait_for, write_config

BYOK_KEY = "sk-byok-workspace-own-key-7f3a9c2e5b"
GATEWAY_KEY = "sk-gateway-own-key-1d4e8b0a6c"
ADMIN_TOKEN = "admin-token-for-byok-tests-0123456789abcdef"
MASTER = "k1:" + base64.b64encode(os.urandom(32)).decode()
PRICE = {"input": "0.15", "output": "0.60"}  # 150 and 600 nano-USD per token
MODEL = "openai/gpt-4o-mini"


def list_cost(prompt_tokens: int, completion_tokens: int) -> int:
    return prompt_tokens * 150 + completion_tokens * 600


@dataclass
class Byok:
    gateway: GatewayServer
    fake: FakeOpenAI
    admin: Admin
    workspaces: dict[str, str]  # name -> id
    inference: dict[str, str]  # workspace name -> inference key
    management: dict[str, str]  # workspace name -> management key
    seen: list[str]  # every response body read, to check the key never shows

    def http(self, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
        response = httpx.request(
            method,
            self.gateway.base_url + path,
            headers={"authorization": f"Bearer {key}"},
            timeout=10,
            **kwargs,
        )
        self.seen.append(response.text)
        return response

    def chat(self, workspace: str, **kwargs: Any) -> Any:
        client = self.gateway.openai(self.inference[workspace])
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "Reply with: hi"}], **kwargs
        )
        self.seen.append(raw.http_response.text)
        return raw

    def generation(self, workspace: str, generation_id: str) -> dict[str, Any]:
        def read() -> dict[str, Any] | None:
            response = self.http("GET", f"/v1/generations?id={generation_id}", self.inference[workspace])
            return response.json()["data"] if response.status_code == 200 else None

        return wait_for(read)

    def wait_cached(self, workspace: str, present: bool) -> None:
        credentials = self.gateway.state.credentials
        wait_for(lambda: bool(credentials.for_workspace(self.workspaces[workspace])) == present)


def _config(base_url: str, *, gateway_key: str | None, fee: str) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "openai", "base_url": base_url, "timeouts": {"read": 5.0}}
    if gateway_key:
        provider["api_key"] = gateway_key
    return {
        "providers": {"fake": provider},
        "models": {
            MODEL: {
                "max_output_tokens": 100,
                "providers": [{"provider": "fake", "model": "gpt-4o-mini", "price": PRICE}],
            }
        },
        "byok": {"fee_percent": fee},
    }


def _env(tmp_path: Path, master: str | None = MASTER) -> dict[str, str]:
    env = {
        "AISTATS_DATA_DIR": str(tmp_path / "data"),
        "AISTATS_KEY_PEPPER": TEST_PEPPER,
        "AISTATS_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    if master:
        env["AISTATS_BYOK_MASTER_KEYS"] = master
    return env


def _start(
    tmp_path: Path,
    fake_server: FakeOpenAIServer,
    *,
    gateway_key: str | None,
    fee: str,
    master: str | None = MASTER,
) -> Iterator[Byok]:
    config = write_config(tmp_path, _config(fake_server.base_url, gateway_key=gateway_key, fee=fee))
    settings = load_settings(config, env=_env(tmp_path, master))
    admin = Admin(settings)
    workspaces, inference, management = {}, {}, {}
    for name in ("alpha", "beta"):
        workspaces[name] = admin.workspace_id(name)
        inference[name] = admin.create_key(name)[0]
        key = generate_key(TEST_PEPPER.encode())

        async def insert(store: Store, key: Any = key, ws: str = workspaces[name]) -> None:
            await store.insert_api_key(key.kid, ws, "ops", key.secret_hash, kind="management")

        admin.run(insert)
        management[name] = key.key
    with GatewayServer(settings, refresh_interval=0.1) as gateway:
        yield Byok(gateway, fake_server.fake, admin, workspaces, inference, management, [])


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(FakeOpenAI(api_key=GATEWAY_KEY)) as server:
        yield server


@pytest.fixture
def with_fee(tmp_path: Path, fake_server: FakeOpenAIServer) -> Iterator[Byok]:
    """The gateway has its own key for ``fake``; BYOK requests are billed 5 %."""
    yield from _start(tmp_path, fake_server, gateway_key=GATEWAY_KEY, fee="5")


@pytest.fixture
def keyless(tmp_path: Path, fake_server: FakeOpenAIServer) -> Iterator[Byok]:
    """The gateway has no key for ``fake``; BYOK requests are free (fee 0)."""
    yield from _start(tmp_path, fake_server, gateway_key=None, fee="0")


def _assert_no_key_anywhere(byok: Byok, caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for text in [*byok.seen, *texts, caplog.text]:
        assert BYOK_KEY not in text
        assert BYOK_KEY[3:] not in text  # not even without its prefix


def test_a_workspace_key_is_used_and_billed_the_fee_while_others_use_the_gateways(
    with_fee: Byok, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    byok = with_fee
    for name in ("alpha", "beta"):
        byok.admin.grant(10**9, workspace=name)

    created = byok.http(
        "POST",
        "/v1/byok",
        byok.management["alpha"],
        json={"provider": "fake", "api_key": BYOK_KEY, "label": "ours"},
    )
    assert created.status_code == 201, created.text
    credential = created.json()
    assert credential["id"].startswith("cred_") and credential["provider"] == "fake"
    assert credential["workspace_id"] == byok.workspaces["alpha"] and credential["fingerprint"].startswith(
        "sha256:"
    )
    assert "api_key" not in credential
    listed = byok.http("GET", "/v1/byok", byok.management["alpha"]).json()["data"]
    assert [c["id"] for c in listed] == [credential["id"]]
    assert byok.http("GET", "/v1/byok", byok.management["beta"]).json()["data"] == []
    byok.wait_cached("alpha", True)

    # alpha: the fake only accepts the workspace's own key now.
    byok.fake.api_key = BYOK_KEY
    byok.fake.enqueue(Behaviour(prompt_tokens=1001, completion_tokens=7))
    raw = byok.chat("alpha")
    assert byok.fake.requests[-1].headers["authorization"] == f"Bearer {BYOK_KEY}"
    completion = raw.parse()
    fee = -(-list_cost(1001, 7) * 5 // 100)  # 7718: 5 % of 154350, rounded up
    assert completion.usage.cost == pytest.approx(fee / 1e9)
    record = byok.generation("alpha", completion.id)
    assert record["cost_nanos"] == fee
    assert record["attempts"][0]["byok"] is True and record["attempts"][0]["outcome"] == "ok"

    # beta: no BYOK key, so the gateway's own key and the list price.
    byok.fake.api_key = GATEWAY_KEY
    byok.fake.enqueue(Behaviour(prompt_tokens=1001, completion_tokens=7))
    other = byok.chat("beta").parse()
    assert byok.fake.requests[-1].headers["authorization"] == f"Bearer {GATEWAY_KEY}"
    beta_record = byok.generation("beta", other.id)
    assert beta_record["cost_nanos"] == list_cost(1001, 7)
    assert "byok" not in beta_record["attempts"][0]

    # Streams use the BYOK key too.
    byok.fake.api_key = BYOK_KEY
    client = byok.gateway.openai(byok.inference["alpha"])
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Reply with: streamed"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed"
    assert byok.fake.requests[-1].headers["authorization"] == f"Bearer {BYOK_KEY}"

    # Deleting it: alpha is back on the gateway's key within a refresh.
    deleted = byok.http("DELETE", f"/v1/byok/{credential['id']}", byok.management["alpha"])
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    byok.wait_cached("alpha", False)
    byok.fake.api_key = GATEWAY_KEY
    byok.chat("alpha")
    assert byok.fake.requests[-1].headers["authorization"] == f"Bearer {GATEWAY_KEY}"
    _assert_no_key_anywhere(byok, caplog)


def test_a_keyless_provider_serves_byok_workspaces_free_and_a_rejected_key_is_never_echoed(
    keyless: Byok, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    byok = keyless
    # Without a BYOK key nobody can use the keyless provider.
    with pytest.raises(openai.APIStatusError) as refused:
        byok.chat("alpha")
    assert refused.value.status_code == 503 and "providers.fake.api_key" in refused.value.message

    created = byok.http(
        "POST",
        "/v1/byok",
        ADMIN_TOKEN,
        json={"provider": "fake", "api_key": BYOK_KEY, "workspace_id": byok.workspaces["alpha"]},
    )
    assert created.status_code == 201, created.text
    byok.wait_cached("alpha", True)

    # alpha has an empty wallet: with a 0 % fee the request is free.
    byok.fake.api_key = BYOK_KEY
    completion = byok.chat("alpha").parse()
    assert completion.choices[0].message.content == "hi" and completion.usage.cost == 0
    record = byok.generation("alpha", completion.id)
    assert record["cost_nanos"] == 0 and record["attempts"][0]["byok"] is True
    with pytest.raises(openai.APIStatusError) as still_refused:
        byok.chat("beta")
    assert still_refused.value.status_code == 503

    # The provider rejects the key and echoes it: nobody sees it, and the breaker stays closed.
    byok.fake.api_key = None
    message = f"Incorrect API key provided: {BYOK_KEY}. You can find your API key at platform.openai.com."
    for _ in range(8):
        byok.fake.enqueue(
            Behaviour(status=401, error=openai_error(401, message), headers={"x-echo": BYOK_KEY})
        )
    failures = []
    for _ in range(8):
        with pytest.raises(openai.APIStatusError) as rejected:
            byok.chat("alpha")
        failures.append(rejected.value)
        byok.seen.append(rejected.value.response.text)
    assert failures[0].status_code == 502
    assert "this workspace's own key (BYOK" in failures[0].message and "[REDACTED]" in failures[0].message
    assert byok.gateway.state.health.allow("fake", "gpt-4o-mini"), "a bad BYOK key must not open the circuit"
    generation_id = failures[0].response.headers["x-generation-id"]
    record = byok.generation("alpha", generation_id)
    assert record["status"] == "failed" and "[REDACTED]" in record["error"]
    byok.seen.append(json.dumps(record))
    _assert_no_key_anywhere(byok, caplog)


def test_the_byok_api_checks_callers_and_inputs(with_fee: Byok) -> None:
    byok = with_fee
    alpha = byok.management["alpha"]
    cases = [
        (byok.inference["alpha"], {"provider": "fake", "api_key": BYOK_KEY}, 403),
        (ADMIN_TOKEN, {"provider": "fake", "api_key": BYOK_KEY}, 400),  # admin must name the workspace
        (alpha, {"provider": "nope", "api_key": BYOK_KEY}, 400),
        (alpha, {"provider": "fake", "api_key": "short"}, 400),
        (alpha, {"provider": "fake", "api_key": BYOK_KEY + "\r\nx-injected: 1"}, 400),
        (alpha, {"provider": "fake", "api_key": BYOK_KEY, "workspace_id": byok.workspaces["beta"]}, 404),
        (alpha, {"provider": "fake", "api_key": BYOK_KEY, "extra": 1}, 400),
    ]
    for key, body, status in cases:
        response = byok.http("POST", "/v1/byok", key, json=body)
        assert response.status_code == status, (body, response.text)
        assert BYOK_KEY not in response.text
    stored = byok.http("POST", "/v1/byok", alpha, json={"provider": "fake", "api_key": BYOK_KEY}).json()
    # Another workspace's credential looks exactly like a missing one.
    assert byok.http("DELETE", f"/v1/byok/{stored['id']}", byok.management["beta"]).status_code == 404
    everything = byok.http("GET", "/v1/byok", ADMIN_TOKEN).json()["data"]
    assert [c["id"] for c in everything] == [stored["id"]]
    replaced = byok.http(
        "POST", "/v1/byok", alpha, json={"provider": "fake", "api_key": BYOK_KEY + "-new"}
    ).json()
    assert replaced["replaced"] == stored["id"]
    history = byok.http("GET", "/v1/byok?include_revoked=true", alpha).json()["data"]
    assert {c["id"]: bool(c["revoked_at"]) for c in history} == {stored["id"]: True, replaced["id"]: False}


def test_without_master_keys_storing_a_key_names_the_variable_to_set(
    tmp_path: Path, fake_server: FakeOpenAIServer
) -> None:
    for byok in _start(tmp_path, fake_server, gateway_key=GATEWAY_KEY, fee="0", master=None):
        response = byok.http(
            "POST", "/v1/byok", byok.management["alpha"], json={"provider": "fake", "api_key": BYOK_KEY}
        )
        assert response.status_code == 500 and response.json()["error"]["code"] == "byok_not_configured"
        assert "AISTATS_BYOK_MASTER_KEYS" in response.json()["error"]["message"]
        assert byok.http("GET", "/v1/byok", byok.management["alpha"]).json()["data"] == []


# --- the command line, as a real process ----------------------------------------------------------


def _cli(
    tmp_path: Path, *args: str, stdin: str = "", master: str | None = MASTER
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "OPENAI_", "GEMINI_"))}
    env.update(_env(tmp_path, master))
    return subprocess.run(
        [sys.executable, "-m", "aistats_gateway", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_sets_lists_rotates_and_deletes_without_ever_printing_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, _config("http://127.0.0.1:9/v1", gateway_key=None, fee="0"))
    outputs: list[str] = []
    # One real process: the key arrives on a pipe, as `... | aistats-gateway byok set` would send it.
    process = _cli(
        tmp_path,
        "byok",
        "set",
        "--provider",
        "fake",
        "--label",
        "cli",
        "--json",
        "--config",
        str(config),
        stdin=BYOK_KEY + "\n",
    )
    outputs.extend([process.stdout, process.stderr])
    assert process.returncode == 0, process.stderr
    stored = json.loads(process.stdout)
    assert stored["master_key_id"] == "k1" and stored["label"] == "cli"

    for name in [k for k in os.environ if k.startswith("AISTATS_")]:
        monkeypatch.delenv(name)
    for name, value in _env(tmp_path, None).items():
        monkeypatch.setenv(name, value)

    def run(*args: str, stdin: str = "", master: str | None = MASTER, ok: bool = True) -> str:
        if master:
            monkeypatch.setenv("AISTATS_BYOK_MASTER_KEYS", master)
        else:
            monkeypatch.delenv("AISTATS_BYOK_MASTER_KEYS", raising=False)
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = cli_main([*args, "--config", str(config)])
        captured = capsys.readouterr()
        outputs.extend([captured.out, captured.err])
        assert (status == 0) == ok, captured.err
        return captured.out if ok else captured.out + captured.err

    assert "AISTATS_BYOK_MASTER_KEYS" in run(
        "byok", "set", "--provider", "fake", stdin=BYOK_KEY, master=None, ok=False
    )
    listed = json.loads(run("byok", "list", "--json"))
    assert [row["id"] for row in listed] == [stored["id"]]
    run("byok", "list")

    new_master = "k2:" + base64.b64encode(os.urandom(32)).decode()
    rotated = json.loads(run("byok", "rotate", "--json", master=f"{new_master},{MASTER}"))
    assert (rotated["rotated"], rotated["already_current"], rotated["failed"]) == (1, 0, [])
    assert json.loads(run("byok", "rotate", "--json", master=new_master))["already_current"] == 1
    assert json.loads(run("byok", "list", "--json"))[0]["master_key_id"] == "k2"
    # With only the old key the rotated row cannot be read: rotate says so and exits 1.
    stale = run("byok", "rotate", master=MASTER, ok=False)
    assert stored["id"] in stale and "master key 'k2'" in stale

    run("byok", "delete", stored["id"])
    assert json.loads(run("byok", "list", "--json")) == []
    assert "error: no active BYOK credential" in run("byok", "delete", stored["id"], ok=False)
    for text in outputs:
        assert BYOK_KEY not in text
