"""Alembic migration environment for the store (run through ``aistats_gateway.store.migrate``)."""
