"""A database made by the old numbered SQL migrations (kept in tests/legacy_migrations as
they were) opens with the Alembic-managed store: stamped, upgraded, every row kept."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.models import ChatRef, ChatSettings, Subscription
from bot.store import migrate
from bot.store.learning import LearnState
from bot.store.sql import SQLStore
from tests.test_store import PG_DSN, _pg_admin

LEGACY = Path(__file__).with_name("legacy_migrations")
CHAT = ChatRef("telegram", "-1001", "7")
T = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
S = "2026-01-05T09:00:00.000000+00:00"  # T as the old SQLite store wrote it

# (sql, sqlite parameters, postgres parameters): what the old stores wrote, by hand.
ROWS: list[tuple[str, tuple[Any, ...], tuple[Any, ...]]] = [
    (
        "INSERT INTO papers (id, version, title, authors, abstract, categories, published,"
        " ai_keywords, fetched_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
        ("2601.00001", 2, "Old paper", '["Ada", "Łukasz"]', "Abs.", '["cs.LG"]', S, "[]", S),
        ("2601.00001", 2, "Old paper", ["Ada", "Łukasz"], "Abs.", ["cs.LG"], T, [], T),
    ),
    (
        "INSERT INTO feed_fetches (feed, day, announced, fetched_at) VALUES ({}, {}, {}, {})",
        ("hf:daily", "2026-01-05", "2026-01-04", S),
        ("hf:daily", date(2026, 1, 5), date(2026, 1, 4), T),
    ),
    (
        "INSERT INTO feed_items (feed, day, position, paper_id) VALUES ({}, {}, {}, {})",
        ("hf:daily", "2026-01-05", 0, "2601.00001"),
        ("hf:daily", date(2026, 1, 5), 0, "2601.00001"),
    ),
    (
        "INSERT INTO chats (platform, chat_id, thread_id, timezone, count, weekdays, title,"
        " explain_digest, created_at, updated_at, next_run_at)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        ("telegram", "-1001", "7", "Europe/Berlin", 4, "0,2", "Group", 1, S, S, S),
        ("telegram", "-1001", "7", "Europe/Berlin", 4, "0,2", "Group", True, T, T, T),
    ),
    (
        "INSERT INTO subscriptions (chat, feed, keywords, exclude, authors, created_at)"
        " VALUES (1, {}, {}, {}, {}, {})",
        ("hf:daily", '["llm"]', "[]", '["Hinton"]', S),
        ("hf:daily", ["llm"], [], ["Hinton"], T),
    ),
    (
        "INSERT INTO delivered (chat, paper_id, delivered_at) VALUES (1, {}, {})",
        ("2601.00001", S),
        ("2601.00001", T),
    ),
    (
        "INSERT INTO message_papers (platform, chat_id, message_id, paper_id, created_at)"
        " VALUES ({}, {}, {}, {}, {})",
        ("telegram", "-1001", "55", "2601.00001", S),
        ("telegram", "-1001", "55", "2601.00001", T),
    ),
    (
        "INSERT INTO callbacks (key, data, created_at) VALUES ({}, {}, {})",
        ("k1", "explain 2601.00001", S),
        ("k1", "explain 2601.00001", T),
    ),
    (
        "INSERT INTO votes (chat, paper_id, user_id, value, voted_at) VALUES (1, {}, {}, {}, {})",
        ("2601.00001", "u1", 1, S),
        ("2601.00001", "u1", 1, T),
    ),
    (
        "INSERT INTO chat_learning (chat, quality, cadence, model, model_votes, last_weekly,"
        " updated_at) VALUES (1, {}, {}, {}, {}, {}, {})",
        ("strict", "weekly", b"\x00\x01", 3, "2026-01-04", S),
        ("strict", "weekly", b"\x00\x01", 3, date(2026, 1, 4), T),
    ),
]

# Two unsent outbox rows: SQLite kept bodies by hash (its 0003), except rows from before it.
SQLITE_OUTBOX = [
    "INSERT INTO outbox_bodies (hash, body) VALUES ('h1', '{\"text\": \"first\"}')",
    "INSERT INTO outbox (idem_key, chat, platform, seq, body, body_hash, next_attempt_at,"
    f" created_at) VALUES ('k-1', 1, 'telegram', 0, '', 'h1', '{S}', '{S}')",
    "INSERT INTO outbox (idem_key, chat, platform, seq, body, next_attempt_at, created_at)"
    f" VALUES ('k-2', 1, 'telegram', 1, '{{\"text\": \"second\"}}', '{S}', '{S}')",
]
PG_OUTBOX = [
    "INSERT INTO outbox (idem_key, chat, platform, seq, body, next_attempt_at, created_at)"
    f" VALUES ('k-{n}', 1, 'telegram', {n - 1}, '{{\"text\": \"{word}\"}}', '{S}', '{S}')"
    for n, word in ((1, "first"), (2, "second"))
]


def _scripts(dialect: str) -> list[tuple[int, str, str]]:
    return [
        (int(path.name.split("_")[0]), path.name, path.read_text())
        for path in sorted((LEGACY / dialect).glob("*.sql"))
    ]


def _build_sqlite(path: str) -> None:
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL)"
    )
    for version, name, sql in _scripts("sqlite"):
        db.executescript(sql)
        db.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (version, name, S))
    for sql, params, _ in ROWS:
        db.execute(sql.format(*("?" for _ in params)), params)
    for sql in SQLITE_OUTBOX:
        db.execute(sql)
    db.commit()
    db.close()


async def _build_postgres(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, sql in _scripts("postgres"):
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_version VALUES ($1, $2)", version, name)
        for sql, _, params in ROWS:
            await conn.execute(sql.format(*(f"${n + 1}" for n in range(len(params)))), *params)
        for sql in PG_OUTBOX:
            await conn.execute(sql)
    finally:
        await conn.close()


Builder = Callable[[], Awaitable[SQLStore]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Builder]:
    """Builds an old-style database with rows and returns a store on it (not yet opened)."""
    if request.param == "sqlite":
        path = str(tmp_path / "old.db")

        async def build_sqlite() -> SQLStore:
            await asyncio.to_thread(_build_sqlite, path)
            return SQLStore(sqlite_path=path)

        yield build_sqlite
        return
    admin = await _pg_admin()
    schema = f"paperboy_legacy_{uuid.uuid4().hex[:16]}"
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        dsn = f"{PG_DSN}?search_path={schema}"

        async def build_postgres() -> SQLStore:
            await _build_postgres(dsn)
            return SQLStore(dsn=dsn, pool=2)

        yield build_postgres
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def test_old_database_is_adopted_and_keeps_its_rows(legacy: Builder) -> None:
    store = await legacy()
    async with store:
        head = migrate.load_script().get_current_head()
        assert head is not None and await store.schema_version() == int(head)
        paper = await store.get_paper("2601.00001")
        assert paper is not None
        assert (paper.title, paper.authors, paper.version) == ("Old paper", ["Ada", "Łukasz"], 2)
        assert paper.published == T
        assert await store.load_feed("hf:daily", date(2026, 1, 5)) == (
            date(2026, 1, 4),
            ["2601.00001"],
        )
        assert await store.get_chat(CHAT) == ChatSettings(
            chat=CHAT,
            timezone="Europe/Berlin",
            count=4,
            weekdays=frozenset({0, 2}),
            title="Group",
            explain=True,
        )
        [sub] = await store.list_subscriptions(CHAT)
        assert (sub.feed, sub.keywords, sub.authors, sub.created_at) == (
            "hf:daily",
            ["llm"],
            ["Hinton"],
            T,
        )
        assert await store.delivered_ids(CHAT, ["2601.00001", "x"]) == {"2601.00001"}
        assert await store.message_paper(CHAT, "55") == "2601.00001"
        assert await store.load_callback("k1") == "explain 2601.00001"
        assert [(v.paper_id, v.value) for v in await store.chat_votes(CHAT)] == [("2601.00001", 1)]
        assert await store.get_learning(CHAT) == LearnState(
            quality="strict",
            cadence="weekly",
            model=b"\x00\x01",
            model_votes=3,
            last_weekly=date(2026, 1, 4),
        )
        # The outbox's rows, whatever way their bodies were kept, go out in order.
        now = datetime(2026, 1, 6, tzinfo=UTC)
        bodies = []
        for _ in range(2):
            [item] = await store.claim_outbox(now, 10, 60, "w", ["telegram"])
            bodies.append(item.body)
            await store.mark_sent([(item.id, ["1"])], now)
        assert bodies == ['{"text": "first"}', '{"text": "second"}']
        if store.is_sqlite:  # revision 0003: bodies out of the key's B-tree
            async with store.reading() as conn:
                sql = await conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'outbox_bodies'"
                )
                assert "WITHOUT ROWID" not in sql.scalar_one().upper()
        # And the store goes on working on it.
        await store.add_subscription(Subscription(CHAT, "arxiv:cs.AI"))
        assert len(await store.list_subscriptions(CHAT)) == 2
    again = SQLStore(sqlite_path=store.path) if store.is_sqlite else None
    if again is not None:
        async with again:
            assert len(await again.list_subscriptions(CHAT)) == 2


async def test_old_database_at_an_older_version_is_refused(legacy: Builder) -> None:
    store = await legacy()
    await store._connect()
    try:
        async with store.transaction() as conn:
            await conn.exec_driver_sql("DELETE FROM schema_version WHERE version > 4")
    finally:
        await store.close()
    with pytest.raises(RuntimeError, match="old schema version 4"):
        await store.open()
    await store.close()
