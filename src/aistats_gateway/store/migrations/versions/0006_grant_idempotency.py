"""ledger_entries.idempotency_key: a retried credit grant is applied once

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ledger_entries", sa.Column("idempotency_key", sa.Text(), nullable=True))
    # NULLs are distinct in a unique index (SQLite and Postgres): entries without a key never clash.
    op.create_index(
        "uq_ledger_entries_workspace_idempotency",
        "ledger_entries",
        ["workspace_id", "idempotency_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_ledger_entries_workspace_idempotency", table_name="ledger_entries")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("idempotency_key")
