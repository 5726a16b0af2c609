"""A video job as stored in ``video_jobs``, and its OpenAI wire shape (``object: "video"``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping

from ..ids import new_ulid
from ..money import nanos_to_usd

VIDEO_PREFIX = "video_"
RUNNING = ("queued", "in_progress")
TERMINAL = ("completed", "failed", "cancelled")


def new_video_id() -> str:
    """A new ``video_<ULID>`` job id."""
    return VIDEO_PREFIX + new_ulid()


@dataclass(slots=True)
class VideoJob:
    """One row of ``video_jobs``."""

    id: str
    workspace_id: str
    key_id: str | None
    generation_id: str
    model: str
    provider: str | None
    upstream_model: str | None
    upstream_id: str | None
    status: str
    progress: int
    seconds: int
    size: str
    error: dict[str, Any] | None
    request: dict[str, Any]
    reserved_nano: int
    cost_nano: int
    content_path: str | None
    content_type: str | None
    content_bytes: int | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    next_poll_at: datetime | None
    poll_attempts: int
    lease_owner: str | None
    lease_until: datetime | None
    cancel_requested: bool
    settled_at: datetime | None
    deleted_at: datetime | None

    @classmethod
    def from_row(cls, row: RowMapping) -> VideoJob:
        return cls(**{name: row[name] for name in _FIELDS})

    def to_api(self) -> dict[str, Any]:
        """The OpenAI video job object, plus the gateway's ``generation_id`` and ``cost``."""
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": self.status,
            "progress": self.progress,
            "created_at": _unix(self.created_at),
            "completed_at": _unix(self.completed_at),
            "expires_at": _unix(self.expires_at),
            "seconds": str(self.seconds),
            "size": self.size,
            "prompt": self.request.get("prompt"),
            "remixed_from_video_id": None,
            "error": self.error,
            "generation_id": self.generation_id,
            "cost": nanos_to_usd(self.cost_nano) if self.status == "completed" else 0.0,
        }


_FIELDS = tuple(field.name for field in fields(VideoJob))


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None
