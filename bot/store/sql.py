"""`SQLStore`: the one `Store`, on SQLAlchemy Core, for SQLite and PostgreSQL alike.

Its parts, one module each: engine.py (connections, transactions), papers.py, chats.py
(chats, subscriptions, delivered), schedule.py and outbox.py (delivery), memory.py
(message memory), learning_sql.py (votes, library, topics, models); migrate.py runs the
Alembic revisions at open.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError

from bot.store import migrate
from bot.store.chats import ChatsMixin
from bot.store.learning_sql import LearningMixin
from bot.store.memory import MemoryMixin
from bot.store.outbox import OutboxMixin
from bot.store.papers import PapersMixin
from bot.store.schedule import ScheduleMixin


def _driver_error(exc: DBAPIError) -> BaseException:
    found: BaseException | None = exc.orig
    while found is not None:
        if isinstance(found, sqlite3.Error) or type(found).__module__.startswith("asyncpg"):
            return found
        found = found.__cause__
    return exc


class SQLStore(PapersMixin, ChatsMixin, ScheduleMixin, OutboxMixin, MemoryMixin, LearningMixin):
    """`Store` on SQLite (`sqlite_path`, a file or ":memory:") or PostgreSQL (`dsn`, a
    libpq-style URL whose extra query parameters, such as search_path, become server
    settings; `pool` connections at most)."""

    async def open(self) -> None:
        """Connect and apply pending migrations."""
        if self._engine is not None:
            return
        try:
            await self._connect()
            async with self.transaction() as conn:
                await migrate.upgrade(conn)
        except BaseException as exc:
            await self._disconnect()
            if isinstance(exc, DBAPIError):
                # The driver's own error (sqlite3's, asyncpg's): callers tell a database
                # that is not usable from a bug by it, without knowing SQLAlchemy.
                raise _driver_error(exc) from exc
            raise

    async def close(self) -> None:
        await self._disconnect()

    async def __aenter__(self) -> SQLStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        """The Alembic revision the database is at, as a number."""
        async with self.reading() as conn:
            return await migrate.current_revision(conn)
