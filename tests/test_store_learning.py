"""Votes, saved papers, topics and model state (issue 14) on every backend.

The `make_store` fixture comes from tests/test_store.py: each test gets a fresh database.
"""

from __future__ import annotations

from datetime import date

from bot.models import ChatRef, ChatSettings
from bot.store.base import Store
from bot.store.learning import LearnState
from tests.test_store import (  # noqa: F401 - the fixture
    HOSTILE,
    StoreFactory,
    make_store,
    mark_delivered,
)

GROUP = ChatRef("telegram", "-1001")
OTHER = ChatRef("telegram", "-1002")
THREAD = ChatRef("telegram", "-1001", "7")


async def _opened(factory: StoreFactory) -> Store:
    store = factory()
    await store.open()
    return store


async def test_votes_are_per_member_idempotent_and_summed(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store)
    await store.set_vote(GROUP, "alice", "2401.00001", 1)
    await store.set_vote(GROUP, "alice", "2401.00001", 1)  # again: still one vote
    await store.set_vote(GROUP, "bob", "2401.00001", 1)
    await store.set_vote(GROUP, "bob", "2401.00002", 1)
    await store.set_vote(GROUP, "bob", "2401.00002", -1)  # bob changes his mind
    await store.set_vote(GROUP, "carol", "2401.00003", 1)
    await store.set_vote(GROUP, "carol", "2401.00003", 0)  # and carol takes hers back
    votes = {v.paper_id: v.value for v in await store.chat_votes(GROUP)}
    assert votes == {"2401.00001": 2, "2401.00002": -1}


async def test_a_chats_votes_and_library_are_its_own(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store)
    await store.set_vote(GROUP, "alice", "2401.00001", 1)
    await store.save_paper(GROUP, "2401.00001")
    await store.set_topics(GROUP, "arxiv:cs.CV", ["shape correspondence"])
    for chat in (OTHER, THREAD):
        assert await store.chat_votes(chat) == []
        assert await store.saved_papers(chat) == []
        assert await store.chat_topics(chat) == {}
        assert await store.get_learning(chat) == LearnState()


async def test_library_saves_once_and_unsaves(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store)
    assert await store.save_paper(GROUP, HOSTILE) is True
    assert await store.save_paper(GROUP, HOSTILE) is False
    assert await store.save_paper(GROUP, "2401.00002") is True
    assert [p for p, _ in await store.saved_papers(GROUP)] == ["2401.00002", HOSTILE]
    assert await store.unsave_paper(GROUP, HOSTILE) is True
    assert await store.unsave_paper(GROUP, HOSTILE) is False
    assert await store.unsave_paper(OTHER, "2401.00002") is False
    assert [p for p, _ in await store.saved_papers(GROUP)] == ["2401.00002"]


async def test_learning_state_round_trips_and_forget_keeps_preferences(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    store = await _opened(make_store)
    state = LearnState(
        quality="strict",
        cadence="weekly",
        weekly_day=4,
        topic_threshold=0.4,
        model=b"\x00\x01\xff" * 50,
        model_votes=12,
        last_weekly=date(2026, 5, 8),
    )
    await store.save_learning(GROUP, state)
    got = await store.get_learning(GROUP)
    assert got.topic_threshold is not None and abs(got.topic_threshold - 0.4) < 1e-6
    got.topic_threshold = 0.4
    assert got == state
    await store.set_vote(GROUP, "alice", "2401.00001", 1)
    await store.set_vote(GROUP, "bob", "2401.00002", -1)
    await store.set_topics(GROUP, "arxiv:cs.CV", ["shape correspondence", HOSTILE])
    await store.set_topics(OTHER, "hf:daily", ["robot grasping"])
    among = await store.learning_among([GROUP, OTHER, THREAD])
    assert among[GROUP][0].model == state.model
    assert among[GROUP][1] == {"arxiv:cs.CV": sorted(["shape correspondence", HOSTILE])}
    assert among[OTHER] == (LearnState(), {"hf:daily": ["robot grasping"]})
    assert THREAD not in among
    assert await store.forget_learning(GROUP) == 2
    after = await store.get_learning(GROUP)
    assert (after.model, after.model_votes, after.cadence, after.quality) == (
        None,
        0,
        "weekly",
        "strict",
    )
    assert await store.chat_votes(GROUP) == []
    assert await store.chat_topics(GROUP) == {
        "arxiv:cs.CV": sorted(["shape correspondence", HOSTILE])
    }


async def test_learning_follows_a_migrated_chat(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store)
    await store.save_chat(ChatSettings(GROUP))
    await store.set_vote(GROUP, "alice", "2401.00001", 1)
    await store.save_paper(GROUP, "2401.00001")
    new = ChatRef("telegram", "-100999")
    await store.migrate_chat(GROUP, new)
    assert [v.paper_id for v in await store.chat_votes(new)] == ["2401.00001"]
    assert [p for p, _ in await store.saved_papers(new)] == ["2401.00001"]


async def test_recent_deliveries_are_the_chats_own(make_store: StoreFactory) -> None:  # noqa: F811
    store = await _opened(make_store)
    await mark_delivered(store, GROUP, ["2401.00001", "2401.00002"])
    await mark_delivered(store, OTHER, ["2401.00009"])
    assert sorted(p for p, _ in await store.recent_delivered(GROUP, 10)) == [
        "2401.00001",
        "2401.00002",
    ]
    assert len(await store.recent_delivered(GROUP, 1)) == 1
    assert await store.recent_delivered(THREAD, 10) == []
