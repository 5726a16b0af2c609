"""video_jobs: durable async video jobs polled by the job runner

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "video_jobs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=True),
        sa.Column("generation_id", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("upstream_model", sa.Text(), nullable=True),
        sa.Column("upstream_id", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("size", sa.Text(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("reserved_nano", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cost_nano", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("content_path", sa.Text(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("content_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.Column("completed_at", ts, nullable=True),
        sa.Column("expires_at", ts, nullable=True),
        sa.Column("next_poll_at", ts, nullable=True),
        sa.Column("poll_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_until", ts, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("settled_at", ts, nullable=True),
        sa.Column("deleted_at", ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_video_jobs"),
        sa.UniqueConstraint("generation_id", name="uq_video_jobs_generation_id"),
    )
    op.create_index("ix_video_jobs_workspace_created", "video_jobs", ["workspace_id", "created_at"])
    op.create_index("ix_video_jobs_next_poll_at", "video_jobs", ["next_poll_at"])


def downgrade() -> None:
    op.drop_index("ix_video_jobs_next_poll_at", table_name="video_jobs")
    op.drop_index("ix_video_jobs_workspace_created", table_name="video_jobs")
    op.drop_table("video_jobs")
