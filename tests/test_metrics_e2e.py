"""Prometheus metrics and the gateway-overhead headers."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e_fixtures import Live
from tests.fakes.openai_server import Behaviour

FREE = "google/gemma-3-27b:free"


def _scrape(live: Live) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = httpx.get(f"{live.gateway.base_url}/metrics").text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_overhead_headers_exclude_the_upstream_wait(live: Live) -> None:
    live.fake.enqueue(Behaviour(delay=0.3))
    raw = live.client().chat.completions.with_raw_response.create(
        model=FREE, messages=[{"role": "user", "content": "hi"}]
    )
    overhead_ms = float(raw.headers["x-aistats-overhead-ms"])
    timing = dict(part.strip().split(";dur=") for part in raw.headers["server-timing"].split(","))
    assert float(timing["upstream"]) >= 300
    assert 0 < overhead_ms < 100, "the provider's 300 ms are not the gateway's"
    assert float(timing["gateway"]) == overhead_ms
    assert raw.headers["x-aistats-provider"] == "fake-compat" and raw.headers["x-aistats-attempts"] == "1"


def test_metrics_count_responses_tokens_latency_and_queue(live: Live) -> None:
    client = live.client()
    client.chat.completions.create(model=FREE, messages=[{"role": "user", "content": "Reply with: a b"}])
    list(client.responses.create(model=FREE, input="Reply with: c d e", stream=True))
    httpx.post(f"{live.gateway.base_url}/v1/chat/completions", json={"model": FREE})  # 401, no key
    samples = _scrape(live)

    responses = samples["aistats_responses_total"]
    assert responses[(("status", "200"), ("surface", "chat"))] == 1
    assert responses[(("status", "200"), ("surface", "responses"))] == 1
    assert responses[(("status", "401"), ("surface", "chat"))] == 1
    output = samples["aistats_tokens_total"][
        (("kind", "output"), ("model", FREE), ("provider", "fake-compat"))
    ]
    assert output == 2 + 3
    streamed = samples["aistats_request_duration_seconds_count"][
        (("streamed", "true"), ("surface", "responses"))
    ]
    assert streamed == 1
    assert samples["aistats_gateway_overhead_seconds_count"][(("surface", "chat"),)] == 1
    assert samples["aistats_upstream_duration_seconds_count"][(("provider", "fake-compat"),)] == 2
    assert samples["aistats_in_flight_requests"][()] == 0
    assert "aistats_writer_queue_depth" in samples and "aistats_event_loop_lag_seconds" in samples
