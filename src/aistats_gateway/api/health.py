"""``GET /v1/health`` (alias ``/healthz``): liveness and readiness, from memory only."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from ..pipeline.refresher import StateRefresher
from ..state import AppState
from .json import json_response

STALE_AFTER_SECONDS = 10.0


class HealthEndpoint:
    """Ready when start-up finished. A database that stopped answering does not make the
    instance unready: it keeps serving cached keys from memory and spools usage records, which
    is what a load balancer should keep sending traffic to. It is reported as ``degraded``."""

    def __init__(self, state: AppState, refresher: StateRefresher) -> None:
        self._state = state
        self._refresher = refresher

    async def health(self, request: Request) -> Response:
        last = self._refresher.last_success
        age = None if last is None else time.monotonic() - last
        fresh = age is not None and age < STALE_AFTER_SECONDS
        ready = self._state.ready
        writer = self._state.writer
        spooled_records, spooled_bytes = writer.spool_usage
        body = {
            "status": "ok" if ready and fresh else "degraded",
            "live": True,
            "ready": ready,
            "database": "ok" if fresh else "unreachable",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self._state.started_at, 1),
            "state_age_s": None if age is None else round(age, 2),
            "writer_queue": writer.queue_depth,
            "spooled_records": spooled_records,
            "spooled_bytes": spooled_bytes,
            "refused_records": writer.refused_total,  # set aside since start (spool status)
        }
        return json_response(body, status=200 if ready else 503)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/health", self.health, methods=["GET"]),
            Route("/healthz", self.health, methods=["GET"]),
        ]
