"""initial schema: workspaces, api keys, wallets, ledger, generations, meta

Revision ID: 0001
Revises:
Create Date: 2025-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_workspaces"),
        sa.UniqueConstraint("name", name="uq_workspaces_name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("kid", sa.Text(), nullable=False),
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        _timestamp("created_at"),
        _timestamp("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("kid", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], name="fk_api_keys_workspace_id"),
    )
    op.create_table(
        "wallets",
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("balance_nano", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("granted_total_nano", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("spent_total_nano", sa.BigInteger(), nullable=False, server_default="0"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_wallets"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], name="fk_wallets_workspace_id"),
    )
    op.create_table(
        "ledger_entries",
        # SQLite auto-increments only an INTEGER PRIMARY KEY (the rowid alias).
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount_nano", sa.BigInteger(), nullable=False),
        sa.Column("generation_id", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], name="fk_ledger_entries_workspace_id"),
        # One charge per generation: the conflict target that makes settling idempotent.
        sa.UniqueConstraint("generation_id", name="uq_ledger_entries_generation_id"),
    )
    op.create_index("ix_ledger_entries_workspace_id", "ledger_entries", ["workspace_id"])
    op.create_table(
        "generations",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("workspace_id", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=True),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("upstream_model", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("streamed", sa.Boolean(), nullable=False),
        sa.Column("finish_reason", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_nano", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_generations"),
    )
    op.create_index("ix_generations_workspace_created", "generations", ["workspace_id", "created_at"])
    op.create_index("ix_generations_key_id", "generations", ["key_id"])
    op.create_table(
        "meta",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_index("ix_generations_key_id", table_name="generations")
    op.drop_index("ix_generations_workspace_created", table_name="generations")
    op.drop_table("generations")
    op.drop_index("ix_ledger_entries_workspace_id", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("wallets")
    op.drop_table("api_keys")
    op.drop_table("workspaces")
