"""``GET /metrics``: Prometheus text exposition of this worker's counters."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..metrics import Metrics


class MetricsEndpoint:
    """Serves a registry holding only the gateway's collector (no process-global registry)."""

    def __init__(self, metrics: Metrics) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(metrics)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.metrics, methods=["GET"])]
