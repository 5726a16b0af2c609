"""OpenTelemetry traces: a span per request and per upstream attempt, exported over OTLP/HTTP.

Imported only when traces are on (``telemetry/__init__.py``). The W3C ``traceparent`` of the
client is the request span's parent; each attempt span's ``traceparent`` is sent to the provider.
The tracer provider is the gateway's own (never OpenTelemetry's global one) and is shut down,
exporting what is left, when the app stops.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..providers.http import UpstreamClient
from ..settings import TelemetrySettings
from . import ACTIVE_TRACE

if TYPE_CHECKING:
    from ..pipeline.generation import Generation
    from ..providers.base import UpstreamReply

_PROPAGATOR = TraceContextTextMapPropagator()  # stateless: W3C traceparent / tracestate
_UNTRACED_PATHS = frozenset({"/v1/health"})


class Tracing:
    """The gateway's tracer: wraps the ASGI app, makes the upstream client, flushes at shutdown."""

    def __init__(self, settings: TelemetrySettings, exporter: SpanExporter | None = None) -> None:
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            resource=Resource.create({"service.name": settings.service_name}),
            shutdown_on_exit=False,  # the app's lifespan shuts it down
        )
        if exporter is None:
            exporter = OTLPSpanExporter(
                endpoint=settings.otlp_endpoint, headers=dict(settings.otlp_headers), timeout=10
            )
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=settings.export_delay_s * 1000)
        )
        self.tracer = self.provider.get_tracer("aistats_gateway")

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """``app`` with a server span around every ``/v1/…`` request."""
        return TracingMiddleware(app, self.tracer)

    def upstream_client(self) -> UpstreamClient:
        """The pooled upstream client, sending each attempt's ``traceparent``."""
        return TracingUpstreamClient()

    def shutdown(self) -> None:
        """Export the spans still queued and stop (blocking: run it in a thread)."""
        self.provider.shutdown()


class RequestTrace:
    """One request's server span and its attempt spans (one per upstream call)."""

    __slots__ = ("_attempt", "_tracer", "attempts", "context", "generation", "span")

    def __init__(self, tracer: Tracer, span: Span) -> None:
        self._tracer = tracer
        self.span = span
        self.context = set_span_in_context(span)
        self.generation: Generation | None = None
        self.attempts = 0
        self._attempt: _OpenAttempt | None = None  # the latest attempt, until it is ended

    def bind(self, generation: Generation) -> None:
        self.generation = generation

    def attempt_started(self, generation: Generation) -> None:
        self.generation = generation
        self._end_attempt(generation)
        started_ns = time.time_ns()
        provider, model = generation.provider or "", generation.upstream_model or ""
        span = self._tracer.start_span(
            f"attempt {provider}",
            context=self.context,
            kind=SpanKind.CLIENT,
            start_time=started_ns,
            attributes={
                "aistats.provider": provider,
                "aistats.upstream_model": model,
                "gen_ai.request.model": model,
                "aistats.byok": generation.byok_fee is not None,
            },
        )
        self.attempts += 1
        # upstream_end appends this attempt's record next (nothing is skipped in between)
        self._attempt = _OpenAttempt(span, len(generation.attempts), started_ns, generation.upstream_s)

    def _end_attempt(self, generation: Generation) -> None:
        """End the latest attempt's span with its outcome; its duration is the growth of
        ``generation.upstream_s`` (what ``upstream_end`` added), so it is exact."""
        attempt, self._attempt = self._attempt, None
        if attempt is None:
            return
        span, records = attempt.span, generation.attempts
        record = records[attempt.index] if attempt.index < len(records) else None
        if record is None:  # never finished (the client left, or a bug): ends now
            span.set_attribute("aistats.outcome", "interrupted")
            span.set_status(Status(StatusCode.ERROR, "interrupted"))
            span.end()
            return
        outcome: dict[str, str | int] = {"aistats.outcome": record.outcome}
        if record.status is not None:
            outcome["http.response.status_code"] = record.status
        span.set_attributes(outcome)  # one call: each set_* takes the span's lock
        if record.outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, record.outcome))
        elapsed_ns = round((generation.upstream_s - attempt.upstream_s_before) * 1e9)
        span.end(end_time=attempt.started_ns + elapsed_ns)

    def outgoing_headers(self) -> dict[str, str]:
        """``traceparent`` (and ``tracestate``) naming the current attempt as the parent."""
        span = self._attempt.span if self._attempt is not None else self.span
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=set_span_in_context(span))
        return carrier

    def finish(self, status: int | None, generation_id: str | None) -> None:
        """End the last attempt's span, then the request span with what the request became."""
        generation = self.generation
        request = self.span
        attributes: dict[str, str | int] = {}
        if generation is not None:
            self._end_attempt(generation)
            attributes["aistats.generation_id"] = generation.id
            attributes["aistats.surface"] = generation.endpoint
            if generation.model_id:
                attributes["aistats.model"] = attributes["gen_ai.request.model"] = generation.model_id
            if generation.provider:
                attributes["aistats.provider"] = generation.provider
            attributes["aistats.attempts"] = self.attempts
        elif generation_id:
            attributes["aistats.generation_id"] = generation_id
        if status is not None:
            attributes["http.response.status_code"] = status
        request.set_attributes(attributes)
        if status is None or status >= 500:
            request.set_status(Status(StatusCode.ERROR))
        request.end()


@dataclass(slots=True)
class _OpenAttempt:
    span: Span
    index: int  # where its Attempt record will be in generation.attempts
    started_ns: int  # wall clock, for the span
    upstream_s_before: float  # generation.upstream_s when it started


class TracingMiddleware:
    """ASGI middleware: a server span per ``/v1/…`` request, child of the client's ``traceparent``."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self._app = app
        self._tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/") or path in _UNTRACED_PATHS:
            await self._app(scope, receive, send)
            return
        method = scope["method"]
        span = self._tracer.start_span(
            f"{method} {path}",
            context=_client_context(scope),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        trace = RequestTrace(self._tracer, span)
        answered: dict[str, object] = {}

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"x-generation-id":
                        answered["generation_id"] = value.decode("latin-1")
            await send(message)

        token = ACTIVE_TRACE.set(trace)
        try:
            await self._app(scope, receive, send_and_note)
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            ACTIVE_TRACE.reset(token)
            status = answered.get("status")
            generation_id = answered.get("generation_id")
            trace.finish(
                status if isinstance(status, int) else None,
                generation_id if isinstance(generation_id, str) else None,
            )


def _client_context(scope: Scope) -> Context | None:
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in (b"traceparent", b"tracestate")
    }
    return _PROPAGATOR.extract(carrier) if carrier else None


class TracingUpstreamClient(UpstreamClient):
    """:class:`UpstreamClient` that adds the current attempt's ``traceparent`` to each request."""

    async def post(
        self,
        provider: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        connect_timeout: float,
        first_byte_timeout: float,
        read_timeout: float,
    ) -> UpstreamReply:
        trace = ACTIVE_TRACE.get()
        if isinstance(trace, RequestTrace):
            headers = {**headers, **trace.outgoing_headers()}
        return await super().post(
            provider,
            url,
            body,
            headers,
            connect_timeout=connect_timeout,
            first_byte_timeout=first_byte_timeout,
            read_timeout=read_timeout,
        )
