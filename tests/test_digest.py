"""bot.digest: merging, de-duplication, ranking, caps and the two formats."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime

import pytest

from bot.digest import Round
from bot.doc import ListBlock, plain
from bot.learning import preview
from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.serialize import message_from_json, message_to_json
from bot.service import Paperboy, feed_day
from bot.sources.base import FeedFetch
from bot.store.sql import SQLStore
from tests.test_store import mark_delivered

CHAT = ChatRef("telegram", "42")
NOW = datetime(2025, 6, 4, 9, 0, tzinfo=UTC)


class StubSource:
    """A Source whose feeds are set by the test; counts upstream requests."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.feeds: dict[str, FeedFetch] = {}
        self.requests: list[str] = []

    async def feed(self, name: str) -> FeedFetch:
        self.requests.append(name)
        return self.feeds.get(name, FeedFetch([], None))

    async def papers(self, ids: Sequence[str]) -> list[Paper]:
        return []

    async def search(self, query: str, limit: int = 10) -> list[Paper]:
        return []

    async def aclose(self) -> None:
        return None


def paper(
    pid: str,
    title: str = "",
    *,
    version: int | None = None,
    announce_type: str | None = None,
    upvotes: int | None = None,
    ai_summary: str | None = None,
) -> Paper:
    return Paper(
        pid,
        title or f"Paper {pid}",
        authors=["A. Author"],
        abstract="About things.",
        categories=["cs.LG"],
        version=version,
        announce_type=announce_type,
        upvotes=upvotes,
        ai_summary=ai_summary,
    )


@pytest.fixture
async def app() -> AsyncIterator[Paperboy]:
    store = SQLStore(sqlite_path=":memory:")
    await store.open()
    yield Paperboy(store, StubSource("arxiv"), StubSource("hf"))
    await store.close()


def sources(app: Paperboy) -> tuple[StubSource, StubSource]:
    return app.arxiv, app.hf  # type: ignore[return-value]


def subs(*feeds: str, keywords: Sequence[str] = ()) -> list[Subscription]:
    return [Subscription(CHAT, f, keywords=list(keywords)) for f in feeds]


async def test_merges_feeds_and_dedups_by_base_id(app: Paperboy) -> None:
    arxiv, hf = sources(app)
    announced = date(2025, 6, 3)
    arxiv.feeds["cs.LG"] = FeedFetch(
        [
            paper("2506.00001", version=1, announce_type="new"),
            paper("2506.00002", announce_type="cross"),
        ],
        announced,
    )
    arxiv.feeds["cs.AI"] = FeedFetch(
        [paper("2506.00002", announce_type="new"), paper("2506.00003", announce_type="cross")],
        announced,
    )
    hf.feeds["daily"] = FeedFetch([paper("2506.00003", upvotes=40, ai_summary="Short.")], announced)
    rnd = Round(app, NOW)
    await rnd.prefetch(["arxiv:cs.LG", "arxiv:cs.AI", "hf:daily"])
    ranked = rnd.ranked(subs("arxiv:cs.LG", "arxiv:cs.AI", "hf:daily"))
    assert ranked is not None
    chosen = [p for _, p in ranked]
    # HF upvotes first; then the paper two feeds picked; then new before cross-list.
    assert [p.id for p in chosen] == ["2506.00003", "2506.00002", "2506.00001"]
    merged = chosen[0]
    assert (
        merged.upvotes == 40 and merged.ai_summary == "Short." and merged.announce_type == "cross"
    )
    assert chosen[1].announce_type == "new"  # a cross-list elsewhere, new in cs.AI


async def test_already_delivered_filters_and_count_caps(app: Paperboy) -> None:
    arxiv, _ = sources(app)
    arxiv.feeds["cs.LG"] = FeedFetch(
        [paper(f"2506.0000{i}", announce_type="new") for i in range(1, 8)], date(2025, 6, 3)
    )
    await mark_delivered(app.store, CHAT, ["2506.00001", "2506.00002"])
    settings = ChatSettings(CHAT, count=3)
    messages = await preview(app, settings, subs("arxiv:cs.LG"), NOW)
    assert len(messages) == 1
    listing = next(b for b in messages[0].blocks if isinstance(b, ListBlock))
    text = "\n".join(plain(item) for item in listing.items)
    assert "2506.00003" in text and "2506.00005" in text
    assert "2506.00001" not in text and "2506.00006" not in text
    assert [b.arg for b in messages[0].buttons[0]] == ["2506.00003", "2506.00004", "2506.00005"]


async def test_keyword_filters(app: Paperboy) -> None:
    arxiv, _ = sources(app)
    arxiv.feeds["cs.LG"] = FeedFetch(
        [paper("2506.00001", "Diffusion for proteins"), paper("2506.00002", "Graph things")],
        date(2025, 6, 3),
    )
    rnd = Round(app, NOW)
    await rnd.prefetch(["arxiv:cs.LG"])
    ranked = rnd.ranked(subs("arxiv:cs.LG", keywords=["diffusion"]))
    assert [p.id for _, p in ranked or []] == ["2506.00001"]


async def test_full_format_is_one_message_per_paper(app: Paperboy) -> None:
    arxiv, _ = sources(app)
    arxiv.feeds["cs.LG"] = FeedFetch([paper("2506.00001"), paper("2506.00002")], date(2025, 6, 3))
    messages = await preview(app, ChatSettings(CHAT, format="full"), subs("arxiv:cs.LG"), NOW)
    assert len(messages) == 2
    for m in messages:  # the outbox stores them as JSON: nothing is lost on the way
        assert message_from_json(message_to_json(m)) == m


async def test_no_announcement_no_digest(app: Paperboy) -> None:
    # cs.LG is unset: the listing is empty (a Saturday)
    assert await preview(app, ChatSettings(CHAT), subs("arxiv:cs.LG"), NOW) == []


async def test_each_feed_is_fetched_once_per_round(app: Paperboy) -> None:
    arxiv, hf = sources(app)
    arxiv.feeds["cs.LG"] = FeedFetch([paper("2506.00001")], date(2025, 6, 3))
    rnd = Round(app, NOW)
    for chat_id in range(50):
        chat = ChatRef("telegram", str(chat_id))
        chat_subs = [Subscription(chat, "arxiv:cs.LG"), Subscription(chat, "hf:daily")]
        await rnd.prefetch(s.feed for s in chat_subs)
        best = rnd.ranked(chat_subs)
        assert best is not None
        rnd.digest(ChatSettings(chat), best, set())
    assert arxiv.requests == ["cs.LG"] and hf.requests == ["daily"]


def test_arxiv_feeds_are_cached_per_eastern_day() -> None:
    # 03:00 UTC on 4 June is 23:00 on 3 June in New York: still the 3 June fetch.
    assert feed_day("arxiv:cs.LG", datetime(2025, 6, 4, 3, tzinfo=UTC)) == date(2025, 6, 3)
    assert feed_day("arxiv:cs.LG", datetime(2025, 6, 4, 5, tzinfo=UTC)) == date(2025, 6, 4)
    assert feed_day("hf:daily", datetime(2025, 6, 4, 3, tzinfo=UTC)) == date(2025, 6, 4)


def test_a_rounds_shared_filtering_chooses_what_each_subscription_would() -> None:
    """Shared looks up each (feed, word) and (feed, author) once; the choice of papers
    must be exactly Subscription.matches's, for any mix of filters."""
    import random

    from bot.digest import Shared

    rng = random.Random(7)
    words = ["graph", "neural networks", "C++", "self-attention", "LoRA", "x"]
    names = ["Ada Lovelace", "Émile Borel", "Li Wei", "O'Neil"]
    papers = [
        Paper(
            f"2506.{i:05d}",
            " ".join(rng.sample([*words, "on", "the"], 3)),
            rng.sample(names, 2),
            " ".join(rng.choices([*words, "We", "study", "Graphs", "lora"], k=8)),
            ["cs.LG"],
            announce_type=rng.choice(["new", "cross"]),
        )
        for i in range(40)
    ]
    fetch = FeedFetch(papers, date(2025, 6, 3))
    shared = Shared()
    chat = ChatRef("telegram", "1")
    terms = [*words, "GRAPH", "lovelace", "wei", "borel"]
    for _ in range(200):
        sub = Subscription(
            chat,
            "arxiv:cs.LG",
            keywords=rng.sample(terms, rng.choice((0, 0, 1, 2))),
            exclude=rng.sample(terms, rng.choice((0, 0, 1))),
            authors=rng.sample(terms, rng.choice((0, 0, 1))),
        )
        expected = [p.id for p in papers if sub.matches(p)]
        assert [hit[2].id for hit in shared.hits(fetch, sub)] == expected, sub.describe()


async def test_a_rounds_fast_path_gives_every_chat_the_straightforward_digest(
    app: Paperboy,
) -> None:
    """Round ranks from keys worked out once per (feed, filters) and renders once per
    content; for random mixes (papers in several feeds, two versions in one feed, tied
    keys, failed and quiet feeds) every chat's digest must be byte for byte the one
    worked out for it alone: rank + unseen + render_digest."""
    import random

    from bot.digest import candidates, digest_title, rank, render_digest, unseen

    rng = random.Random(13)
    words = ["graph", "diffusion", "agents", "privacy", "sparse"]
    names = ["Ada Chen", "Li Ito", "Omar Singh"]
    times = [None, datetime(2025, 6, 2, tzinfo=UTC), datetime(2025, 6, 3, tzinfo=UTC)]
    pool = [f"2506.{i:05d}" for i in range(30)]

    def feed_papers(hf: bool, overlap: bool) -> list[Paper]:
        # Feeds that share papers, or (as often) not, each with or without two versions.
        ids = (
            rng.sample(pool, 12)
            if overlap
            else [f"2507.{rng.randrange(10**5):05d}" for _ in range(12)]
        )
        if rng.random() < 0.5:
            ids.append(f"{ids[0]}v{rng.choice((1, 2))}")  # a second version, same base id
        return [
            Paper(
                pid,
                f"{rng.choice(words).title()} {rng.choice(words)}",
                rng.sample(names, 2),
                " ".join(rng.choices(words, k=6)),
                ["cs.LG"],
                version=rng.choice((None, 1, 2, 3)),
                published=rng.choice(times),
                updated=rng.choice(times),
                announce_type=None if hf else rng.choice(("new", "cross", "replace")),
                upvotes=rng.choice((None, 0, 3, 3, 7)) if hf else None,
                ai_summary=rng.choice((None, "In short.")) if hf else None,
            )
            for pid in ids
        ]

    for trial in range(20):
        overlap = trial % 2 == 0
        fetches: dict[str, FeedFetch | None] = {
            "hf:daily": FeedFetch(feed_papers(True, overlap), date(2025, 6, 4)),
            "arxiv:cs.LG": FeedFetch(feed_papers(False, overlap), date(2025, 6, 4)),
            "arxiv:cs.AI": FeedFetch(feed_papers(False, overlap), date(2025, 6, 4)),
            "arxiv:cs.CV": FeedFetch(
                feed_papers(False, overlap), None if trial % 3 == 0 else NOW.date()
            ),
            "arxiv:cs.CL": None,  # failed this round
        }
        rnd = Round(app, NOW)
        rnd.feeds = dict(fetches)
        for _ in range(60):
            chat_subs = [
                Subscription(
                    CHAT,
                    feed,
                    keywords=rng.sample(words, rng.choice((0, 0, 1, 2))),
                    exclude=rng.sample(words, rng.choice((0, 0, 0, 1))),
                    authors=[n.split()[-1] for n in rng.sample(names, rng.choice((0, 0, 0, 1)))],
                )
                for feed in rng.choices(list(fetches), k=rng.choice((1, 2, 2, 3)))
            ]
            settings = ChatSettings(
                CHAT,
                count=rng.choice((1, 5, 10)),
                format=rng.choice(("compact", "full")),
                explain=rng.random() < 0.2,  # the plain way (no math lines ready here)
                timezone=rng.choice(("UTC", "Asia/Tokyo", "Pacific/Honolulu")),  # two dates
            )
            delivered = set(rng.sample(pool, rng.choice((0, 0, 3))))
            found = candidates(fetches, chat_subs)
            best = rnd.ranked(chat_subs)
            if found is None:
                assert best is None
                continue
            assert best == rank(found)
            papers = unseen(rank(found), delivered, settings.count)
            title = digest_title(settings, NOW)
            expected = [message_to_json(m) for m in render_digest(settings, papers, title)]
            assert rnd.digest(settings, best, delivered)[0] == expected
            # The delivery round's way for a chat that received none of them: the top only.
            top = rnd.top(chat_subs, settings.count)
            assert top == best[: settings.count]
            if not delivered:
                assert top is not None and rnd.fresh(settings, top)[0] == expected
