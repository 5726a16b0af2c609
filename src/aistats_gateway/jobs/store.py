"""Reads and writes of ``video_jobs``: the API's lookups and the runner's leased claims.

A runner owns a job while ``lease_until`` is in the future. Claiming is one conditional
``UPDATE … WHERE lease_until IS NULL OR lease_until < now``: atomic on SQLite and Postgres, so
two runners (in one process or many) never work on the same job at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..store.tables import video_jobs
from .records import RUNNING, TERMINAL, VideoJob


def utcnow() -> datetime:
    return datetime.now(UTC)


class VideoJobStore:
    """Repository of video jobs over the gateway's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, job: VideoJob) -> None:
        values = {name: getattr(job, name) for name in VideoJob.__dataclass_fields__}
        async with self._engine.begin() as conn:
            await conn.execute(video_jobs.insert().values(**values))

    async def get(self, job_id: str) -> VideoJob | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(video_jobs).where(video_jobs.c.id == job_id))).mappings().first()
        return VideoJob.from_row(row) if row is not None else None

    async def get_visible(self, job_id: str, workspace_id: str) -> VideoJob | None:
        """The job if it belongs to ``workspace_id`` and was not deleted (else None: a 404)."""
        job = await self.get(job_id)
        if job is None or job.workspace_id != workspace_id or job.deleted_at is not None:
            return None
        return job

    async def page(
        self, workspace_id: str, *, after: str | None, limit: int, descending: bool
    ) -> tuple[list[VideoJob], bool]:
        """One page of a workspace's jobs by id (ULIDs sort by creation) and whether more follow."""
        query = select(video_jobs).where(
            video_jobs.c.workspace_id == workspace_id, video_jobs.c.deleted_at.is_(None)
        )
        if after:
            query = query.where(video_jobs.c.id < after if descending else video_jobs.c.id > after)
        order = video_jobs.c.id.desc() if descending else video_jobs.c.id.asc()
        query = query.order_by(order).limit(limit + 1)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        jobs = [VideoJob.from_row(row) for row in rows]
        return jobs[:limit], len(jobs) > limit

    async def update(self, job_id: str, *, only_if: Any = None, **values: Any) -> bool:
        """Set columns on one job (``updated_at`` too); ``only_if`` adds a condition. True if it matched."""
        query = update(video_jobs).where(video_jobs.c.id == job_id)
        if only_if is not None:
            query = query.where(only_if)
        async with self._engine.begin() as conn:
            result = await conn.execute(query.values(updated_at=utcnow(), **values))
        return bool(result.rowcount)

    # -- the runner ---------------------------------------------------------------------------

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Ids of jobs with work to do and no live lease: running jobs whose poll is due, and
        finished jobs whose billing is not settled yet."""
        lease_free = or_(video_jobs.c.lease_until.is_(None), video_jobs.c.lease_until < now)
        work = or_(
            and_(video_jobs.c.status.in_(RUNNING), video_jobs.c.next_poll_at <= now),
            and_(video_jobs.c.status.in_(TERMINAL), video_jobs.c.settled_at.is_(None)),
        )
        query = (
            select(video_jobs.c.id).where(lease_free, work).order_by(video_jobs.c.next_poll_at).limit(limit)
        )
        async with self._engine.connect() as conn:
            return [row[0] for row in await conn.execute(query)]

    async def claim(self, job_id: str, owner: str, lease_s: float) -> VideoJob | None:
        """Take the lease on one job; None when another runner holds it (atomic)."""
        now = utcnow()
        query = (
            update(video_jobs)
            .where(
                video_jobs.c.id == job_id,
                or_(video_jobs.c.lease_until.is_(None), video_jobs.c.lease_until < now),
            )
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
        )
        async with self._engine.begin() as conn:
            claimed = (await conn.execute(query)).rowcount == 1
        return await self.get(job_id) if claimed else None

    async def release(self, job_id: str, owner: str, **values: Any) -> bool:
        """Write ``values`` and give the lease back, if this runner still holds it."""
        return await self.update(
            job_id, only_if=video_jobs.c.lease_owner == owner, lease_owner=None, lease_until=None, **values
        )

    async def running(self) -> list[VideoJob]:
        """Every job whose hold may still be needed: running, or finished but not settled."""
        query = select(video_jobs).where(
            or_(video_jobs.c.status.in_(RUNNING), video_jobs.c.settled_at.is_(None))
        )
        async with self._engine.connect() as conn:
            return [VideoJob.from_row(row) for row in (await conn.execute(query)).mappings()]

    async def settled_among(self, job_ids: list[str]) -> list[str]:
        """Which of ``job_ids`` are settled (or gone): their holds can be dropped."""
        if not job_ids:
            return []
        query = select(video_jobs.c.id).where(video_jobs.c.id.in_(job_ids), video_jobs.c.settled_at.is_(None))
        async with self._engine.connect() as conn:
            unsettled = {row[0] for row in await conn.execute(query)}
        return [job_id for job_id in job_ids if job_id not in unsettled]

    async def expired_content(self, now: datetime) -> list[VideoJob]:
        """Jobs whose stored content is past its retention (or whose job was deleted)."""
        query = select(video_jobs).where(
            video_jobs.c.content_path.is_not(None),
            or_(video_jobs.c.expires_at < now, video_jobs.c.deleted_at.is_not(None)),
        )
        async with self._engine.connect() as conn:
            return [VideoJob.from_row(row) for row in (await conn.execute(query)).mappings()]
