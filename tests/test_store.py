"""The Store protocol, run against every backend.

Each backend is one branch of the `make_store` fixture: a factory of unopened stores that all
point at the same (throwaway) database, so tests can reopen it or use two stores at once.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest

from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.store import clean_text, migrate, open_store
from bot.store.base import Enqueue, Store
from bot.store.sql import SQLStore

StoreFactory = Callable[[], Store]

TG = ChatRef("telegram", "-1001")
TG_THREAD = ChatRef("telegram", "-1001", "42")
DC = ChatRef("discord", "9000")

HOSTILE = "'; DROP TABLE papers; -- \" \\ % _ <b>&amp;</b> \u202e ∫ e^{iπ} 漢字 😀"


PG_DSN = os.environ.get("PAPERBOY_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_pg_unreachable: str | None = None  # remembered, so each test does not wait for a timeout


async def _pg_admin() -> Any:
    """A connection to the test server, or skip the test with the reason."""
    global _pg_unreachable
    if _pg_unreachable is not None:
        pytest.skip(_pg_unreachable)
    import asyncpg

    try:
        return await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        _pg_unreachable = f"PostgreSQL test server unreachable ({type(exc).__name__})"
        pytest.skip(_pg_unreachable)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def make_store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[StoreFactory]:
    """A factory of unopened stores sharing one fresh database; closes them all afterwards."""
    made: list[Store] = []

    if request.param == "sqlite":
        path = str(tmp_path / "paperboy.db")

        def factory() -> Store:
            made.append(SQLStore(sqlite_path=path))
            return made[-1]

        yield factory
        for store in made:
            await store.close()

    elif request.param == "postgres":
        admin = await _pg_admin()
        # A throwaway schema per test; the stores see only it through search_path.
        schema = f"paperboy_test_{uuid.uuid4().hex[:16]}"
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        try:

            def pg_factory() -> Store:
                made.append(SQLStore(dsn=f"{PG_DSN}?search_path={schema}", pool=4))
                return made[-1]

            yield pg_factory
            for store in made:
                await store.close()
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()

    else:  # pragma: no cover - a new backend adds a branch above
        raise AssertionError(f"unknown backend {request.param}")


async def fetch_rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a raw query, for the few tests that look under the protocol."""
    async with cast(SQLStore, store).transaction() as conn:
        return [tuple(r) for r in await conn.exec_driver_sql(sql)]


async def mark_delivered(store: Store, chat: ChatRef, paper_ids: Iterable[str]) -> None:
    """Papers the chat has received, outside a digest (as an enqueue with no messages marks
    them): the store has no other way, nothing but tests needs one."""
    if await store.get_chat(chat) is None:
        await store.save_chat(ChatSettings(chat))
    never = datetime(1970, 1, 1, tzinfo=UTC)
    await store.enqueue_digests(
        [Enqueue(chat, never, never, [], list(paper_ids))], datetime.now(UTC)
    )


async def table_exists(store: Store, name: str) -> bool:
    if cast(SQLStore, store).is_sqlite:
        sql = f"SELECT 1 FROM sqlite_master WHERE name = '{name}'"
    else:
        sql = (
            f"SELECT 1 FROM information_schema.tables WHERE table_name = '{name}'"
            " AND table_schema = current_schema()"
        )
    return bool(await fetch_rows(store, sql))


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    opened = make_store()
    await opened.open()
    return opened


def full_paper(paper_id: str = "2512.25063", **changes: Any) -> Paper:
    paper = Paper(
        id=paper_id,
        title=f"Attention is {HOSTILE}",
        authors=["Ada Lovelace", "Łukasz Kaiser", "José Ñúñez", "O'Brien; DROP"],
        abstract="We show $\\alpha \\to \\beta$.\nSecond line\ttab. " + HOSTILE,
        categories=["cs.CL", "cs.LG", "stat.ML"],
        version=3,
        published=datetime(2025, 12, 30, 18, 0, tzinfo=UTC),
        updated=datetime(2026, 1, 2, 9, 30, 15, 123456, tzinfo=UTC),
        comment="12 pages, 3 figures",
        journal_ref="NeurIPS 2025",
        doi="10.48550/arXiv.2512.25063",
        upvotes=128,
        ai_summary="A summary — with dashes and “quotes”.",
        ai_keywords=["transformers", "attention"],
        github_repo="https://github.com/example/repo",
        github_stars=4321,
        project_page="https://example.org/project?a=1&b=2",
        announce_type="new",
    )
    for name, value in changes.items():
        setattr(paper, name, value)
    return paper


# migrations


def _head() -> int:
    head = migrate.load_script().get_current_head()
    assert head is not None
    return int(head)


async def test_migrations_apply_once_and_reopen_is_idempotent(make_store: StoreFactory) -> None:
    first = make_store()
    await first.open()
    latest = _head()
    assert await first.schema_version() == latest
    await first.upsert_papers([full_paper()])
    await first.add_subscription(Subscription(TG, "hf:daily", keywords=["llm"]))
    await first.close()

    again = make_store()
    await again.open()
    await again.open()  # opening twice is harmless too
    assert await again.schema_version() == latest
    assert await again.get_paper("2512.25063") == full_paper()
    assert [s.feed for s in await again.list_subscriptions(TG)] == ["hf:daily"]


async def test_alembic_version_records_the_head(store: Store) -> None:
    rows = await fetch_rows(store, "SELECT version_num FROM alembic_version")
    assert rows == [(f"{_head():04d}",)]
    assert not await table_exists(store, "schema_version")


async def test_failed_migration_rolls_back_and_keeps_data(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = make_store()
    await first.open()
    await first.upsert_papers([full_paper()])
    before = await first.schema_version()
    await first.close()

    folder = tmp_path / "migrations"
    (folder / "versions").mkdir(parents=True)
    for revision in (migrate.FOLDER / "versions").glob("*.py"):
        (folder / "versions" / revision.name).write_text(revision.read_text())
    (folder / "versions" / f"{before + 1:04d}_broken.py").write_text(
        f'revision = "{before + 1:04d}"\n'
        f'down_revision = "{before:04d}"\n'
        "from alembic import op\n"
        "def upgrade() -> None:\n"
        '    op.execute("CREATE TABLE half_done (x INTEGER)")\n'
        '    op.execute("INSERT INTO no_such_table VALUES (1)")\n'
    )
    monkeypatch.setattr(migrate, "FOLDER", folder)
    broken = make_store()
    with pytest.raises(Exception, match="no_such_table"):
        await broken.open()
    monkeypatch.undo()

    again = make_store()
    await again.open()
    assert await again.schema_version() == before
    assert await again.get_paper("2512.25063") == full_paper()
    # The half-applied migration's first statement was rolled back with it.
    assert not await table_exists(again, "half_done")
    assert await table_exists(again, "papers")


def test_revisions_are_one_numbered_chain() -> None:
    script = migrate.load_script()
    chain = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in chain] == [f"{n:04d}" for n in range(1, len(chain) + 1)]
    assert chain[0].down_revision is None
    assert all(Path(r.path).name.startswith(r.revision) for r in chain)
    assert chain[-1].revision == migrate.HEAD


# papers


async def test_paper_round_trip_keeps_every_field(store: Store) -> None:
    paper = full_paper()
    await store.upsert_papers([paper])
    assert await store.get_paper(paper.id) == paper


async def test_minimal_paper_round_trip(store: Store) -> None:
    paper = Paper(id="hep-th/9901001", title="Old style id")
    await store.upsert_papers([paper])
    assert await store.get_paper("hep-th/9901001") == paper


async def test_unknown_paper_is_none(store: Store) -> None:
    assert await store.get_paper("0000.00000") is None


async def test_naive_and_offset_datetimes(store: Store) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    paper = full_paper(
        published=datetime(2025, 1, 1, 12, 0), updated=datetime(2025, 1, 2, 17, 30, tzinfo=ist)
    )
    await store.upsert_papers([paper])
    got = await store.get_paper(paper.id)
    assert got is not None
    # Naive means UTC; aware values keep their instant.
    assert got.published == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert got.updated == datetime(2025, 1, 2, 12, 0, tzinfo=UTC)


async def test_text_that_no_database_can_hold_is_cleaned(store: Store) -> None:
    paper = full_paper(title="nul\x00byte", abstract="lone \ud800 surrogate")
    await store.upsert_papers([paper])
    got = await store.get_paper(paper.id)
    assert got is not None
    assert got.title == "nulbyte"
    assert got.abstract == clean_text("lone \ud800 surrogate")
    assert got.authors == paper.authors


async def test_upsert_updates_and_keeps_what_a_later_fetch_lacks(store: Store) -> None:
    await store.upsert_papers([full_paper()])
    # An arXiv fetch knows nothing of Hugging Face fields; a stale source has an older version.
    arxiv_view = Paper(
        id="2512.25063",
        title="New title",
        abstract="New abstract",
        categories=["cs.CL"],
        version=2,
    )
    await store.upsert_papers([arxiv_view])
    got = await store.get_paper("2512.25063")
    assert got is not None
    assert (got.title, got.abstract, got.categories) == ("New title", "New abstract", ["cs.CL"])
    assert got.version == 3
    assert got.upvotes == 128 and got.github_stars == 4321
    assert got.ai_keywords == ["transformers", "attention"]
    assert got.authors == full_paper().authors

    await store.upsert_papers([full_paper(version=4, upvotes=200)])
    got = await store.get_paper("2512.25063")
    assert got is not None and (got.version, got.upvotes) == (4, 200)


async def test_get_papers_returns_only_known_ids(store: Store) -> None:
    papers = [full_paper(f"2501.{n:05d}", title=f"Paper {n}") for n in range(1200)]
    await store.upsert_papers(iter(papers))  # any iterable, including a generator
    wanted = ["2501.00003", "nope", "2501.01199", "2501.00003"]
    got = await store.get_papers(wanted)
    assert set(got) == {"2501.00003", "2501.01199"}
    assert got["2501.01199"].title == "Paper 1199"
    everything = await store.get_papers([p.id for p in papers])
    assert len(everything) == 1200
    assert await store.get_papers([]) == {}


async def test_duplicate_ids_in_one_batch(store: Store) -> None:
    await store.upsert_papers([full_paper(upvotes=1), full_paper(upvotes=2)])
    got = await store.get_paper("2512.25063")
    assert got is not None and got.upvotes == 2


# feeds


async def test_feed_round_trip_keeps_order(store: Store) -> None:
    day = date(2026, 1, 5)
    ids = ["2601.00003", "2601.00001", "2601.00002"]
    await store.save_feed("arxiv:cs.AI", day, date(2026, 1, 5), ids)
    assert await store.load_feed("arxiv:cs.AI", day) == (date(2026, 1, 5), ids)
    assert await store.load_feed("arxiv:cs.AI", day + timedelta(days=1)) is None
    assert await store.load_feed("arxiv:cs.LG", day) is None


async def test_feed_with_no_announcement(store: Store) -> None:
    day = date(2026, 1, 3)  # a Saturday
    await store.save_feed("arxiv:cs.AI", day, None, [])
    assert await store.load_feed("arxiv:cs.AI", day) == (None, [])


async def test_feed_save_replaces_same_day(store: Store) -> None:
    day = date(2026, 1, 5)
    await store.save_feed("hf:daily", day, day, ["a", "b", "c"])
    await store.save_feed("hf:daily", day, None, ["c", "d"])
    assert await store.load_feed("hf:daily", day) == (None, ["c", "d"])


# chats


async def test_unknown_chat_is_none(store: Store) -> None:
    assert await store.get_chat(TG) is None


async def test_chat_save_and_update(store: Store) -> None:
    settings = ChatSettings(
        chat=TG,
        timezone="Asia/Kolkata",
        delivery_time=time(7, 45),
        count=5,
        format="full",
        language="de",
        weekdays=frozenset({0, 2, 4}),
        active=True,
        title=HOSTILE,
    )
    await store.save_chat(settings)
    assert await store.get_chat(TG) == settings
    # A thread is a chat of its own.
    assert await store.get_chat(TG_THREAD) is None

    settings.weekdays = None
    settings.count = 20
    await store.save_chat(settings)
    assert await store.get_chat(TG) == settings

    settings.weekdays = frozenset()
    await store.save_chat(settings)
    got = await store.get_chat(TG)
    assert got is not None and got.weekdays == frozenset()


async def test_bad_weekday_is_rejected_and_nothing_changes(store: Store) -> None:
    await store.save_chat(ChatSettings(chat=TG, count=3))
    with pytest.raises(ValueError):
        await store.save_chat(ChatSettings(chat=TG, count=99, weekdays=frozenset({7})))
    got = await store.get_chat(TG)
    assert got is not None and got.count == 3


async def test_subscribing_creates_chat_with_defaults(store: Store) -> None:
    await store.add_subscription(Subscription(DC, "hf:trending"))
    assert await store.get_chat(DC) == ChatSettings(chat=DC)


async def test_active_flag(store: Store) -> None:
    await store.set_chat_active(TG, False)  # unknown chat: nothing to pause, no error
    assert await store.get_chat(TG) is None
    await store.save_chat(ChatSettings(chat=TG, count=7))
    await store.set_chat_active(TG, False)
    got = await store.get_chat(TG)
    assert got is not None and got.active is False and got.count == 7
    await store.set_chat_active(TG, True)
    got = await store.get_chat(TG)
    assert got is not None and got.active is True


async def test_saving_settings_leaves_the_active_flag_alone(store: Store) -> None:
    await store.save_chat(ChatSettings(chat=TG, count=7))
    stale = await store.get_chat(TG)
    assert stale is not None and stale.active
    await store.set_chat_active(TG, False)  # delivery pauses it meanwhile
    stale.count = 3
    await store.save_chat(stale)  # settings read before the pause: no resurrection
    got = await store.get_chat(TG)
    assert got is not None and got.count == 3 and got.active is False
    got.active = True
    await store.save_chat(got)  # nor does a copy that says "active" switch it on
    again = await store.get_chat(TG)
    assert again is not None and again.active is False


async def test_reactivate_chats(store: Store) -> None:
    chats = [ChatRef("discord", str(n)) for n in range(1, 5)]
    for chat in chats:
        await store.save_chat(ChatSettings(chat=chat))
    await store.set_chat_active(chats[0], False)
    await store.set_chat_active(chats[1], False)
    back = await store.reactivate_chats("discord", ["1", "3", "999", "1"])
    assert back == [chats[0]]  # active ones and unknown ones are not "switched back"
    states = [await store.get_chat(chat) for chat in chats]
    assert [s.active for s in states if s is not None] == [True, False, True, True]
    assert await store.reactivate_chats("telegram", ["2"]) == []


# subscriptions


async def test_subscriptions_add_replace_remove_list(store: Store) -> None:
    first = await store.add_subscription(
        Subscription(TG, "arxiv:cs.AI", keywords=["agents", "tool use"], exclude=["survey"])
    )
    assert first.id is not None and first.created_at is not None
    assert first.keywords == ["agents", "tool use"] and first.exclude == ["survey"]
    await store.add_subscription(Subscription(TG, "hf:daily", authors=["Yann LeCun"]))
    await store.add_subscription(Subscription(TG_THREAD, "hf:daily"))

    replaced = await store.add_subscription(
        Subscription(TG, "arxiv:cs.AI", keywords=[HOSTILE], authors=["Hinton"])
    )
    assert replaced.id == first.id and replaced.created_at == first.created_at
    assert (replaced.keywords, replaced.exclude, replaced.authors) == ([HOSTILE], [], ["Hinton"])

    subs = await store.list_subscriptions(TG)
    assert [(s.feed, s.keywords, s.authors) for s in subs] == [
        ("arxiv:cs.AI", [HOSTILE], ["Hinton"]),
        ("hf:daily", [], ["Yann LeCun"]),
    ]
    assert all(s.chat == TG for s in subs)
    assert subs[0] == replaced

    assert await store.remove_subscription(TG, "hf:daily") is True
    assert await store.remove_subscription(TG, "hf:daily") is False
    assert await store.remove_subscription(DC, "hf:daily") is False
    assert [s.feed for s in await store.list_subscriptions(TG)] == ["arxiv:cs.AI"]
    assert [s.feed for s in await store.list_subscriptions(TG_THREAD)] == ["hf:daily"]
    assert await store.list_subscriptions(DC) == []


# delivered


async def test_delivered_marks(store: Store) -> None:
    assert await store.delivered_ids(TG, ["a", "b"]) == set()
    await mark_delivered(store, TG, ["a", "b", "a"])
    await mark_delivered(store, TG, iter(["b", "c"]))
    await mark_delivered(store, TG, [])
    assert await store.delivered_ids(TG, ["a", "b", "c", "d"]) == {"a", "b", "c"}
    assert await store.delivered_ids(TG, []) == set()
    assert await store.delivered_ids(DC, ["a"]) == set()
    assert await store.delivered_ids(TG_THREAD, ["a"]) == set()
    many = [f"2501.{n:05d}" for n in range(1500)]
    await mark_delivered(store, DC, many)
    assert await store.delivered_ids(DC, [*many, "x"]) == set(many)


# chat migration (a Telegram group becoming a supergroup)


async def test_migrate_chat_to_new_id(store: Store) -> None:
    new = ChatRef("telegram", "-1002")
    settings = ChatSettings(chat=TG, timezone="Europe/Berlin", count=4, title="Group")
    await store.save_chat(settings)
    sub = await store.add_subscription(Subscription(TG, "hf:daily", keywords=["rl"]))
    await mark_delivered(store, TG, ["p1", "p2"])

    await store.migrate_chat(TG, new)

    assert await store.get_chat(TG) is None
    assert await store.get_chat(new) == ChatSettings(
        chat=new, timezone="Europe/Berlin", count=4, title="Group"
    )
    moved = await store.list_subscriptions(new)
    assert [(s.feed, s.keywords, s.id) for s in moved] == [("hf:daily", ["rl"], sub.id)]
    assert await store.list_subscriptions(TG) == []
    assert await store.delivered_ids(new, ["p1", "p2", "p3"]) == {"p1", "p2"}
    assert await store.delivered_ids(TG, ["p1"]) == set()


async def test_migrate_chat_merges_into_existing(store: Store) -> None:
    new = ChatRef("telegram", "-1002")
    await store.save_chat(ChatSettings(chat=TG, timezone="Asia/Tokyo", count=3))
    await store.add_subscription(Subscription(TG, "hf:daily", keywords=["old"]))
    await store.add_subscription(Subscription(TG, "arxiv:cs.AI"))
    await mark_delivered(store, TG, ["p1", "p2"])
    # Someone subscribed under the new id before the migration notice arrived.
    await store.add_subscription(Subscription(new, "hf:daily", keywords=["new"]))
    await store.add_subscription(Subscription(new, "hf:trending"))
    await mark_delivered(store, new, ["p2", "p3"])

    await store.migrate_chat(TG, new)

    got = await store.get_chat(new)
    assert got is not None and (got.timezone, got.count) == ("Asia/Tokyo", 3)
    subs = {s.feed: s.keywords for s in await store.list_subscriptions(new)}
    assert subs == {"hf:daily": ["new"], "hf:trending": [], "arxiv:cs.AI": []}
    assert await store.delivered_ids(new, ["p1", "p2", "p3", "p4"]) == {"p1", "p2", "p3"}
    assert await store.get_chat(TG) is None
    assert await store.list_subscriptions(TG) == []


async def test_migrate_unknown_or_same_chat_is_a_no_op(store: Store) -> None:
    await store.migrate_chat(TG, DC)
    assert await store.get_chat(DC) is None
    await store.save_chat(ChatSettings(chat=TG, count=2))
    await store.add_subscription(Subscription(TG, "hf:daily"))
    await store.migrate_chat(TG, TG)
    # No thread and an empty thread are the same chat: this must not merge it into itself.
    await store.migrate_chat(TG, ChatRef("telegram", "-1001", ""))
    got = await store.get_chat(TG)
    assert got is not None and got.count == 2
    assert len(await store.list_subscriptions(TG)) == 1


# message memory: what adapters remember about what they sent, for every worker


async def test_message_papers_are_shared_and_kept_across_reopen(make_store: StoreFactory) -> None:
    a, b = make_store(), make_store()
    await a.open()
    await b.open()
    await a.remember_message_papers(TG, ["10", "11"], "2512.25063")
    await a.remember_message_papers(TG, [], "2512.25063")  # nothing to remember
    assert await b.message_paper(TG, "10") == "2512.25063"  # another worker sees it
    assert await b.message_paper(TG_THREAD, "11") == "2512.25063"  # ids are per chat
    assert await b.message_paper(TG, "12") is None
    assert await b.message_paper(DC, "10") is None
    assert await b.message_paper(ChatRef("discord", "-1001"), "10") is None  # per platform
    await b.remember_message_papers(TG, ["11", "11", "12"], "1706.03762")  # a later answer
    assert await a.message_paper(TG, "11") == "1706.03762"
    assert await a.message_paper(TG, "10") == "2512.25063"
    await a.close()

    again = make_store()
    await again.open()  # a restart remembers too
    assert await again.message_paper(TG, "12") == "1706.03762"
    await again.remember_message_papers(DC, ["m'1"], HOSTILE)
    assert await again.message_paper(DC, "m'1") == clean_text(HOSTILE)


async def test_callbacks_are_shared_by_key(make_store: StoreFactory) -> None:
    a, b = make_store(), make_store()
    await a.open()
    await b.open()
    long = "help:" + "ö" * 70
    await a.save_callbacks({"k1": long, "k2": HOSTILE})
    await a.save_callbacks({})
    assert await b.load_callback("k1") == long
    assert await b.load_callback("k2") == clean_text(HOSTILE)
    assert await b.load_callback("k3") is None
    await b.save_callbacks({"k1": long})  # every worker saves the same key: harmless
    assert await a.load_callback("k1") == long


async def test_prune_message_memory_forgets_what_was_not_saved_lately(store: Store) -> None:
    await store.remember_message_papers(TG, ["1", "2"], "2512.25063")
    await store.save_callbacks({"old": "help:x", "kept": "help:y"})
    assert await store.prune_message_memory(datetime.now(UTC) - timedelta(days=1)) == 0
    await asyncio.sleep(0.05)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.05)
    # Saved again (sent again): younger than `middle`, so it stays.
    await store.save_callbacks({"kept": "help:y"})
    await store.remember_message_papers(TG, ["2"], "2512.25063")
    assert await store.prune_message_memory(middle) == 2
    assert await store.message_paper(TG, "1") is None
    assert await store.message_paper(TG, "2") == "2512.25063"
    assert await store.load_callback("old") is None
    assert await store.load_callback("kept") == "help:y"
    assert await store.prune_message_memory(datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert await store.message_paper(TG, "2") is None
    assert await store.load_callback("kept") is None


# failures leave data intact


async def test_failed_batch_writes_nothing(store: Store) -> None:
    original = full_paper()
    await store.upsert_papers([original])
    broken = Paper(id="2601.99999", title=cast(Any, None))  # NOT NULL violation mid-batch
    with pytest.raises(Exception):  # noqa: B017 - each driver has its own error type
        await store.upsert_papers([full_paper(title="changed"), Paper("2601.00001", "ok"), broken])
    assert await store.get_paper(original.id) == original
    assert await store.get_papers(["2601.00001", "2601.99999"]) == {}

    await store.save_feed("hf:daily", date(2026, 1, 5), None, ["a", "b"])
    with pytest.raises(Exception):  # noqa: B017
        await store.save_feed("hf:daily", date(2026, 1, 5), None, ["c", cast(Any, None)])
    assert await store.load_feed("hf:daily", date(2026, 1, 5)) == (None, ["a", "b"])


async def test_failed_transaction_rolls_back_store_calls(store: Store) -> None:
    await store.add_subscription(Subscription(TG, "hf:daily", keywords=["keep"]))
    transaction = cast(Any, store).transaction

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with transaction():
            await store.add_subscription(Subscription(TG, "hf:daily", keywords=["lost"]))
            await store.add_subscription(Subscription(DC, "hf:trending"))
            await mark_delivered(store, TG, ["p1"])
            raise Boom

    subs = await store.list_subscriptions(TG)
    assert [s.keywords for s in subs] == [["keep"]]
    assert await store.get_chat(DC) is None
    assert await store.delivered_ids(TG, ["p1"]) == set()

    # A nested transaction that fails undoes only its own part.
    async with transaction():
        await mark_delivered(store, TG, ["p2"])
        with pytest.raises(Boom):
            async with transaction():
                await mark_delivered(store, TG, ["p3"])
                raise Boom
    assert await store.delivered_ids(TG, ["p2", "p3"]) == {"p2"}
    # The store is still usable afterwards.
    await store.add_subscription(Subscription(DC, "hf:trending"))
    assert len(await store.list_subscriptions(DC)) == 1


# concurrency


async def test_concurrent_subscriptions_do_not_corrupt(store: Store) -> None:
    chats = [ChatRef("telegram", str(n)) for n in range(5)]
    feeds = [f"arxiv:cs.{n}" for n in range(8)]

    async def subscribe(chat: ChatRef, feed: str, round_: int) -> Subscription:
        return await store.add_subscription(
            Subscription(chat, feed, keywords=[f"k{round_}"], authors=[feed])
        )

    results = await asyncio.gather(
        *(subscribe(c, f, r) for r in range(3) for c in chats for f in feeds),
        *(mark_delivered(store, c, [f"p{n}" for n in range(20)]) for c in chats),
        *(store.get_chat(c) for c in chats),
    )
    subs = [r for r in results if isinstance(r, Subscription)]
    assert len(subs) == 3 * len(chats) * len(feeds)
    for chat in chats:
        listed = await store.list_subscriptions(chat)
        assert sorted(s.feed for s in listed) == sorted(feeds)
        assert all(s.keywords in (["k0"], ["k1"], ["k2"]) and s.authors == [s.feed] for s in listed)
        # Every call for one (chat, feed) saw the same row.
        ids = {s.id for s in subs if s.chat == chat and s.feed == feeds[0]}
        assert len(ids) == 1
        assert await store.get_chat(chat) == ChatSettings(chat=chat)
        assert len(await store.delivered_ids(chat, [f"p{n}" for n in range(20)])) == 20


async def test_two_stores_on_one_database(make_store: StoreFactory) -> None:
    # Several openers racing on a fresh database (once "database is locked" on SQLite).
    stores = [make_store() for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    a, b = stores[0], stores[-1]

    async def work(s: Store, n: int) -> None:
        await s.add_subscription(Subscription(TG, f"arxiv:cs.{n % 7}", keywords=[str(n)]))
        await mark_delivered(s, TG, [f"p{n}"])

    await asyncio.gather(*(work(a if n % 2 else b, n) for n in range(40)))
    assert len(await a.list_subscriptions(TG)) == 7
    assert len(await b.delivered_ids(TG, [f"p{n}" for n in range(40)])) == 40


# open_store


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:///data/sub/paperboy.db", "data/sub/paperboy.db"),
        ("sqlite:////abs/path.db", "/abs/path.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///my%20db.db", "my db.db"),
    ],
)
def test_open_store_sqlite_urls(url: str, path: str) -> None:
    store = open_store(url)
    assert isinstance(store, SQLStore) and store.path == path


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:hunter2@db/paperboy",
        "paperboy.db",
        "sqlite://host/path.db",
        "sqlite://",
        "sqlite:///",
        "sqlite:///x.db?mode=ro",
    ],
)
def test_open_store_rejects_bad_urls_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_store(url)
    assert "hunter2" not in str(info.value)


async def test_memory_store_works() -> None:
    store = open_store("sqlite:///:memory:")
    await store.open()
    try:
        await store.add_subscription(Subscription(TG, "hf:daily"))
        assert len(await store.list_subscriptions(TG)) == 1
        assert await store.schema_version() >= 1
    finally:
        await store.close()


async def test_file_store_creates_parent_directory(tmp_path: Any) -> None:
    store = open_store(f"sqlite:///{tmp_path}/nested/dir/paperboy.db")
    await store.open()
    try:
        assert await store.schema_version() >= 1
    finally:
        await store.close()
    assert (tmp_path / "nested" / "dir" / "paperboy.db").exists()


async def test_sqlite_pragmas(tmp_path: Any) -> None:
    store = SQLStore(sqlite_path=str(tmp_path / "p.db"))
    await store.open()
    try:
        for pragma, expected in [("journal_mode", "wal"), ("foreign_keys", 1)]:
            async with store.db.execute(f"PRAGMA {pragma}") as cur:
                row = await cur.fetchone()
            assert row is not None and row[0] == expected
        async with store.db.execute("PRAGMA busy_timeout") as cur:
            row = await cur.fetchone()
        assert row is not None and row[0] > 0
    finally:
        await store.close()


async def test_tables_match_the_migrated_schema(store: Store) -> None:
    """bot/store/tables.py (what queries see) names the tables and columns the Alembic
    revisions made, no more, no less."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from bot.store.tables import metadata

    def differences(conn: Any) -> list[Any]:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        shape = ("add_table", "remove_table", "add_column", "remove_column")
        return [d for d in diff if isinstance(d, tuple) and d[0] in shape]

    async with cast(SQLStore, store).transaction() as conn:
        found = await conn.run_sync(differences)
    # alembic_version is Alembic's own table.
    assert [
        d for d in found if not (d[0] == "remove_table" and d[1].name == "alembic_version")
    ] == []
