"""Assembles the ASGI app: routes, and a lifespan that owns the database, pools and writer."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .api.account import AccountEndpoints
from .api.byok import ByokEndpoints
from .api.embeddings import EmbeddingsEndpoint
from .api.errors import GatewayError, error_response
from .api.health import HealthEndpoint
from .api.images import ImagesEndpoint
from .api.inference import InferenceEndpoint
from .api.management import ManagementEndpoints
from .api.metrics import MetricsEndpoint
from .api.models import ModelsEndpoints
from .api.videos import VideoEndpoints
from .bootstrap import prepare_database
from .byok.cache import CredentialCache
from .byok.crypto import Keyring
from .catalog import load_catalog
from .ids import new_generation_id
from .jobs.runner import VideoRunner, runner_id
from .jobs.service import VideoService
from .jobs.store import VideoJobStore
from .jobs.upstream import new_http_client
from .keys import load_or_create_pepper
from .metrics import Metrics
from .metrics_workers import WorkerMetricsGroup, group_directory
from .pipeline.auth import KeyCache
from .pipeline.billing import WalletBook
from .pipeline.health import BreakerConfig, HealthTracker
from .pipeline.health_sync import RedisHealthSync
from .pipeline.limits import Limiter
from .pipeline.refresher import FlushTrackingStore, StateRefresher
from .pipeline.routing import Router
from .pipeline.wallet_redis import RedisWallets, SharedWalletUnavailable
from .providers import build_providers
from .providers.http import UpstreamClient
from .settings import Settings, load_settings
from .state import AppState
from .store.db import close_store, create_store
from .store.spool import spool_for
from .store.sqlite_writer import WriterAddress
from .store.writer import BatchedWriter
from .tasks import cancel_and_wait
from .telemetry import load_tracing

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


def build_state(
    settings: Settings, refresh_interval: float = 0.5, upstream: UpstreamClient | None = None
) -> tuple[AppState, StateRefresher]:
    """Everything the request path needs, wired explicitly (started by the lifespan)."""
    catalog = load_catalog(settings)
    upstream = upstream or UpstreamClient()
    providers = build_providers(settings.providers, upstream)
    # `serve` on a SQLite file runs one writer process for all its workers (decision 011).
    store = create_store(settings.database_url, WriterAddress.from_env(os.environ))
    wallets = WalletBook(RedisWallets(settings.redis_url) if settings.redis_url else None)
    keys = KeyCache(load_or_create_pepper(settings.key_pepper, settings.data_dir))
    writer = BatchedWriter(
        FlushTrackingStore(store, wallets),
        on_flushed=wallets.flushed,
        spool=spool_for(settings.data_dir, settings.writer.spool_max_mb),
        spool_after_s=settings.writer.spool_after_s,
        on_refused=wallets.refused,
    )
    metrics = Metrics(
        writer_depth=lambda: writer.queue_depth,
        spool_usage=lambda: writer.spool_usage,
        refused_records=lambda: writer.refused_total,
    )
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
        limiter=Limiter(
            settings.limits.free,
            wallets.ever_topped_up,
            redis_url=settings.redis_url,
        ),
        started_at=time.monotonic(),
        credentials=CredentialCache(
            Keyring(settings.byok.master_keys) if settings.byok.master_keys else None, settings.byok.fee
        ),
    )
    return state, StateRefresher(
        store, keys, wallets, interval=refresh_interval, credentials=state.credentials
    )


async def _start_wallet_sync(wallets: WalletBook) -> asyncio.Task[None] | None:
    """With Redis wallets: load the scripts and keep Redis in step in the background."""
    if wallets.shared is None:
        return None
    try:
        await wallets.shared.start()
    except SharedWalletUnavailable as exc:  # paid requests answer 503 until Redis is back
        log.error("shared wallet (Redis) unreachable at start-up: %s", exc)
    return asyncio.create_task(wallets.run_shared_sync(), name="aistats-wallet-sync")


async def _stop_wallet_sync(wallets: WalletBook, task: asyncio.Task[None] | None) -> None:
    """Send the last settlements to Redis (best effort), then stop the task and the client."""
    if task is None or wallets.shared is None:
        return
    await cancel_and_wait(task)
    try:
        await wallets.sync_shared()
    except SharedWalletUnavailable as exc:
        log.error("%d wallet settlements could not be sent to Redis at shutdown: %s", wallets.unsent, exc)
    await wallets.shared.close()


def create_app(settings: Settings | None = None, *, refresh_interval: float = 0.5) -> GatewayApp:
    """The gateway ASGI app; ``settings`` default to the config file and environment.

    ``refresh_interval`` is how often keys and wallets are reloaded from the database; it bounds
    how long a revocation or a credit grant takes to reach this process.
    """
    settings = settings or load_settings()
    tracing = load_tracing(settings.telemetry)  # None unless traces are configured
    state, refresher = build_state(
        settings, refresh_interval, tracing.upstream_client() if tracing is not None else None
    )
    # With --workers N, /metrics merges every worker's numbers (docs/decisions/010).
    worker_metrics = (
        WorkerMetricsGroup(
            state.metrics,
            group_directory(settings.data_dir),
            interval_s=settings.telemetry.metrics_snapshot_s,
        )
        if settings.workers > 1
        else None
    )
    video_client = new_http_client()
    videos = VideoService(state, VideoJobStore(state.store.engine), video_client, runner_id())
    video_runner = VideoRunner(videos)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await prepare_database(state.store, state.keys.pepper, issue_key=False)
        await state.writer.replay_orphans()  # records a crashed process spooled, before balances load
        await refresher.refresh()
        await state.limiter.start(state.store)  # spend-limit counters seeded from the records
        await state.upstream.start()
        health_sync = RedisHealthSync(state.health, settings.redis_url) if settings.redis_url else None
        if health_sync is not None:
            await health_sync.start()
        state.writer.start()
        refresher.start()
        wallet_sync = await _start_wallet_sync(state.wallets)
        state.metrics.start()
        if worker_metrics is not None:
            worker_metrics.start()
        await video_runner.start()
        # Start-up objects (catalog, routes, modules) never die: keep them out of every GC pass.
        gc.freeze()
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            await video_runner.stop()  # before the writer: its settlements go through it
            await video_client.aclose()
            await state.metrics.stop()
            if worker_metrics is not None:
                await worker_metrics.stop()
            if health_sync is not None:
                await health_sync.stop()
            await refresher.stop()
            if state.background:  # e.g. abandoned streams still being counted and recorded
                await asyncio.gather(*state.background, return_exceptions=True)
            await state.writer.stop()  # drains every queued usage record and charge
            await state.limiter.stop()
            await _stop_wallet_sync(state.wallets, wallet_sync)
            await state.upstream.close()
            await close_store(state.store)
            if tracing is not None:  # exports the spans still queued
                await asyncio.to_thread(tracing.shutdown)

    inference = {
        "/v1/chat/completions": InferenceEndpoint(state, "chat"),
        "/v1/responses": InferenceEndpoint(state, "responses"),
        "/v1/messages": InferenceEndpoint(state, "messages"),
    }
    routes = [
        *(Route(path, endpoint, methods=["POST"]) for path, endpoint in inference.items()),
        Route("/v1/embeddings", EmbeddingsEndpoint(state), methods=["POST"]),
        Route("/v1/images/generations", ImagesEndpoint(state), methods=["POST"]),
        *ModelsEndpoints(state.catalog, state.router).routes(),
        *AccountEndpoints(state).routes(),
        *ByokEndpoints(state).routes(),
        *ManagementEndpoints(state).routes(),
        *HealthEndpoint(state, refresher).routes(),
        *(
            MetricsEndpoint(worker_metrics, process_metrics=False)
            if worker_metrics is not None
            else MetricsEndpoint(state.metrics)
        ).routes(),
        *VideoEndpoints(videos).routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.gateway = state  # for tests and tools; endpoints get it explicitly
    app.state.video_runner = video_runner
    if tracing is not None:
        return TracedGatewayApp(inference, app, tracing.middleware)
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


class TracedGatewayApp(GatewayApp):
    """:class:`GatewayApp` behind the tracing middleware (built only when traces are on, so the
    default path has no extra layer)."""

    def __init__(
        self,
        fast_routes: Mapping[str, ASGIApp],
        fallback: Starlette,
        middleware: Callable[[ASGIApp], ASGIApp],
    ) -> None:
        super().__init__(fast_routes, fallback)
        self._traced = middleware(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._traced(scope, receive, send)
