"""A fake OpenTelemetry collector: ``POST /v1/traces`` in OTLP/HTTP protobuf, spans kept in memory.

It decodes the real ``ExportTraceServiceRequest`` (from ``opentelemetry-proto``) and answers an
``ExportTraceServiceResponse``, so the official OTLP/HTTP exporter talks to it as to a collector
(tests/test_tracing_e2e.py points the SDK's exporter at it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.common import ThreadedServer

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUSES = {0: "unset", 1: "ok", 2: "error"}


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, ids as lowercase hex (W3C ``traceparent`` spelling)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: str
    status: str
    attributes: dict[str, Any]
    start_ns: int
    end_ns: int
    service_name: str


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    return getattr(value, field) if field else None


class FakeCollector(ThreadedServer):
    """Serves OTLP/HTTP ``/v1/traces`` and keeps every span it was sent."""

    label = "fake-otlp"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.content_types: list[str] = []

    @property
    def traces_url(self) -> str:
        return f"{self.root_url}/v1/traces"

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def build(self) -> Starlette:
        async def traces(request: Request) -> Response:
            export = ExportTraceServiceRequest()
            export.ParseFromString(await request.body())
            received = []
            for resource_spans in export.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        received.append(
                            ReceivedSpan(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                kind=KINDS[span.kind],
                                status=STATUSES[span.status.code],
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                                service_name=str(resource.get("service.name", "")),
                            )
                        )
            with self._lock:
                self._spans.extend(received)
                self.content_types.append(request.headers.get("content-type", ""))
            return Response(
                ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf"
            )

        return Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
