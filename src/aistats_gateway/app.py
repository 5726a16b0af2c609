"""Assembles the ASGI app: routes, and a lifespan that owns the database, pools and writer."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .api.account import AccountEndpoints
from .api.errors import GatewayError, error_response
from .api.health import HealthEndpoint
from .api.inference import InferenceEndpoint
from .api.metrics import MetricsEndpoint
from .api.models import ModelsEndpoints
from .bootstrap import prepare_database
from .catalog import load_catalog
from .ids import new_generation_id
from .keys import load_or_create_pepper
from .metrics import Metrics
from .pipeline.auth import KeyCache
from .pipeline.billing import WalletBook
from .pipeline.health import BreakerConfig, HealthTracker
from .pipeline.health_sync import RedisHealthSync
from .pipeline.refresher import FlushTrackingStore, StateRefresher
from .pipeline.routing import Router
from .providers import build_providers
from .providers.http import UpstreamClient
from .settings import Settings, load_settings
from .state import AppState
from .store.db import create_engine
from .store.repositories import Store
from .store.writer import BatchedWriter

log = logging.getLogger(__name__)

_HTTP_REASONS = {404: "not_found_error", 405: "validation_error"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reason = _HTTP_REASONS.get(exc.status_code, "validation_error")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return error_response(GatewayError(reason, message, status=exc.status_code), new_generation_id())


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    error = GatewayError("server_error", "The gateway hit an internal error; it has been logged")
    return error_response(error, new_generation_id())


def build_state(settings: Settings, refresh_interval: float = 0.5) -> tuple[AppState, StateRefresher]:
    """Everything the request path needs, wired explicitly (started by the lifespan)."""
    catalog = load_catalog(settings)
    upstream = UpstreamClient()
    providers = build_providers(settings.providers, upstream)
    store = Store(create_engine(settings.database_url))
    wallets = WalletBook()
    keys = KeyCache(load_or_create_pepper(settings.key_pepper, settings.data_dir))
    writer = BatchedWriter(FlushTrackingStore(store, wallets), on_flushed=wallets.flushed)
    metrics = Metrics(writer_depth=lambda: writer.queue_depth)
    routing = settings.routing
    health = HealthTracker(
        BreakerConfig(
            failure_threshold=routing.failure_threshold,
            window_s=routing.window_s,
            error_rate_threshold=routing.error_rate_threshold,
            min_requests=routing.min_requests,
            open_s=routing.open_s,
            half_open_probes=routing.half_open_probes,
        )
    )
    state = AppState(
        settings=settings,
        catalog=catalog,
        router=Router(catalog, providers, health),
        store=store,
        writer=writer,
        keys=keys,
        wallets=wallets,
        upstream=upstream,
        metrics=metrics,
        health=health,
        started_at=time.monotonic(),
    )
    return state, StateRefresher(store, keys, wallets, interval=refresh_interval)


def create_app(settings: Settings | None = None, *, refresh_interval: float = 0.5) -> GatewayApp:
    """The gateway ASGI app; ``settings`` default to the config file and environment.

    ``refresh_interval`` is how often keys and wallets are reloaded from the database; it bounds
    how long a revocation or a credit grant takes to reach this process.
    """
    settings = settings or load_settings()
    state, refresher = build_state(settings, refresh_interval)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await prepare_database(state.store, state.keys.pepper, issue_key=False)
        await refresher.refresh()
        await state.upstream.start()
        health_sync = RedisHealthSync(state.health, settings.redis_url) if settings.redis_url else None
        if health_sync is not None:
            await health_sync.start()
        state.writer.start()
        refresher.start()
        state.metrics.start()
        # Start-up objects (catalog, routes, modules) never die: keep them out of every GC pass.
        gc.freeze()
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            await state.metrics.stop()
            if health_sync is not None:
                await health_sync.stop()
            await refresher.stop()
            if state.background:  # e.g. abandoned streams still being counted and recorded
                await asyncio.gather(*state.background, return_exceptions=True)
            await state.writer.stop()  # drains every queued usage record and charge
            await state.upstream.close()
            await state.store.engine.dispose()

    inference = {
        "/v1/chat/completions": InferenceEndpoint(state, "chat"),
        "/v1/responses": InferenceEndpoint(state, "responses"),
        "/v1/messages": InferenceEndpoint(state, "messages"),
    }
    routes = [
        *(Route(path, endpoint, methods=["POST"]) for path, endpoint in inference.items()),
        *ModelsEndpoints(state.catalog, state.router).routes(),
        *AccountEndpoints(state).routes(),
        *HealthEndpoint(state, refresher).routes(),
        *MetricsEndpoint(state.metrics).routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.gateway = state  # for tests and tools; endpoints get it explicitly
    return GatewayApp(inference, app)


class GatewayApp:
    """The ASGI entry point: inference POSTs go straight to their handler, the rest to Starlette."""

    def __init__(self, fast_routes: Mapping[str, ASGIApp], fallback: Starlette) -> None:
        self._fast_routes = fast_routes
        self._fallback = fallback
        self.state = fallback.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._fast_routes.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self._fallback(scope, receive, send)
