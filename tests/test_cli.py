"""The ``aistats-gateway`` command line, run as a real process like a user would."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aistats_gateway.keys import parse_key


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "OPENAI_", "GEMINI_"))}
    env["AISTATS_DATA_DIR"] = str(tmp_path / "data")
    return env


def cli(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "aistats_gateway", *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_keys_create_prints_the_key_on_the_last_line(tmp_path: Path) -> None:
    result = cli(tmp_path, "keys", "create", "--name", "ci")
    key = result.stdout.strip().splitlines()[-1]
    assert parse_key(key) is not None


def test_keys_create_json_and_list_and_revoke(tmp_path: Path) -> None:
    created = json.loads(cli(tmp_path, "keys", "create", "--json").stdout)
    assert set(created) >= {"key", "kid", "workspace"} and created["workspace"] == "default"
    assert created["key"].startswith(f"aistats_v1_sk_{created['kid']}_")
    listed = json.loads(cli(tmp_path, "keys", "list", "--json").stdout)
    assert [row["kid"] for row in listed] == [created["kid"]]
    assert created["key"] not in cli(tmp_path, "keys", "list").stdout, "the secret is never shown again"
    cli(tmp_path, "keys", "revoke", created["kid"])
    assert json.loads(cli(tmp_path, "keys", "list", "--json").stdout)[0]["revoked_at"] is not None
    again = cli(tmp_path, "keys", "revoke", created["kid"], check=False)
    assert again.returncode == 1 and "no active key" in again.stderr


def test_workspaces_and_credits(tmp_path: Path) -> None:
    cli(tmp_path, "workspaces", "create", "acme")
    duplicate = cli(tmp_path, "workspaces", "create", "acme", check=False)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    cli(tmp_path, "credits", "grant", "--workspace", "acme", "--usd", "12.5")
    cli(tmp_path, "credits", "grant", "--workspace", "acme", "--usd", "0.000000001")
    shown = json.loads(cli(tmp_path, "credits", "show", "--workspace", "acme", "--json").stdout)
    assert shown["balance_nanos"] == 12_500_000_001 and shown["balance_usd"] == "12.500000001"
    bad = cli(tmp_path, "credits", "grant", "--workspace", "acme", "--usd", "1.0000000001", check=False)
    assert bad.returncode == 1 and "--usd" in bad.stderr
    missing = cli(tmp_path, "credits", "show", "--workspace", "nope", check=False)
    assert missing.returncode == 1 and "no workspace named 'nope'" in missing.stderr


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("providers:\n  mine: {type: nonsense, base_url: http://x}\n")
    result = cli(tmp_path, "models", "list", "--config", str(config), check=False)
    assert result.returncode == 1 and "providers.mine.type" in result.stderr


@pytest.mark.timeout(90)
def test_serve_prints_a_bootstrap_key_once_and_it_works(tmp_path: Path) -> None:
    port = _free_port()

    def serve() -> tuple[str, subprocess.Popen[str]]:
        process = subprocess.Popen(
            [sys.executable, "-m", "aistats_gateway", "serve", "--port", str(port)],
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines = []
        deadline = time.monotonic() + 30
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "listening on" in line:
                break
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        return "".join(lines), process

    def stop(process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)

    output, process = serve()
    try:
        keys = [word for word in output.split() if word.startswith("aistats_v1_sk_")]
        assert len(keys) == 1, output
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/credits", headers={"authorization": f"Bearer {keys[0]}"}
        )
        assert response.status_code == 200
    finally:
        stop(process)
    output, process = serve()
    try:
        assert "aistats_v1_sk_" not in output, "the bootstrap key is printed only on the very first start"
    finally:
        stop(process)


def test_keys_management_kind_limits_update_and_show(tmp_path: Path) -> None:
    management = json.loads(cli(tmp_path, "keys", "create", "--management", "--json").stdout)
    assert management["kind"] == "management" and parse_key(management["key"]) is not None
    created = json.loads(
        cli(
            tmp_path, "keys", "create", "--name", "app", "--rpm", "60", "--daily-usd", "5",
            "--models", "openai/*", "anthropic/*", "--json",
        ).stdout
    )  # fmt: skip
    assert created["kind"] == "inference" and created["limits"]["requests_per_minute"] == 60
    assert created["limits"]["allowed_models"] == ["openai/*", "anthropic/*"]
    cli(tmp_path, "keys", "update", created["kid"], "--tpm", "1000", "--daily-usd", "none", "--name", "app2")
    shown = json.loads(cli(tmp_path, "keys", "show", created["kid"]).stdout)
    assert shown["name"] == "app2" and shown["usage"]["requests"] == 0
    assert shown["limits"]["requests_per_minute"] == 60, "an update changes only the limits it names"
    assert shown["limits"]["tokens_per_minute"] == 1000 and shown["limits"]["spend_usd"]["daily"] is None
    assert created["key"] not in json.dumps(shown)
    bad = cli(tmp_path, "keys", "update", created["kid"], "--rpm", "0", check=False)
    assert bad.returncode == 1 and "--rpm" in bad.stderr
    refused = cli(tmp_path, "keys", "create", "--management", "--rpm", "5", check=False)
    assert refused.returncode == 1 and "inference keys only" in refused.stderr


def test_credits_grant_idempotency_key_and_ledger_export(tmp_path: Path) -> None:
    first = cli(
        tmp_path, "credits", "grant", "--workspace", "default", "--usd", "1.5", "--idempotency-key", "t1"
    )
    again = cli(
        tmp_path, "credits", "grant", "--workspace", "default", "--usd", "1.5", "--idempotency-key", "t1"
    )
    assert (
        "Balance: $1.5" in first.stdout
        and "not applied again" in again.stdout
        and "Balance: $1.5" in again.stdout
    )
    cli(tmp_path, "credits", "grant", "--workspace", "default", "--usd", "0.000000001", "--note", "a, b")
    out = tmp_path / "ledger.csv"
    cli(tmp_path, "ledger", "export", "--workspace", "default", "--csv", str(out))
    rows = list(csv.DictReader(out.open(newline="")))
    assert [(row["kind"], row["amount_usd"], row["amount_nanos"]) for row in rows] == [
        ("grant", "1.5", "1500000000"),
        ("grant", "0.000000001", "1"),
    ]
    assert rows[1]["note"] == "a, b" and rows[0]["created_at"].endswith("Z")
    to_stdout = cli(tmp_path, "ledger", "export", "--workspace", "default", "--kind", "charge").stdout
    assert to_stdout.splitlines() == [
        "id,created_at,workspace_id,kind,amount_usd,amount_nanos,generation_id,note"
    ]
