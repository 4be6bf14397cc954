"""Issue 14 on Telegram, end to end through python-telegram-bot and the fake Bot API:
votes by reaction and by button change the next /digest; a group member's vote counts but
does not change settings; /export bibtex sends a document a BibTeX parser reads back."""

# ruff: noqa: F811 - pytest fixtures are imported, then named as parameters

from __future__ import annotations

import asyncio

import bibtexparser

from bot.models import ChatRef
from tests.fakes.telegram import SentMessage
from tests.learn_data import (
    FACE_3D,
    MEMORIZATION,
    MRI,
    PATHOLOGY,
    VIDEO_ANOMALY,
    cs_cv_papers,
    seed_feed,
)
from tests.test_telegram import (  # noqa: F401 - fixtures
    ADMIN,
    GROUP,
    MEMBER,
    USER,
    Bot,
    bot,
    paperboy,
    say,
)


async def settle(bot: Bot, chat: ChatRef, votes: int) -> None:
    """Until the chat's model has learned from `votes` votes (updates run concurrently; the
    first one also builds the feature space)."""
    for _ in range(3000):
        if (await bot.store.get_learning(chat)).model_votes == votes:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the model never learned from {votes} votes")


def titles(messages: list[SentMessage]) -> list[str]:
    return [m.text.split("\n", 1)[0] for m in messages]


async def test_a_reaction_and_a_button_change_the_next_digest(bot: Bot) -> None:
    await seed_feed(bot.store, cs_cv_papers())
    await say(bot, USER, USER, "/subscribe arxiv:cs.CV")
    await say(bot, USER, USER, "/settings format full")
    await say(bot, USER, USER, "/settings count 3")
    first = await say(bot, USER, USER, "/digest", count=3)
    # Untrained: the listing's order, each paper with why it is here and its vote buttons.
    assert [t.split(". ", 1)[0] for t in titles(first)] == ["1", "2", "3"]
    assert "3D Human Face Reconstruction" in first[0].text
    assert "Memorization In Stable Diffusion" in first[1].text
    assert "Video Anomaly Detection" in first[2].text
    assert all("Why: new in cs.CV" in m.text for m in first)
    assert all({"👍", "👎", "💾"} <= {b["text"] for b in m.buttons} for m in first)
    chat = ChatRef("telegram", str(USER))

    bot.tg.react(USER, first[0].message_id, USER, ["👍"])  # a native reaction
    await settle(bot, chat, 1)
    bot.tg.press_button(USER, first[1].message_id, USER, "👎")  # a button
    await settle(bot, chat, 2)
    bot.tg.press_button(USER, first[2].message_id, USER, "👎")
    await settle(bot, chat, 3)
    assert {v.paper_id: v.value for v in await bot.store.chat_votes(chat)} == {
        FACE_3D: 1,
        MEMORIZATION: -1,
        VIDEO_ANOMALY: -1,
    }

    before = len(bot.tg.sent_to(USER))
    bot.tg.send_text(USER, USER, "/digest")
    sent = await bot.tg.wait_sent(USER, before + 1)
    await asyncio.sleep(0.3)  # the whole digest
    second = bot.tg.sent_to(USER)[before:]
    text = "\n".join(m.text for m in second)
    assert "3D Human Face Reconstruction" in second[0].text  # the liked paper leads
    assert "Memorization In Stable Diffusion" not in text  # the disliked ones are gone
    assert "Video Anomaly Detection" not in text
    assert titles(second) != titles(first)
    assert sent  # and nothing was marked delivered by the previews
    assert await bot.store.delivered_ids(chat, [FACE_3D, MEMORIZATION]) == set()

    # Taking the reaction back takes the vote back.
    bot.tg.react(USER, first[0].message_id, USER, [], ["👍"])
    await settle(bot, chat, 2)


async def test_a_members_vote_counts_for_the_group_but_settings_stay_with_admins(
    bot: Bot,
) -> None:
    await seed_feed(bot.store, cs_cv_papers())
    group = ChatRef("telegram", str(GROUP))
    await say(bot, GROUP, ADMIN, "/subscribe arxiv:cs.CV")
    await say(bot, GROUP, ADMIN, "/settings count 5")
    [digest] = await say(bot, GROUP, MEMBER, "/digest")  # compact: one numbered message
    labels = [b["text"] for b in digest.buttons]
    assert [x for x in labels if x.startswith("👍")] == ["👍 1", "👍 2", "👍 3", "👍 4", "👍 5"]
    bot.tg.press_button(GROUP, digest.message_id, MEMBER, "👍 1")
    await settle(bot, group, 1)
    bot.tg.press_button(GROUP, digest.message_id, ADMIN, "👍 1")  # same paper, another member
    for _ in range(100):
        votes = await bot.store.chat_votes(group)
        if votes and votes[0].value == 2:
            break
        await asyncio.sleep(0.02)
    assert [(v.paper_id, v.value) for v in await bot.store.chat_votes(group)] == [(FACE_3D, 2)]
    # The member's vote is the group's; other chats see nothing of it.
    assert await bot.store.chat_votes(ChatRef("telegram", str(USER))) == []

    [refused] = await say(bot, GROUP, MEMBER, "/settings quality strict")
    assert "Only chat admins" in refused.text
    assert (await bot.store.get_learning(group)).quality == "normal"
    [done] = await say(bot, GROUP, ADMIN, "/settings quality strict")
    assert "quality strict" in done.text
    [shown] = await say(bot, GROUP, MEMBER, "/settings")
    assert "learned from 1 vote" in shown.text  # one paper voted on, by two members


async def test_export_bibtex_is_a_document_a_parser_reads_back(bot: Bot) -> None:
    papers = {p.id: p for p in cs_cv_papers()}
    await seed_feed(bot.store, list(papers.values()))
    for pid in (MRI, PATHOLOGY, FACE_3D):
        [saved] = await say(bot, USER, USER, f"/save {pid}")
        assert "Saved" in saved.text
    [again] = await say(bot, USER, USER, f"/save {MRI}")
    assert "Already" in again.text
    [found] = await say(bot, USER, USER, "/saved pathology")
    assert "DALPHIN" in found.text and "3D Human Face" not in found.text

    note, document = await say(bot, USER, USER, "/export bibtex", count=2)
    assert "3 saved papers" in note.text
    assert document.method == "sendDocument" and document.document is not None
    name, data = document.document
    assert name == "paperboy-library.bib"
    parsed = bibtexparser.loads(data.decode("utf-8"))
    entries = {e["eprint"]: e for e in parsed.entries}
    assert set(entries) == {MRI, PATHOLOGY, FACE_3D}
    for pid, entry in entries.items():
        assert entry["ENTRYTYPE"] == "misc"
        assert entry["doi"] == f"10.48550/arXiv.{pid}"
        assert entry["title"] == papers[pid].title
        assert entry["year"] == "2026"
        assert entry["archiveprefix"] == "arXiv"
    assert entries[FACE_3D]["primaryclass"] == "cs.CV"
    assert len({e["ID"] for e in parsed.entries}) == 3


async def test_train_is_one_tap_per_paper(bot: Bot) -> None:
    await seed_feed(bot.store, cs_cv_papers())
    chat = ChatRef("telegram", str(USER))
    await say(bot, USER, USER, "/subscribe arxiv:cs.CV")
    rate, _hint = await say(bot, USER, USER, "/train", count=2)
    votes = [b["text"] for b in rate.buttons if b["text"][0] in "👍👎"]
    assert votes == [f"{m} {i}" for m in "👍👎" for i in range(1, 6)]
    bot.tg.press_button(USER, rate.message_id, USER, "👍 2")
    await settle(bot, chat, 1)
    [shown] = await say(bot, USER, USER, "/settings")
    assert "learned from 1 vote" in shown.text
    again, _ = await say(bot, USER, USER, "/train", count=2)
    [liked] = await bot.store.chat_votes(chat)
    assert liked.paper_id not in again.raw  # what was rated is not asked again
