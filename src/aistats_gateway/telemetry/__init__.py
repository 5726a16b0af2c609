"""Optional OpenTelemetry traces (off by default; docs/decisions/010).

This package's top level never imports OpenTelemetry: it holds the hooks the request path calls
(one context-variable read each when traces are off) and :func:`load_tracing`, which imports
:mod:`.tracing` (and with it the ``otel`` extra) only when ``telemetry.otlp_endpoint`` or
``AISTATS_OTEL_ENDPOINT`` turns traces on.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..pipeline.generation import Generation
    from ..settings import TelemetrySettings
    from .tracing import Tracing


class ActiveTrace(Protocol):
    """The trace of the request being served (set by the tracing middleware)."""

    def bind(self, generation: Generation) -> None: ...

    def attempt_started(self, generation: Generation) -> None: ...


# Request-scoped, like OpenTelemetry's own context: each request runs in a task of its own.
ACTIVE_TRACE: ContextVar[ActiveTrace | None] = ContextVar("aistats_active_trace", default=None)


def bind_generation(generation: Generation) -> None:
    """Name ``generation`` as the one this request serves (its id, model and attempts go on the
    request span). Does nothing when traces are off."""
    trace = ACTIVE_TRACE.get()
    if trace is not None:
        trace.bind(generation)


def attempt_started(generation: Generation) -> None:
    """An upstream attempt starts (call right after ``generation.upstream_begin``): opens its
    span, whose ``traceparent`` the upstream request carries. Does nothing when traces are off."""
    trace = ACTIVE_TRACE.get()
    if trace is not None:
        trace.attempt_started(generation)


def load_tracing(settings: TelemetrySettings) -> Tracing | None:
    """The tracer for ``settings``, or None when traces are off (nothing is imported then).

    Raises ``ConfigError`` when traces are on but the ``otel`` extra is missing.
    """
    if not settings.tracing:
        return None
    from ..settings import ConfigError

    try:
        from .tracing import Tracing
    except ImportError as exc:
        raise ConfigError(
            "telemetry.otlp_endpoint",
            f"traces are on but OpenTelemetry is not installed ({exc.name or exc}); "
            "install the extra: pip install 'aistats-gateway[otel]'",
        ) from exc
    return Tracing(settings)
