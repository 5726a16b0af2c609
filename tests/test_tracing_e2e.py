"""OpenTelemetry traces: request and attempt spans over OTLP/HTTP, W3C traceparent in and out."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from aistats_gateway.settings import ConfigError, load_settings
from tests.e2e_fixtures import Live
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.fakes.otlp_collector import FakeCollector, ReceivedSpan
from tests.harness import Admin, GatewayServer, fake_provider_config, gateway_settings, wait_for, write_config

FREE = "google/gemma-3-27b:free"
FAILOVER = "test/failover:free"
EMBED = "test/embed"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@dataclass
class Traced:
    gateway: GatewayServer
    fake: FakeOpenAIServer
    collector: FakeCollector
    key: str

    def spans_of(self, trace_id: str, count: int) -> list[ReceivedSpan]:
        """The spans of one trace, once ``count`` of them were exported."""
        wait_for(lambda: len(self._of(trace_id)) >= count, timeout=10)
        return self._of(trace_id)

    def _of(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.collector.spans if span.trace_id == trace_id]


def _config(fake_url: str, collector_url: str) -> dict[str, Any]:
    config = fake_provider_config(fake_url)
    compat = config["providers"]["fake-compat"]
    config["providers"]["first"] = dict(compat)
    config["providers"]["second"] = dict(compat)
    config["models"][FAILOVER] = {
        "providers": [
            {"provider": "first", "model": "m-first", "price": {"input": "0", "output": "0"}},
            {"provider": "second", "model": "m-second", "price": {"input": "0", "output": "0"}},
        ]
    }
    config["models"][EMBED] = {
        "kind": "embeddings",
        "providers": [
            {"provider": "fake", "model": "text-embedding-3-small", "price": {"input": "0.02", "output": "0"}}
        ],
    }
    config["telemetry"] = {
        "otlp_endpoint": collector_url,
        "service_name": "gateway-under-test",
        "export_delay_s": 0.05,
    }
    return config


@pytest.fixture
def traced(tmp_path: Path, fake_server: FakeOpenAIServer) -> Iterator[Traced]:
    with FakeCollector() as collector:
        settings = gateway_settings(tmp_path, _config(fake_server.base_url, collector.traces_url))
        admin = Admin(settings)
        key, _ = admin.create_key()
        admin.grant(1_000_000_000)
        with GatewayServer(settings) as gateway:
            yield Traced(gateway, fake_server, collector, key)


def _by_kind(spans: list[ReceivedSpan], kind: str) -> list[ReceivedSpan]:
    return sorted((span for span in spans if span.kind == kind), key=lambda span: span.start_ns)


def test_spans_continue_the_clients_trace_and_the_attempt_is_the_providers_parent(traced: Traced) -> None:
    client = traced.gateway.openai(traced.key)
    raw = client.chat.completions.with_raw_response.create(
        model=FREE,
        messages=[{"role": "user", "content": "Reply with: traced"}],
        extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", "tracestate": "vendor=x"},
    )
    spans = traced.spans_of(CLIENT_TRACE, 2)

    [request] = _by_kind(spans, "server")
    assert request.parent_span_id == CLIENT_SPAN, "the client's span is the request's parent"
    assert request.name == "POST /v1/chat/completions"
    assert request.service_name == "gateway-under-test"
    assert request.status == "unset"
    attributes = request.attributes
    assert attributes["aistats.generation_id"] == raw.headers["x-generation-id"]
    assert attributes["aistats.surface"] == "chat" and attributes["aistats.model"] == FREE
    assert attributes["http.response.status_code"] == 200 and attributes["aistats.attempts"] == 1

    [attempt] = _by_kind(spans, "client")
    assert attempt.parent_span_id == request.span_id
    assert attempt.attributes["aistats.provider"] == "fake-compat"
    assert attempt.attributes["aistats.upstream_model"] == "gemma-3-27b-it"
    assert (
        attempt.attributes["aistats.outcome"] == "ok"
        and attempt.attributes["http.response.status_code"] == 200
    )
    assert request.start_ns <= attempt.start_ns <= attempt.end_ns <= request.end_ns

    [sent] = [r for r in traced.fake.fake.requests if r.path.endswith("/chat/completions")]
    assert sent.headers["traceparent"] == f"00-{CLIENT_TRACE}-{attempt.span_id}-01"
    assert sent.headers["tracestate"] == "vendor=x"
    assert traced.collector.content_types[0] == "application/x-protobuf"


def test_a_failed_attempt_and_the_failover_get_a_span_each(traced: Traced) -> None:
    traced.fake.fake.enqueue(Behaviour(status=500))
    trace = "0af7651916cd43dd8448eb211c80319c"
    answer = traced.gateway.openai(traced.key).chat.completions.create(
        model=FAILOVER,
        messages=[{"role": "user", "content": "Reply with: second try"}],
        extra_headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01"},
    )
    assert answer.choices[0].message.content == "second try"
    spans = traced.spans_of(trace, 3)
    [request] = _by_kind(spans, "server")
    failed, served = _by_kind(spans, "client")
    assert (failed.attributes["aistats.provider"], served.attributes["aistats.provider"]) == (
        "first",
        "second",
    )
    assert failed.attributes["aistats.outcome"] == "UpstreamStatusError"
    assert failed.attributes["http.response.status_code"] == 500 and failed.status == "error"
    assert served.attributes["aistats.outcome"] == "ok" and served.status == "unset"
    assert failed.end_ns <= served.start_ns
    assert request.attributes["aistats.attempts"] == 2 and request.attributes["aistats.provider"] == "second"
    parents = [r.headers["traceparent"].split("-")[2] for r in traced.fake.fake.requests]
    assert parents == [failed.span_id, served.span_id], "each attempt's own span reached the provider"


def test_the_whole_reply_endpoints_trace_their_attempts_too(traced: Traced) -> None:
    trace = "5b8efff798038103d269b633813fc60c"
    raw = traced.gateway.openai(traced.key).embeddings.with_raw_response.create(
        model=EMBED, input="one text", extra_headers={"traceparent": f"00-{trace}-eee19b7ec3c1b174-01"}
    )
    spans = traced.spans_of(trace, 2)
    [request] = _by_kind(spans, "server")
    [attempt] = _by_kind(spans, "client")
    assert request.name == "POST /v1/embeddings"
    assert request.attributes["aistats.generation_id"] == raw.headers["x-generation-id"]
    assert request.attributes["aistats.model"] == EMBED
    assert attempt.parent_span_id == request.span_id and attempt.attributes["aistats.outcome"] == "ok"
    [sent] = [r for r in traced.fake.fake.requests if r.path.endswith("/embeddings")]
    assert sent.headers["traceparent"] == f"00-{trace}-{attempt.span_id}-01"


def test_a_stream_and_a_rejected_request_are_traced_without_a_client_traceparent(traced: Traced) -> None:
    events = list(
        traced.gateway.openai(traced.key).responses.create(model=FREE, input="Reply with: a b c", stream=True)
    )
    assert events[-1].type == "response.completed"
    rejected = httpx.post(f"{traced.gateway.base_url}/v1/chat/completions", json={"model": FREE})
    assert rejected.status_code == 401
    wait_for(lambda: len(_by_kind(traced.collector.spans, "server")) >= 2, timeout=10)

    stream, unauthorized = _by_kind(traced.collector.spans, "server")
    assert stream.parent_span_id == "" and stream.attributes["aistats.surface"] == "responses"
    [attempt] = [s for s in traced.collector.spans if s.parent_span_id == stream.span_id]
    assert attempt.attributes["aistats.outcome"] == "ok" and attempt.end_ns <= stream.end_ns
    assert unauthorized.attributes["http.response.status_code"] == 401
    assert unauthorized.attributes["aistats.generation_id"] == rejected.headers["x-generation-id"]
    assert unauthorized.status == "unset", "a client's 4xx is not the gateway's error"
    assert unauthorized.trace_id != stream.trace_id


def test_without_telemetry_no_traceparent_is_sent_and_the_tracer_is_never_imported(
    live: Live, tmp_path: Path
) -> None:
    live.client().chat.completions.create(
        model=FREE,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
    )
    assert "traceparent" not in live.fake.requests[-1].headers
    plain = tmp_path / "plain"
    plain.mkdir()
    config = write_config(plain, {})
    probe = (
        "import sys\n"
        "from aistats_gateway.app import create_app\n"
        "from aistats_gateway.settings import load_settings\n"
        f"create_app(load_settings({str(config)!r}, env={{'AISTATS_DATA_DIR': {str(tmp_path / 'd')!r}}}))\n"
        "loaded = [m for m in sys.modules if m.startswith(('aistats_gateway.telemetry.tracing',"
        " 'opentelemetry.sdk.trace', 'opentelemetry.exporter'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)


def test_traces_without_the_otel_extra_name_the_extra_to_install() -> None:
    probe = (
        "import sys\n"
        "sys.modules['opentelemetry.sdk.trace'] = None  # as if the extra were not installed\n"
        "from aistats_gateway.settings import ConfigError, TelemetrySettings\n"
        "from aistats_gateway.telemetry import load_tracing\n"
        "try:\n"
        "    load_tracing(TelemetrySettings(otlp_endpoint='http://127.0.0.1:9/v1/traces'))\n"
        "except ConfigError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("telemetry.otlp_endpoint: traces are on but OpenTelemetry")
    assert "pip install 'aistats-gateway[otel]'" in result.stdout


@pytest.mark.parametrize(
    ("telemetry", "env", "key"),
    [
        ({"otlp_endpoint": "collector:4318"}, {}, "telemetry.otlp_endpoint"),
        ({}, {"AISTATS_OTEL_ENDPOINT": "ftp://x"}, "AISTATS_OTEL_ENDPOINT"),
        ({"sample_ratio": 2}, {}, "telemetry.sample_ratio"),
        ({"export_delay_s": 0}, {}, "telemetry.export_delay_s"),
        ({"tracing": True}, {}, "telemetry.tracing"),
    ],
)
def test_telemetry_settings_are_validated(
    tmp_path: Path, telemetry: dict[str, Any], env: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write_config(tmp_path, {"telemetry": telemetry}), env=env)
    assert error.value.key == key


def test_the_endpoint_comes_from_the_environment_over_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"telemetry": {"otlp_endpoint": "http://file:4318/v1/traces"}})
    assert load_settings(path, env={}).telemetry.otlp_endpoint == "http://file:4318/v1/traces"
    settings = load_settings(path, env={"AISTATS_OTEL_ENDPOINT": "http://env:4318/v1/traces"})
    assert settings.telemetry.otlp_endpoint == "http://env:4318/v1/traces"
    assert not load_settings(write_config(tmp_path, {}), env={}).telemetry.tracing
