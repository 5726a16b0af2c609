"""Finding the records that cannot be written in a batch that failed.

A batch is one transaction, so one record the database refuses (a value out of a column's
range, a character a Postgres text column cannot hold) fails the whole batch, and every retry
fails the same way: without isolation, that record and every record behind it would wait for
ever. :func:`isolate` writes the failed batch again in halves, each half its own transaction
(writes are idempotent, so a part written twice is harmless), and keeps splitting the parts that
fail, down to single records: ``2·k·log2(n/k)`` writes or fewer for ``k`` refused records among
``n``.

The writer splits a batch only when its error is about the data (:func:`is_data_error`: a
constraint or a value the database refused), never for a lost connection, a lock, a full disk
or a timeout, which would fail every part the same way during an outage.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

# Errors about the values written, not about reaching the database: Python-side conversions
# (an int too large, a string that cannot be encoded), SQLite's constraint and binding errors.
_DATA_ERROR_TYPES: tuple[type[BaseException], ...] = (
    OverflowError,
    UnicodeError,
    ValueError,
    TypeError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
)
# Postgres SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation).
_DATA_SQLSTATE_CLASSES = ("22", "23")


def is_data_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the database refused a value, not the connection."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _DATA_ERROR_TYPES):
            return True
        sqlstate = getattr(current, "sqlstate", None)  # asyncpg's errors
        if isinstance(sqlstate, str) and sqlstate[:2] in _DATA_SQLSTATE_CLASSES:
            return True
        wrapped = getattr(current, "orig", None)  # SQLAlchemy's DBAPIError
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__ or current.__context__
    return False


@dataclass(slots=True)
class Isolation(Generic[T]):
    """What writing a failed batch in parts found."""

    written: list[T] = field(default_factory=list)  # committed, in parts
    failing: list[T] = field(default_factory=list)  # failed alone
    last_error: Exception | None = None  # what the last failed write said


async def isolate(items: Sequence[T], write: Callable[[Sequence[T]], Awaitable[None]]) -> Isolation[T]:
    """Write ``items`` (which just failed as one batch) in ever smaller parts: every record is
    either written or found failing alone."""
    found: Isolation[T] = Isolation()

    async def split(group: Sequence[T]) -> None:
        if len(group) == 1:
            found.failing.append(group[0])
            return
        middle = len(group) // 2
        for part in (group[:middle], group[middle:]):
            try:
                await write(part)
            except Exception as exc:
                found.last_error = exc
                await split(part)
            else:
                found.written.extend(part)

    await split(items)
    return found
