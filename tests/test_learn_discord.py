"""Issue 14 on Discord, end to end through discord.py and the fake Discord: a reaction (the
non-privileged reactions intent) and a button change the next /digest; /export bibtex
answers with a .bib attachment a BibTeX parser reads back."""

# ruff: noqa: F811 - pytest fixtures are imported, then named as parameters

from __future__ import annotations

import asyncio

import bibtexparser

from adapters.discord import DiscordAdapter, render_discord
from bot.digest import render_digest
from bot.models import ChatRef, ChatSettings
from bot.service import Paperboy
from tests.fakes.discord import FakeDiscord
from tests.learn_data import FACE_3D, MEMORIZATION, MRI, VIDEO_ANOMALY, cs_cv_papers, seed_feed
from tests.test_discord import bot, core  # noqa: F401 - fixtures


async def settle(core: Paperboy, chat: ChatRef, votes: int) -> None:
    for _ in range(3000):
        if (await core.store.get_learning(chat)).model_votes == votes:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the model never learned from {votes} votes")


async def test_a_reaction_and_a_button_change_the_next_digest(
    bot: DiscordAdapter,
    discord_server: FakeDiscord,
    core: Paperboy,
) -> None:
    fake = discord_server
    chat = ChatRef("discord", fake.channel_id)
    await seed_feed(core.store, cs_cv_papers())
    for name, options in (
        ("subscribe", {"feed": "arxiv:cs.CV"}),
        ("settings", {"key": "format", "value": "full"}),
        ("settings", {"key": "count", "value": "3"}),
    ):
        await (await fake.slash(name, options, admin=True)).wait_done()
    first = await (await fake.slash("digest", {})).wait_done(followups=3)
    cards = first.followups
    assert "3D Human Face Reconstruction" in str(cards[0])
    assert "Memorization In Stable Diffusion" in str(cards[1])
    assert "Why: new in cs.CV" in first.text

    reader = fake.user("reader")
    assert await fake.react(cards[0], "👍", user=reader)  # the bot asked for the intent
    await settle(core, chat, 1)
    pressed = await (await fake.press(f"pb:dislike:{MEMORIZATION}", message=cards[1])).wait_done()
    assert "👎" in pressed.text
    await settle(core, chat, 2)
    await (await fake.press(f"pb:dislike:{VIDEO_ANOMALY}", message=cards[2])).wait_done()
    await settle(core, chat, 3)
    assert {v.paper_id: v.value for v in await core.store.chat_votes(chat)} == {
        FACE_3D: 1,
        MEMORIZATION: -1,
        VIDEO_ANOMALY: -1,
    }

    second = await (await fake.slash("digest", {})).wait_done(followups=3)
    assert "3D Human Face Reconstruction" in str(second.followups[0])
    assert "Memorization In Stable Diffusion" not in second.text
    assert "Video Anomaly Detection" not in second.text

    # Removing the reaction takes the vote back.
    assert await fake.react(cards[0], "👍", user=reader, remove=True)
    await settle(core, chat, 2)


async def test_export_bibtex_is_an_attachment(
    bot: DiscordAdapter,
    discord_server: FakeDiscord,
    core: Paperboy,
) -> None:
    fake = discord_server
    await seed_feed(core.store, cs_cv_papers())
    for pid in (MRI, FACE_3D):
        saved = await (await fake.slash("save", {"id": pid})).wait_done()
        assert "Saved" in saved.text
    done = await (await fake.slash("export", {"format": "bibtex"})).wait_done()
    assert "2 saved papers" in done.text
    [(name, data)] = [f for files in fake.attachments.values() for f in files]
    assert name == "paperboy-library.bib"
    entries = {e["eprint"]: e for e in bibtexparser.loads(data.decode()).entries}
    assert set(entries) == {MRI, FACE_3D}
    assert entries[MRI]["doi"] == f"10.48550/arXiv.{MRI}"


def test_a_ten_paper_digest_keeps_every_vote_within_discords_limits() -> None:
    papers = cs_cv_papers(10)
    [message] = render_digest(ChatSettings(ChatRef("discord", "1"), count=10), papers, "Today")
    [part] = render_discord(message)
    assert len(part.menus) + len(part.buttons) <= 5  # rows under one message
    offered = [
        (b.command, b.arg) for rows in (part.menus, part.buttons) for row in rows for b in row
    ]
    for command in ("explain", "like", "dislike"):
        assert {a for c, a in offered if c == command} == {p.id for p in papers}
    labels = [b.label for row in part.menus for b in row]
    assert f"👍 1. {papers[0].title}"[:100] in labels  # which menu entry votes on what
    assert {b.command for row in part.buttons for b in row} >= {"unsubscribe", "settings"}
