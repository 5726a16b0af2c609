"""Video jobs end to end: submit with failover, hold and settle credits, cancel, delete.

Shared by the API (``api/videos.py``) and the runner. Billing: the worst case over the
candidates (seconds x the route's ``video_second`` price, plus its ``request`` fee) is held in
the wallet book at creation and kept in the row (``reserved_nano``) because an in-memory hold
does not survive a restart; the serving route's price is fixed in ``cost_nano`` when a provider
accepts the job. Settling writes the generation record and its charge through the batched writer
and waits until they are committed before marking the job settled: the ledger's unique
``generation_id`` makes a repeated settlement (after a crash in between) a no-op.

Creating a job goes through the key's limits and the free tier like every request (the limit
ticket is settled with the job, by the process that created it), and uses the workspace's own
provider key (BYOK) when it has one: such a job is marked ``request.byok`` and billed the BYOK
fee of its cost, and the runner polls, downloads and cancels it with the workspace's key as the
credential cache holds it then (:meth:`VideoService.credential`); a job whose key is gone fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from ..api.errors import GatewayError
from ..byok.cache import NO_CREDENTIALS
from ..byok.fee import ByokFee
from ..canonical import Usage
from ..ids import new_generation_id
from ..pipeline.auth import Principal
from ..pipeline.billing import Reservation
from ..pipeline.health_report import report_failure
from ..pipeline.limits import LimitTicket
from ..pipeline.routing import Candidate
from ..pipeline.upstream_errors import to_gateway_error
from ..providers.base import UpstreamFailure, UpstreamStatusError
from ..settings import ProviderConfig, VideoSettings
from ..state import AppState
from ..store.records import Charge, GenerationRecord, storable_text
from ..store.tables import video_jobs
from .records import RUNNING, VideoJob, new_video_id
from .store import VideoJobStore, utcnow
from .upstream import VideoSpec, VideoUpstream
from .upstream_openai import OpenAIVideos
from .upstream_veo import VeoVideos

log = logging.getLogger(__name__)

# Provider types with a video API, and the adapter that speaks it.
VIDEO_ADAPTERS: dict[str, Callable[[ProviderConfig, httpx.AsyncClient, float], VideoUpstream]] = {
    "openai": OpenAIVideos,
    "openai_compatible": OpenAIVideos,
    "google": VeoVideos,
}


def storage_dir(state: AppState) -> Path:
    return state.settings.videos.storage_dir or state.settings.data_dir / "videos"


def job_cost(candidate: Candidate, seconds: int, fee: ByokFee | None = None) -> int:
    """What the job costs on this route: seconds x ``video_second`` plus the ``request`` fee;
    ``fee`` of that when it runs on the workspace's own key (BYOK)."""
    cost = candidate.route.price.cost(Usage(), requests=1, video_seconds=seconds)
    return cost if fee is None else fee.apply(cost)


class ByokKeyGone(Exception):
    """A job created with the workspace's own provider key, which is no longer there."""

    def __init__(self, job: VideoJob) -> None:
        self.error = {
            "code": "byok_key_missing",
            "message": (
                f"This job was created with the workspace's own key for provider '{job.provider}' "
                "(BYOK), which has since been deleted or revoked (or cannot be decrypted); the "
                "provider's job cannot be followed without it. Nothing is billed."
            ),
        }
        super().__init__(self.error["message"])


class VideoService:
    """Operations on video jobs for one gateway process (``owner`` names it in leases)."""

    def __init__(self, state: AppState, store: VideoJobStore, client: httpx.AsyncClient, owner: str) -> None:
        self.state = state
        self.store = store
        self.owner = owner
        self.settings: VideoSettings = state.settings.videos
        self._client = client
        self._adapters: dict[str, VideoUpstream] = {}
        self.holds: dict[str, Reservation] = {}  # job id -> this process's hold on the wallet
        self.tickets: dict[str, LimitTicket] = {}  # job id -> its admission against the key's limits
        self.wake = asyncio.Event()  # set when a job needs the runner now

    def adapter(self, provider: str) -> VideoUpstream | None:
        """The video adapter of a configured provider (None: its type has no video API)."""
        cached = self._adapters.get(provider)
        if cached is None:
            config = self.state.settings.providers.get(provider)
            factory = VIDEO_ADAPTERS.get(config.type) if config is not None else None
            if config is None or factory is None:
                return None
            cached = self._adapters[provider] = factory(config, self._client, self.settings.timeout_s)
        return cached

    # -- create -------------------------------------------------------------------------------

    def credential(self, job: VideoJob) -> str | None:
        """The key to follow ``job`` with: None for the gateway's own, else the workspace's own
        key for the job's provider as the credential cache holds it now; :class:`ByokKeyGone`
        when that key was deleted or revoked since."""
        if not job.request.get("byok"):
            return None
        credential = self.state.credentials.for_workspace(job.workspace_id).get(job.provider or "")
        if credential is None:
            raise ByokKeyGone(job)
        return credential

    def candidates(
        self, model: str, spec: VideoSpec, byok: Mapping[str, str] = NO_CREDENTIALS
    ) -> list[tuple[Candidate, VideoUpstream]]:
        """The plan's candidates that can make ``spec`` (``byok``: the providers the workspace has
        its own key for); 400/404/503 when none can."""
        plan = self.state.router.plan({"model": model}, "videos", byok)
        ordered = plan.candidates if plan.allow_fallbacks else plan.candidates[:1]
        usable: list[tuple[Candidate, VideoUpstream]] = []
        first_error: GatewayError | None = None
        for candidate in ordered:
            adapter = self.adapter(candidate.provider.config.name)
            if adapter is None:
                first_error = first_error or GatewayError(
                    "validation_error",
                    f"Provider '{candidate.provider.config.name}' (type {candidate.provider.config.type}) "
                    "has no video API the gateway speaks (openai, openai_compatible and google do)",
                    param="model",
                )
                continue
            try:
                adapter.check(spec)
            except GatewayError as error:
                first_error = first_error or error
                continue
            usable.append((candidate, adapter))
        if not usable:
            assert first_error is not None
            raise first_error
        return usable

    async def create(self, principal: Principal, model: str, spec: VideoSpec) -> VideoJob:
        """Hold the credits, store the job, submit it upstream (with failover); the stored job."""
        state = self.state
        byok = state.credentials.for_workspace(principal.workspace_id)
        fee = state.credentials.fee
        usable = self.candidates(model, spec, byok)
        worst = 0
        for candidate, _ in usable:
            cost = candidate.route.price.worst_case(0, 0, video_seconds=spec.seconds)
            worst = max(worst, fee.apply(cost) if candidate.provider.config.name in byok else cost)
        generation_id = new_generation_id()
        ticket = await state.limiter.admit(  # key limits + free tier, as every request
            principal, model, free=model.endswith(":free"), hold_nano=worst
        )
        try:
            hold = await state.wallets.hold(principal.workspace_id, worst, generation_id)
        except BaseException:
            if ticket is not None:
                ticket.settle(0, 0)
            raise
        job_id = new_video_id()
        request: dict[str, Any] = {"prompt": spec.prompt}
        if spec.image is not None:
            path = storage_dir(self.state) / f"{job_id}.input"
            path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(path.write_bytes, spec.image)
            request["image_path"] = str(path)
            request["image_type"] = spec.image_type
        now = utcnow()
        job = VideoJob(
            id=job_id, workspace_id=principal.workspace_id, key_id=principal.kid,
            generation_id=generation_id, model=model, provider=None, upstream_model=None,
            upstream_id=None, status="queued", progress=0, seconds=spec.seconds, size=spec.size,
            error=None, request=request, reserved_nano=worst, cost_nano=0, content_path=None,
            content_type=None, content_bytes=None, created_at=now, updated_at=now, completed_at=None,
            expires_at=None, next_poll_at=now + timedelta(seconds=self.settings.poll_initial_s),
            poll_attempts=0, lease_owner=self.owner,
            lease_until=now + timedelta(seconds=self.settings.lease_s), cancel_requested=False,
            settled_at=None, deleted_at=None,
        )  # fmt: skip
        try:
            await self.store.insert(job)
        except Exception:
            self.state.wallets.release(hold)
            if ticket is not None:
                ticket.settle(0, 0)
            raise
        self.holds[job_id] = hold
        if ticket is not None:
            self.tickets[job_id] = ticket
        try:
            await self.submit(job, usable, spec, byok)
        except GatewayError as error:
            # No provider took it: like a failed request, nothing is billed and no job remains.
            job.status, job.error = "failed", {"code": error.reason, "message": error.message}
            settled = await self.settle(job)
            await self.store.release(
                job_id, self.owner, status="failed", error=job.error, deleted_at=utcnow(),
                settled_at=utcnow() if settled else None,
            )  # fmt: skip
            raise
        return await self.store.get(job_id) or job

    async def submit(
        self,
        job: VideoJob,
        usable: list[tuple[Candidate, VideoUpstream]],
        spec: VideoSpec,
        byok: Mapping[str, str] = NO_CREDENTIALS,
    ) -> None:
        """The attempt loop: the first candidate that accepts the job serves it (the lease is ours).

        A candidate whose provider the workspace has its own key for (``byok``) is sent that key;
        the job is then marked ``request.byok`` and costs the BYOK fee of its price."""
        routing = self.state.settings.routing
        health = self.state.health
        last: UpstreamFailure | None = None
        for candidate, adapter in usable[: routing.max_attempts]:
            name, upstream_model = candidate.provider.config.name, candidate.route.model
            if not health.allow(name, upstream_model):
                continue
            credential = byok.get(name) if byok else None
            started = time.perf_counter()
            try:
                upstream_id, _ = await adapter.create(upstream_model, spec, credential)
            except UpstreamFailure as failure:
                report_failure(health, name, upstream_model, failure, time.perf_counter() - started)
                last = failure
                if not failure.retryable:
                    break
                continue
            health.record_success(name, upstream_model, latency_s=time.perf_counter() - started)
            byok_fee = self.state.credentials.fee if credential is not None else None
            cost = job_cost(candidate, spec.seconds, byok_fee)
            job.provider, job.upstream_model, job.upstream_id, job.cost_nano = (
                name,
                upstream_model,
                upstream_id,
                cost,
            )
            job.request = {**job.request, "byok": credential is not None}
            await self.store.release(
                job.id, self.owner, provider=name, upstream_model=upstream_model, upstream_id=upstream_id,
                cost_nano=cost, model=candidate.model.id, request=job.request,
            )  # fmt: skip
            self.wake.set()
            return
        if last is not None:
            raise to_gateway_error(last)
        raise GatewayError(
            "no_provider_available",
            f"Every provider for '{job.model}' is failing (circuit open); retry later.",
            code="circuit_open",
            retry_after=1,
        )

    # -- cancel and delete --------------------------------------------------------------------

    async def cancel(self, job: VideoJob) -> VideoJob:
        """Stop a running job (billing nothing); a finished one is returned as it is."""
        now = utcnow()
        await self.store.update(
            job.id, only_if=video_jobs.c.status.in_(RUNNING), status="cancelled", cancel_requested=True,
            completed_at=now, next_poll_at=now,
        )  # fmt: skip
        self.wake.set()
        return await self.store.get(job.id) or job

    async def delete(self, job: VideoJob) -> None:
        """Hide the job and remove its content (a running job is cancelled first)."""
        if job.status in RUNNING:
            await self.cancel(job)
        await self.store.update(job.id, deleted_at=utcnow())
        remove_content(job)
        self.wake.set()

    # -- billing ------------------------------------------------------------------------------

    def restore_holds(self, jobs: list[VideoJob]) -> None:
        """Hold again, in this process's wallet book, the credits of jobs still running."""
        for job in jobs:
            if job.id in self.holds:
                continue
            wallets = self.state.wallets
            self.holds[job.id] = wallets.adopt(job.workspace_id, job.reserved_nano, job.generation_id)

    def drop_holds(self, job_ids: list[str]) -> None:
        """Release holds (and limit tickets) of jobs another process settled."""
        for job_id in job_ids:
            hold = self.holds.pop(job_id, None)
            if hold is not None:
                self.state.wallets.release(hold)
            ticket = self.tickets.pop(job_id, None)
            if ticket is not None:
                ticket.settle(0, 0)

    async def settle(self, job: VideoJob) -> bool:
        """Book a finished job: charge a completed one, release the others. True once committed."""
        state = self.state
        completed = job.status == "completed"
        cost = job.cost_nano if completed else 0
        hold = self.holds.pop(job.id, None)
        ticket = self.tickets.pop(job.id, None)
        if ticket is not None:  # the key's spend limits: the worst case held becomes the cost
            ticket.settle(0, cost)
        if completed:
            state.wallets.settle(hold or state.wallets.adopt(job.workspace_id, 0, job.generation_id), cost)
        elif hold is not None:
            state.wallets.release(hold)
        error = job.error or {}
        ended = job.completed_at or utcnow()
        record = GenerationRecord(
            id=job.generation_id, workspace_id=job.workspace_id, key_id=job.key_id, endpoint="videos",
            model=job.model, provider=job.provider, upstream_model=job.upstream_model, status=job.status,
            streamed=False, finish_reason=None, input_tokens=0, cached_input_tokens=0, output_tokens=0,
            reasoning_tokens=0, cost_nano=cost,
            latency_ms=round((ended - job.created_at).total_seconds() * 1000), ttft_ms=None,
            error=storable_text(f"{error.get('code')}: {error.get('message')}") if error else None,
            created_at=job.created_at, attempts=_byok_attempt(job),
        )  # fmt: skip
        charge = Charge(job.generation_id, job.workspace_id, cost) if completed else None
        state.writer.submit(record, charge)
        deadline = time.monotonic() + self.settings.lease_s / 2
        while state.writer.pending(job.generation_id) is not None:
            if time.monotonic() > deadline:
                log.warning("video job %s: its usage record is not written yet; settling later", job.id)
                return False
            await asyncio.sleep(0.02)
        return True


def _byok_attempt(job: VideoJob) -> list[dict[str, Any]]:
    """The record's attempts: the serving one, marked, when it ran on the workspace's own key."""
    if not job.request.get("byok"):
        return []
    return [{"provider": job.provider, "upstream_model": job.upstream_model, "outcome": "ok", "byok": True}]


def remove_content(job: VideoJob) -> None:
    """Delete the job's stored files (video and input image), ignoring missing ones."""
    paths = [job.content_path, job.request.get("image_path")]
    for path in paths:
        if path:
            Path(path).unlink(missing_ok=True)


def status_failure(failure: UpstreamFailure) -> dict[str, str]:
    """The job's ``error`` for a provider failure."""
    error = to_gateway_error(failure)
    code = "provider_error"
    if isinstance(failure, UpstreamStatusError) and 400 <= failure.status < 500:
        code = "invalid_request"
    return {"code": code, "message": error.message}
