"""SQLAlchemy Core tables: the schema the repositories read and write.

The schema itself is created by the Alembic migrations (``store/migrations/versions``), never by
``metadata.create_all``; these definitions must stay in step with the latest migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    TypeDecorator,
    false,
)

# SQLite only auto-increments an ``INTEGER PRIMARY KEY`` (the rowid alias), not ``BIGINT``.
BigIntegerPk = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every dialect.

    SQLite keeps no offset, so values are normalised to UTC on the way in and get ``UTC``
    attached on the way out; Postgres stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Constraint names are spelled out so migrations can refer to them on every dialect.
NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Text, primary_key=True),  # ws_<ulid, lower case>
    Column("name", Text, nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("kid", Text, primary_key=True),  # 12 chars [a-z0-9]
    Column("workspace_id", Text, ForeignKey("workspaces.id"), nullable=False),
    Column("name", Text, nullable=True),
    Column("secret_hash", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    # 'inference' (calls models) | 'management' (manages its workspace's keys, credits, ledger)
    Column("kind", Text, nullable=False, server_default="inference"),
    Column("limits", JSON, nullable=True),  # key_limits.KeyLimits.to_json(); NULL: unlimited
    Column("updated_at", UtcDateTime, nullable=True),
)

wallets = Table(
    "wallets",
    metadata,
    Column("workspace_id", Text, ForeignKey("workspaces.id"), primary_key=True),
    Column("balance_nano", BigInteger, nullable=False, server_default="0"),
    Column("granted_total_nano", BigInteger, nullable=False, server_default="0"),
    Column("spent_total_nano", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", UtcDateTime, nullable=False),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigIntegerPk, primary_key=True, autoincrement=True),
    Column("workspace_id", Text, ForeignKey("workspaces.id"), nullable=False),
    Column("kind", Text, nullable=False),  # 'grant' | 'charge' | 'adjustment'
    Column("amount_nano", BigInteger, nullable=False),  # signed: charges are negative
    # UNIQUE: at most one charge per generation, which makes settling idempotent.
    Column("generation_id", Text, nullable=True, unique=True),
    Column("note", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    # Set on credit grants made with an Idempotency-Key: a retried grant is applied once.
    Column("idempotency_key", Text, nullable=True),
    Index("ix_ledger_entries_workspace_id", "workspace_id"),
    Index("uq_ledger_entries_workspace_idempotency", "workspace_id", "idempotency_key", unique=True),
)

generations = Table(
    "generations",
    metadata,
    Column("id", Text, primary_key=True),  # gen_<ULID>
    Column("workspace_id", Text, nullable=False),
    Column("key_id", Text, nullable=True),
    Column("endpoint", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("provider", Text, nullable=True),
    Column("upstream_model", Text, nullable=True),
    Column("status", Text, nullable=False),
    Column("streamed", Boolean, nullable=False),
    Column("finish_reason", Text, nullable=True),
    Column("input_tokens", Integer, nullable=False),
    Column("cached_input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("cost_nano", BigInteger, nullable=False),
    Column("latency_ms", Integer, nullable=True),
    Column("ttft_ms", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempts", JSON, nullable=True),  # [{provider, upstream_model, outcome, status, latency_ms}]
    Column("usage_estimated", Boolean, nullable=False, server_default=false()),
    Index("ix_generations_workspace_created", "workspace_id", "created_at"),
    Index("ix_generations_key_id", "key_id"),
)

meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

ALL_TABLES = ("workspaces", "api_keys", "wallets", "ledger_entries", "generations", "meta")

# Async video jobs (jobs/): one row per job, polled by the runner under a lease.
video_jobs = Table(
    "video_jobs",
    metadata,
    Column("id", Text, primary_key=True),  # video_<ULID>
    Column("workspace_id", Text, nullable=False),
    Column("key_id", Text, nullable=True),
    Column("generation_id", Text, nullable=False, unique=True),  # gen_<ULID>: the usage record / charge
    Column("model", Text, nullable=False),
    Column("provider", Text, nullable=True),  # set once a provider accepted the job
    Column("upstream_model", Text, nullable=True),
    Column("upstream_id", Text, nullable=True),  # the provider's job id or operation name
    Column("status", Text, nullable=False),  # queued | in_progress | completed | failed | cancelled
    Column("progress", Integer, nullable=False, server_default="0"),
    Column("seconds", Integer, nullable=False),
    Column("size", Text, nullable=False),
    Column("error", JSON, nullable=True),  # {code, message}
    Column("request", JSON, nullable=False),  # prompt and inputs, enough to submit again
    Column("reserved_nano", BigInteger, nullable=False, server_default="0"),
    Column("cost_nano", BigInteger, nullable=False, server_default="0"),
    Column("content_path", Text, nullable=True),
    Column("content_type", Text, nullable=True),
    Column("content_bytes", BigInteger, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime, nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("next_poll_at", UtcDateTime, nullable=True),
    Column("poll_attempts", Integer, nullable=False, server_default="0"),
    Column("lease_owner", Text, nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("settled_at", UtcDateTime, nullable=True),  # billing done (charge or release written)
    Column("deleted_at", UtcDateTime, nullable=True),  # deleted by its owner: hidden, content removed
    Index("ix_video_jobs_workspace_created", "workspace_id", "created_at"),
    Index("ix_video_jobs_next_poll_at", "next_poll_at"),
)

# BYOK (byok/): a workspace's own provider keys, AES-256-GCM encrypted (byok/crypto.py).
# At most one active (not revoked) credential per workspace and provider; revoking wipes the
# ciphertext and nonce.
provider_credentials = Table(
    "provider_credentials",
    metadata,
    Column("id", Text, primary_key=True),  # cred_<ULID>
    Column("workspace_id", Text, ForeignKey("workspaces.id"), nullable=False),
    Column("provider", Text, nullable=False),  # a configured provider name
    Column("ciphertext", LargeBinary, nullable=True),  # includes the GCM tag; NULL once revoked
    Column("nonce", LargeBinary, nullable=True),  # 96 bits, random per encryption
    Column("master_key_id", Text, nullable=True),  # which AISTATS_BYOK_MASTER_KEYS entry
    Column("version", Integer, nullable=False, server_default="1"),  # ciphertext format
    Column("label", Text, nullable=True),
    Column("fingerprint", Text, nullable=False),  # sha256:<12 hex> of the key
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index(
        "uq_provider_credentials_active",
        "workspace_id",
        "provider",
        unique=True,
        sqlite_where=Column("revoked_at").is_(None),
        postgresql_where=Column("revoked_at").is_(None),
    ),
)
