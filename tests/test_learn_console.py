"""Issue 14 in the terminal, end to end (real httpx clients against the fakes, real data in
the store): /like changes the next /digest, /export bibtex writes a file a BibTeX parser
reads back, and a weekly chat gets one digest a week, with the week's best papers."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import bibtexparser

from adapters.console import CONSOLE_CHAT, ConsoleChat, render_reply
from bot.config import Settings
from bot.delivery import deliver_once
from bot.models import ChatSettings, Subscription
from bot.service import Paperboy
from tests.fakes.hf import FakeHF, load_daily_fixtures
from tests.learn_data import FACE_3D, MEMORIZATION, MRI, PATHOLOGY, cs_cv_papers, seed_feed


async def say(chat: ConsoleChat, line: str) -> str:
    reply = await chat.handle(line)
    assert reply is not None
    return render_reply(reply)


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def titles(text: str) -> list[str]:
    return re.findall(r"^\d+\. (.+)$", text, re.MULTILINE)


async def test_votes_digest_and_bibtex_in_the_terminal(
    paperboy_app: Paperboy, tmp_path: Path
) -> None:
    chat = ConsoleChat(paperboy_app, out=io.StringIO(), files_dir=tmp_path)
    await seed_feed(paperboy_app.store, cs_cv_papers())
    await say(chat, "/subscribe arxiv:cs.CV")
    await say(chat, "/settings count 4")
    first = await say(chat, "/digest")
    assert titles(first)[0].startswith("3D Human Face Reconstruction")
    assert "[👍 1: /like 2605.03996]" in first  # the buttons, as commands to type
    assert "Why: new in cs.CV" in first

    assert "learned from 1 vote" in await say(chat, f"/like {MRI}")
    assert "learned from 2 votes" in await say(chat, f"/like {PATHOLOGY}")
    assert "learned from 3 votes" in await say(chat, f"/dislike {MEMORIZATION}")
    again = await say(chat, "/like 2605.03098")  # the same vote twice counts once
    assert "learned from 3 votes" in again
    second = await say(chat, "/digest")
    assert titles(second) != titles(first)
    assert not any(t.startswith("Memorization In Stable Diffusion") for t in titles(second))
    assert "you liked" in second  # "close to <a liked title> you liked"
    assert "learned from 3 votes" in await say(chat, "/settings")

    await say(chat, f"/save {MRI}")
    await say(chat, f"/save {FACE_3D}")
    exported = await say(chat, "/export bibtex")
    [path] = re.findall(r"File: (\S+\.bib)", exported)
    assert Path(path).parent.name == tmp_path.name
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    entries = bibtexparser.loads(text).entries
    assert sorted(e["eprint"] for e in entries) == sorted([MRI, FACE_3D])
    assert {e["doi"] for e in entries} == {f"10.48550/arXiv.{MRI}", f"10.48550/arXiv.{FACE_3D}"}

    forgot = await say(chat, "/settings forget")
    assert "Forgotten: 3 votes" in forgot
    assert "learned from 0 votes" in await say(chat, "/settings")
    assert titles(await say(chat, "/digest")) == titles(first)  # back to the shared ranking


# Medical-imaging papers among the first 35 cs.CV papers of the day (read off their titles).
MEDICAL = {
    "2605.03098",  # … Data Augmentation for CT and MRI Cross-Domain …
    "2605.03221",  # Synthetic Data Generation for Long-Tail Medical Image Classification …
    "2605.03343",  # MedSR-Vision: … Medical Image Super-Resolution
    "2605.03352",  # Can Multimodal LLMs Understand Pathologic Movements? … (seizures)
    "2605.03358",  # Tracing Like a Clinician: … Cephalometric Landmark Detection
    "2605.03432",  # MK-ResRecon: … 3D MRI Refinement …
}


async def test_weekly_cadence_sends_once_a_week_with_the_weeks_best(
    paperboy_app: Paperboy, fake_settings: Settings
) -> None:
    store = paperboy_app.store
    papers = cs_cv_papers(60)
    week = papers[:35]
    start = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(9, 1), UTC)
    days = [start + timedelta(days=n) for n in range(7)]
    for n, moment in enumerate(days):  # each day's announcement, stored as a round would
        await seed_feed(store, week[n * 5 : (n + 1) * 5], moment)
    await store.upsert_papers(papers[35:])
    await store.save_chat(ChatSettings(CONSOLE_CHAT, delivery_time=time(9), count=3))
    await store.add_subscription(Subscription(CONSOLE_CHAT, "arxiv:cs.CV"))
    chat = ConsoleChat(paperboy_app, out=io.StringIO())
    # Taught before the week: two medical papers liked, none of them announced this week.
    await say(chat, "/like 2605.03787")  # … Domain Adaptation … for Medical Image Classification
    await say(chat, f"/like {PATHOLOGY}")
    await say(chat, f"/settings cadence weekly {days[-1]:%a}")

    sends = []
    for moment in days:
        out = io.StringIO()
        _, sent = await deliver_once(
            paperboy_app, fake_settings, [ConsoleChat(paperboy_app, out=out)], at(moment)
        )
        sends.append((moment, sent.sent, out.getvalue()))
    assert [n for _, n, _ in sends] == [0, 0, 0, 0, 0, 0, 1]  # once, on its day
    digest = sends[-1][2]
    assert "Your week's best papers" in digest
    shown = re.findall(r"<https://arxiv\.org/abs/(\d{4}\.\d{5})v1>", digest)
    assert len(shown) == 3
    assert len(MEDICAL & set(shown)) >= 2  # the week's best for this chat: medical imaging
    by_day = {p.id: n // 5 for n, p in enumerate(week)}
    assert len({by_day[p] for p in shown}) >= 2  # from several days of the week
    delivered = await store.delivered_ids(CONSOLE_CHAT, [p.id for p in week])
    assert delivered == set(shown)

    # A second round on the same day (a changed delivery time, say) sends nothing more.
    _, again = await deliver_once(
        paperboy_app,
        fake_settings,
        [ConsoleChat(paperboy_app, out=io.StringIO())],
        at(days[-1] + timedelta(hours=3)),
    )
    assert again.sent == 0


async def test_weekly_digest_adds_hugging_faces_list_of_the_week(
    paperboy_app: Paperboy, hf_server: FakeHF
) -> None:
    """A weekly hf:daily chat gets the papers Hugging Face listed earlier this week, though
    no round stored those days: they come from `/daily_papers?week=`, fetched once."""
    items = load_daily_fixtures()["2026-06-12"]
    today = datetime.now(UTC).date()
    # Another day of this ISO week than today: Monday, or Tuesday when today is Monday.
    other = today - timedelta(days=today.weekday()) + timedelta(days=today.weekday() == 0)
    hf_server.days = {today.isoformat(): items[:1], other.isoformat(): items[1:4]}
    earlier = {item["paper"]["title"] for item in items[1:4]}
    chat = ConsoleChat(paperboy_app, out=io.StringIO())
    await say(chat, "/subscribe hf:daily")
    await say(chat, "/settings cadence weekly")
    text = await say(chat, "/digest")
    assert "Your week's best papers" in text
    shown = set(titles(text))
    assert earlier <= shown  # listed on another day of the week, reached only by the weekly list
    assert items[0]["paper"]["title"] in shown
    weekly = [r for r in hf_server.requests if "week" in r.query]
    assert [r.query["week"] for r in weekly] == [
        f"{today.isocalendar()[0]}-W{today.isocalendar()[1]:02d}"
    ]
    await say(chat, "/digest")  # the week's list is stored with the day: not asked again
    assert len([r for r in hf_server.requests if "week" in r.query]) == 1
