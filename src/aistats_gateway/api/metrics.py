"""``GET /metrics``: Prometheus text exposition of this worker's counters."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..metrics import Metrics


class MetricsEndpoint:
    """Serves a registry of its own (no process-global state): the gateway's counters and the
    standard process metrics (CPU seconds, resident memory, open files)."""

    def __init__(self, metrics: Metrics) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(metrics)
        ProcessCollector(registry=self._registry)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.metrics, methods=["GET"])]
