"""``/metrics`` merged over the workers of ``serve --workers N`` (docs/decisions/010)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e_fixtures import Live
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import fake_provider_config, wait_for
from tests.test_cli import _env, _free_port

FREE = "google/gemma-3-27b:free"
REQUESTS = 12


def _scrape(url: str) -> tuple[str, dict[str, dict[tuple[tuple[str, str], ...], float]]]:
    """One scrape on a fresh connection: the answering worker's pid and every sample."""
    with httpx.Client() as http:  # a new connection, so either worker may accept it
        response = http.get(url)
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return response.headers["x-aistats-worker"], samples


@pytest.mark.timeout(120)
def test_request_counter_is_the_total_whichever_worker_answers_the_scrape(
    tmp_path: Path, fake_server: FakeOpenAIServer
) -> None:
    config = fake_provider_config(fake_server.base_url)
    config["limits"] = {"free": {"requests_per_minute": 1000, "requests_per_day": 1000}}
    config["telemetry"] = {"metrics_snapshot_s": 0.2}
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = _free_port()
    env = _env(tmp_path)
    created = subprocess.run(
        [sys.executable, "-m", "aistats_gateway", "keys", "create", "--config", str(config_path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    serve = ["serve", "--config", str(config_path), "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "aistats_gateway", *serve],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base), timeout=30, interval=0.2)
        for _ in range(REQUESTS):  # a client (so a connection) each: both workers serve some
            with openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0) as client:
                client.chat.completions.create(
                    model=FREE, messages=[{"role": "user", "content": "Reply with: two words"}]
                )
        time.sleep(1.0)  # both workers have written a snapshot (every 0.2 s) since their last request

        answered_by: set[str] = set()
        deadline = time.monotonic() + 20
        scrapes = 0
        while (len(answered_by) < 2 or scrapes < 6) and time.monotonic() < deadline:
            worker, samples = _scrape(f"{base}/metrics")
            scrapes += 1
            answered_by.add(worker)
            responses = samples["aistats_responses_total"][(("status", "200"), ("surface", "chat"))]
            assert responses == REQUESTS, f"worker {worker} reported {responses}"
            output = samples["aistats_tokens_total"][
                (("kind", "output"), ("model", FREE), ("provider", "fake-compat"))
            ]
            assert output == 2 * REQUESTS
            latency = samples["aistats_request_duration_seconds_count"][
                (("streamed", "false"), ("surface", "chat"))
            ]
            assert latency == REQUESTS
            assert len(samples["aistats_worker_info"]) == 2, "both workers are merged"
            assert set(dict(labels)["pid"] for labels in samples["process_cpu_seconds_total"]) == {
                dict(labels)["pid"] for labels in samples["aistats_worker_info"]
            }
            assert samples["aistats_in_flight_requests"][()] == 0
        assert len(answered_by) == 2, "scrapes were answered by both workers"
        group = tmp_path / "data" / "metrics" / str(process.pid)
        assert sorted(path.name for path in group.glob("*.json")) == sorted(
            f"{pid}.json" for pid in answered_by
        )
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    assert not list(group.glob("*.json")), "each worker removed its snapshot when it stopped"


def test_a_single_worker_writes_no_snapshot_files(live: Live) -> None:
    live.client().chat.completions.create(model=FREE, messages=[{"role": "user", "content": "hi"}])
    text = httpx.get(f"{live.gateway.base_url}/metrics").text
    assert f'aistats_worker_info{{pid="{os.getpid()}"}} 1.0' in text
    assert not (live.gateway.settings.data_dir / "metrics").exists()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/health").status_code == 200
    except httpx.TransportError:
        return False
