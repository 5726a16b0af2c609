"""The background runner: claims due video jobs under a lease, polls providers, keeps content.

One runner per gateway process. Each tick it asks the database for due jobs and claims each with
an atomic conditional UPDATE (see :mod:`.store`), so several processes share the work and never
poll one job at once. Polls back off from ``videos.poll_initial_s`` to ``videos.poll_max_s``. A
finished video is downloaded into ``<storage_dir>/<id>.<ext>`` before the job is marked
completed, so downloads never depend on the provider's expiring URLs; a cleanup pass deletes
content past ``videos.retention_days``. After a restart, the holds of running jobs are taken
again and the jobs carry on from their stored state. A job created with the workspace's own
provider key (BYOK) is polled and downloaded with that key, looked up again at each step; once
the key is gone the job fails (nothing billed) with an error saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import socket
import time
from datetime import datetime, timedelta
from pathlib import Path

from ..ids import new_ulid
from ..providers.base import UpstreamFailure
from ..store.tables import video_jobs
from .records import RUNNING, TERMINAL, VideoJob
from .service import ByokKeyGone, VideoService, remove_content, status_failure, storage_dir
from .store import utcnow
from .upstream import UpstreamState, VideoSpec, VideoUpstream

log = logging.getLogger(__name__)

CLAIMS_PER_TICK = 8
CLEANUP_EVERY_S = 60.0


def runner_id() -> str:
    """A name for this runner in leases: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_ulid()[-8:]}"


class VideoRunner:
    """Drives every due job of the shared database one step further, under a lease."""

    def __init__(self, service: VideoService) -> None:
        self.service = service
        self.store = service.store
        self.settings = service.settings
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._last_cleanup = 0.0
        self.passes = 0  # ticks finished (tests wait for the first one)

    async def start(self) -> None:
        """Re-hold running jobs' credits, then run in the background."""
        self.service.restore_holds(await self.store.running())
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="video-runner")

    async def stop(self) -> None:
        """Stop after the current step (a lease held now simply expires if a step is cut)."""
        self._stopping.set()
        self.service.wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("video runner: a tick failed; retrying")
            self.passes += 1
            self.service.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.service.wake.wait(), self.settings.tick_s)

    async def tick(self) -> None:
        """One pass: drop holds settled elsewhere, clean up old content, step every due job."""
        service = self.service
        service.drop_holds(await self.store.settled_among(list(service.holds)))
        if time.monotonic() - self._last_cleanup > CLEANUP_EVERY_S:
            self._last_cleanup = time.monotonic()
            await self.cleanup()
        due = await self.store.due(utcnow(), CLAIMS_PER_TICK)
        steps = []
        for job_id in due:
            job = await self.store.claim(job_id, service.owner, self.settings.lease_s)
            if job is not None:
                steps.append(self.step(job))
        if steps:
            await asyncio.gather(*steps)

    async def cleanup(self) -> None:
        """Delete content past its retention and files of deleted jobs."""
        for job in await self.store.expired_content(utcnow()):
            remove_content(job)
            await self.store.update(job.id, content_path=None)

    async def step(self, job: VideoJob) -> None:
        """Move one claimed job on; the lease is always given back."""
        try:
            if job.status in TERMINAL:
                await self._finish(job)
            elif job.upstream_id is None:
                await self._resubmit(job)
            elif utcnow() - job.created_at > timedelta(seconds=self.settings.max_age_s):
                await self._fail(job, {"code": "timeout", "message": "The provider did not finish in time."})
            else:
                await self._poll(job)
        except Exception:
            log.exception("video job %s: step failed; it will be retried", job.id)
            await self.store.release(job.id, self.service.owner, next_poll_at=self._next_poll(job))

    def _next_poll(self, job: VideoJob) -> datetime:
        wait = min(self.settings.poll_initial_s * 2 ** min(job.poll_attempts, 20), self.settings.poll_max_s)
        return utcnow() + timedelta(seconds=wait)

    async def _running_update(self, job: VideoJob, **values: object) -> bool:
        """Write a running job's new state unless it was cancelled meanwhile; release the lease."""
        owner = self.service.owner
        done = await self.store.update(
            job.id,
            only_if=(video_jobs.c.lease_owner == owner) & video_jobs.c.status.in_(RUNNING),
            lease_owner=None,
            lease_until=None,
            **values,
        )
        if not done:
            await self.store.release(job.id, owner)
        return done

    async def _poll(self, job: VideoJob) -> None:
        adapter = self.service.adapter(job.provider or "")
        if adapter is None:
            await self._fail(
                job, {"code": "provider_removed", "message": f"Provider '{job.provider}' is gone."}
            )
            return
        try:
            credential = self.service.credential(job)
        except ByokKeyGone as gone:
            await self._fail(job, gone.error)
            return
        try:
            state = await adapter.poll(job.upstream_id or "", credential)
        except UpstreamFailure as failure:
            if not failure.retryable:
                await self._fail(job, status_failure(failure))
                return
            log.warning("video job %s: polling failed (%s); backing off", job.id, failure.message)
            await self._running_update(
                job, poll_attempts=job.poll_attempts + 1, next_poll_at=self._next_poll(job)
            )
            return
        if state.status == "failed":
            await self._fail(job, state.error)
        elif state.status == "completed":
            await self._complete(job, adapter, state, credential)
        else:
            await self._running_update(
                job,
                status=state.status,
                progress=max(job.progress, state.progress),
                poll_attempts=job.poll_attempts + 1,
                next_poll_at=self._next_poll(job),
            )

    async def _complete(
        self, job: VideoJob, adapter: VideoUpstream, state: UpstreamState, credential: str | None
    ) -> None:
        directory = storage_dir(self.service.state)
        partial = directory / f"{job.id}.download"
        try:
            content_type = await adapter.download(job.upstream_id or "", state, partial, credential)
        except UpstreamFailure as failure:
            log.warning("video job %s: download failed (%s); retrying", job.id, failure.message)
            await self._running_update(
                job, poll_attempts=job.poll_attempts + 1, next_poll_at=self._next_poll(job)
            )
            return
        extension = mimetypes.guess_extension(content_type) or ".bin"
        path = directory / f"{job.id}{'.mp4' if content_type == 'video/mp4' else extension}"
        os.replace(partial, path)
        now = utcnow()
        job.status, job.completed_at = "completed", now
        if not await self._running_update(
            job,
            status="completed",
            progress=100,
            content_path=str(path),
            content_type=content_type,
            content_bytes=path.stat().st_size,
            completed_at=now,
            expires_at=now + timedelta(days=self.settings.retention_days),
            error=None,
        ):
            path.unlink(missing_ok=True)  # cancelled meanwhile: nothing is kept or billed
            return
        fresh = await self.store.claim(job.id, self.service.owner, self.settings.lease_s)
        if fresh is not None:
            await self._finish(fresh)

    async def _fail(self, job: VideoJob, error: dict | None) -> None:
        now = utcnow()
        error = error or {"code": "video_generation_failed", "message": "The video could not be generated."}
        if await self._running_update(job, status="failed", error=error, completed_at=now):
            fresh = await self.store.claim(job.id, self.service.owner, self.settings.lease_s)
            if fresh is not None:
                await self._finish(fresh)

    async def _resubmit(self, job: VideoJob) -> None:
        """A job whose submission was cut short (the process died): submit it now."""
        image_path = job.request.get("image_path")
        spec = VideoSpec(
            prompt=str(job.request.get("prompt", "")),
            seconds=job.seconds,
            size=job.size,
            image=Path(image_path).read_bytes() if image_path else None,
            image_type=job.request.get("image_type"),
        )
        byok = self.service.state.credentials.for_workspace(job.workspace_id)
        try:
            usable = self.service.candidates(job.model, spec, byok)
            await self.service.submit(job, usable, spec, byok)
        except Exception as exc:
            message = getattr(exc, "message", str(exc))
            await self._fail(job, {"code": "submit_failed", "message": message})

    async def _finish(self, job: VideoJob) -> None:
        """A finished job: stop it upstream if it was cancelled, then settle its billing."""
        service = self.service
        if job.status == "cancelled" and job.cancel_requested and job.upstream_id:
            adapter = service.adapter(job.provider or "")
            if adapter is not None:
                try:
                    await adapter.cancel(job.upstream_id, service.credential(job))
                except ByokKeyGone:
                    log.info("video job %s: not cancelled upstream (its BYOK key is gone)", job.id)
                except UpstreamFailure as failure:
                    log.info("video job %s: upstream cancel failed (%s)", job.id, failure.message)
        settled = await service.settle(job)
        await self.store.release(job.id, service.owner, **({"settled_at": utcnow()} if settled else {}))
