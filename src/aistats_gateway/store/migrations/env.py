"""Alembic environment: runs migrations on a connection handed over by ``store.migrate``.

``migrate()`` opens the async connection (SQLite or Postgres), takes the migration lock and
calls Alembic through ``connection.run_sync``; the sync connection arrives here in
``config.attributes["connection"]``. Offline (``--sql``) mode is not supported.
"""

from __future__ import annotations

from alembic import context

from aistats_gateway.store.tables import metadata


def run_migrations_online() -> None:
    """Run the pending migrations inside the caller's transaction."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through aistats_gateway.store.migrate.migrate()")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
