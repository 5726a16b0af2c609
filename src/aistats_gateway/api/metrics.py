"""``GET /metrics``: Prometheus text exposition of the gateway's counters.

One worker serves its own numbers; with ``serve --workers N`` the collector is a
:class:`~..metrics_workers.WorkerMetricsGroup`, which merges every live worker's. The
``x-aistats-worker`` header names the worker process that answered the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class MetricsEndpoint:
    """Serves a registry of its own (no process-global state): the gateway's counters and the
    standard process metrics (CPU seconds, resident memory, open files).

    ``collector`` is the gateway's collector; ``process_metrics`` adds this process's own
    ``process_*`` metrics (a merged collector brings every worker's, labelled ``pid``).
    """

    def __init__(self, collector: Collector, *, process_metrics: bool = True) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(collector)
        if process_metrics:
            ProcessCollector(registry=self._registry)
        self._headers = {"x-aistats-worker": str(os.getpid())}

    async def metrics(self, request: Request) -> Response:
        body = generate_latest(self._registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=self._headers)

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.metrics, methods=["GET"])]
