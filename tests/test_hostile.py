"""Hostile upstreams and crafted papers (issue 11), end to end through the terminal chat,
the scheduler and the real HTTP clients against the fakes' hostile modes:
no failure is ever cached, a later healthy fetch delivers the whole day, every command
answers within 10 s, memory stays bounded, and a slow feed delays only its own chats.
"""

from __future__ import annotations

import asyncio
import io
import json
import multiprocessing
import re
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ConsoleChat, render_reply
from bot.config import Settings
from bot.delivery import scheduler_tick
from bot.models import ChatRef, ChatSettings, Subscription
from bot.runtime import open_service
from bot.service import Paperboy, feed_day
from bot.sources.arxiv import ArxivSource
from bot.sources.hf import HuggingFaceSource
from bot.store import open_store
from tests.fakes.arxiv import FIXTURES, FakeArxiv, make_paper
from tests.fakes.eprint import FakeEprint, crafted_sources
from tests.fakes.hf import FakeHF

FEED = "arxiv:cs.AI"
LISTING = FIXTURES / "arxiv_rss" / "atom_cs.AI_2025-08-20.xml"
# Read off the fixture: 86 entries, 41 "new" and 45 "cross", all delivered.
FULL_DAY = 86
ANSWER_WITHIN = 10.0
MEMORY_GROWTH = 200 * 2**20
ATTEMPTS = 2  # per upstream call in these tests; hostile modes are queued this many times


def hostile_settings(arxiv_server: FakeArxiv, hf_server: FakeHF, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "hf_api_url": hf_server.api_url,
        "database_url": "sqlite:///:memory:",
        "http_timeout_seconds": 2.0,
        "upstream_deadline_seconds": 2.0,
        "interactive_deadline_seconds": 3.0,
        "retry_after_cap_seconds": 2.0,
    }
    values.update(overrides)
    return arxiv_server.settings(**values)


@pytest.fixture(scope="module", autouse=True)
def _warm_latex_worker() -> None:
    """The forkserver starts once per process (`paperboy run` warms it at start too)."""
    from bot.explain.sandbox import warm_up

    warm_up()


@pytest.fixture
async def app(arxiv_server: FakeArxiv, hf_server: FakeHF) -> AsyncIterator[Paperboy]:
    settings = hostile_settings(arxiv_server, hf_server)
    store = open_store(settings.database_url)
    await store.open()
    arxiv = ArxivSource(settings, attempts=ATTEMPTS, backoff=0.05)
    hf = HuggingFaceSource(settings, attempts=ATTEMPTS, backoff=0.05)
    core = Paperboy(store, arxiv, hf, interactive_deadline=settings.interactive_deadline_seconds)
    try:
        yield core
    finally:
        await core.aclose()
        await store.close()


async def ask(app: Paperboy, line: str) -> tuple[str, float]:
    """What the terminal chat answers to `line`, and how long it took."""
    started = time.monotonic()
    reply = await ConsoleChat(app, out=io.StringIO()).handle(line)
    assert reply is not None
    return render_reply(reply), time.monotonic() - started


def today() -> Any:
    return feed_day(FEED, datetime.now(UTC))


async def settle(app: Paperboy) -> None:
    """Let background fetches that outlived a command finish (they store a good day)."""
    for _ in range(200):
        if not app._fetches:
            return
        await asyncio.sleep(0.05)


# --------------------------------------------------------------- never cache a failure


@pytest.mark.parametrize("mode", ["cut_after_header", "cut_midway"])
async def test_a_cut_listing_is_an_error_never_the_day(
    app: Paperboy, arxiv_server: FakeArxiv, mode: str
) -> None:
    arxiv_server.hostile_next(mode)
    text, took = await ask(app, "/today cs.AI")
    assert "arXiv sent an incomplete listing; I'll retry." in text
    assert "announced nothing" not in text and took < ANSWER_WITHIN
    assert await app.store.load_feed(FEED, today()) is None  # nothing cached
    # The next ask fetches again and gets the whole day.
    text, _ = await ask(app, "/today cs.AI")
    assert f"({FULL_DAY})" in text
    stored = await app.store.load_feed(FEED, today())
    assert stored is not None and len(stored[1]) == FULL_DAY


@pytest.mark.parametrize(
    "mode", ["trickle", "retry_after_hour", "reset", "huge", "gzip_bomb", "cut_midway"]
)
async def test_a_bad_upstream_moment_serves_the_last_good_day_marked_stale(
    app: Paperboy, arxiv_server: FakeArxiv, mode: str
) -> None:
    yesterday = today() - timedelta(days=1)
    await app.feed(FEED, yesterday, background=True)  # a good day already stored
    arxiv_server.hostile_next(mode, times=ATTEMPTS)
    tracemalloc.start()
    try:
        text, took = await ask(app, "/today cs.AI")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert took < ANSWER_WITHIN, f"{mode}: answered after {took:.1f}s"
    assert peak < MEMORY_GROWTH, f"{mode}: {peak / 2**20:.0f} MB"
    assert "Showing the last list I have" in text and f"({FULL_DAY})" in text
    await settle(app)
    assert await app.store.load_feed(FEED, today()) is None  # the failure was not cached
    arxiv_server.hostile.clear()
    fetch = await app.feed(FEED, background=True)
    assert len(fetch.papers) == FULL_DAY and fetch.stale is None


async def test_a_long_retry_after_says_when_to_come_back(
    app: Paperboy, arxiv_server: FakeArxiv
) -> None:
    arxiv_server.hostile_next("retry_after_hour")
    text, took = await ask(app, "/today cs.AI")
    assert "come back in about 60 min" in text and "UTC" in text
    assert took < ANSWER_WITHIN
    assert await app.store.load_feed(FEED, today()) is None


async def test_a_trickling_listing_answers_in_seconds_and_is_fetched_in_the_background(
    app: Paperboy, arxiv_server: FakeArxiv
) -> None:
    arxiv_server.hostile_next("trickle")  # the retry gets the real listing
    text, took = await ask(app, "/today cs.AI")
    assert took < ANSWER_WITHIN
    if "still fetching" in text:  # the command gave up waiting; the fetch goes on
        await settle(app)
        text, _ = await ask(app, "/today cs.AI")
    assert f"({FULL_DAY})" in text


async def test_resets_and_503s_answer_a_chat_user_quickly(
    app: Paperboy, arxiv_server: FakeArxiv
) -> None:
    arxiv_server.hostile_next("reset", times=10)
    text, took = await ask(app, "/paper 1605.08386")
    assert took < ANSWER_WITHIN and "try again" in text
    arxiv_server.hostile.clear()
    arxiv_server.fail_next(503, times=10)
    text, took = await ask(app, "/search heat-bath")
    assert took < ANSWER_WITHIN and "try again" in text


@pytest.mark.parametrize("mode", ["huge", "gzip_bomb", "cut_json", "trickle"])
async def test_hugging_face_failures_are_bounded_and_never_cached(
    app: Paperboy, hf_server: FakeHF, mode: str
) -> None:
    hf_server.hostile_next(mode, times=ATTEMPTS)
    tracemalloc.start()
    try:
        text, took = await ask(app, "/trending")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert took < ANSWER_WITHIN and peak < MEMORY_GROWTH
    assert "try" in text and "Trending on Hugging Face" not in text
    await settle(app)
    day = feed_day("hf:trending", datetime.now(UTC))
    assert await app.store.load_feed("hf:trending", day) is None
    hf_server.hostile.clear()
    text, _ = await ask(app, "/trending 3")
    assert "Trending on Hugging Face" in text


# ----------------------------------------------------------- duplicates, inert text, caps


def _doubled(listing: bytes) -> bytes:
    entries = re.findall(rb"<entry>.*?</entry>", listing, re.S)
    head = listing[: listing.index(b"<entry>")]
    return head + b"\n".join(e + b"\n" + e for e in entries) + b"\n</feed>\n"


async def test_duplicated_listing_entries_are_shown_once(
    app: Paperboy, arxiv_server: FakeArxiv
) -> None:
    arxiv_server.set_listing("cs.AI", _doubled(LISTING.read_bytes()))
    text, _ = await ask(app, "/today cs.AI")
    assert f"({FULL_DAY})" in text
    assert text.count("Chain-of-Agents: End-to-End Agent Foundation Models") == 1


async def test_terminal_escapes_in_upstream_text_never_reach_the_terminal(
    app: Paperboy, arxiv_server: FakeArxiv, hf_server: FakeHF
) -> None:
    # JSON may carry any control character: a Hugging Face title that retitles and clears
    # the terminal, with a bidi override and an 8-bit CSI for good measure.
    evil = "Retitled\x1b]0;pwned\x07 \x1b[2Jcleared \u202eevil\x9b31m red\x00"
    item = json.loads(json.dumps(hf_server.all_items()[0]))
    item["paper"]["title"] = item["title"] = evil
    item["paper"]["summary"] = item["summary"] = evil * 3
    hf_server.trending = [item]
    text, _ = await ask(app, "/trending")
    assert "Retitled" in text and "cleared" in text
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text)
    assert "pwned" not in text  # the whole OSC sequence is gone, not just its ESC
    # XML cannot carry ESC, but it can carry C1 controls and bidi overrides.
    arxiv_server.add_paper(
        make_paper("2601.00042", title="Clean \u202etitle\x85", authors=["Eve\u2066"])
    )
    text, _ = await ask(app, "/paper 2601.00042")
    assert "Clean title" in text and "Eve" in text
    stored = await app.store.get_paper("2601.00042")
    assert stored is not None and stored.title == "Clean title"


async def test_oversized_fields_are_capped_before_they_are_stored(
    app: Paperboy, arxiv_server: FakeArxiv
) -> None:
    arxiv_server.add_paper(
        make_paper(
            "2601.00043",
            title="T" * 50_000,
            summary="word " * 2_000_000,  # a 10 MB abstract
            authors=[f"Author {i}" for i in range(5000)],
        )
    )
    paper = await app.paper("2601.00043")
    assert paper is not None
    stored = await app.store.get_paper("2601.00043")
    assert stored is not None
    assert len(stored.title) <= 1000 and len(stored.abstract) <= 10_000
    assert len(stored.authors) <= 500 and stored.authors[0] == "Author 0"


# ------------------------------------------------------------------------------ fairness


async def test_a_slow_feed_does_not_delay_other_chats_digests(
    app: Paperboy, hf_server: FakeHF
) -> None:
    hf_chat, arxiv_chat = ChatRef("telegram", "1"), ChatRef("telegram", "2")
    for chat, feed in ((hf_chat, "hf:trending"), (arxiv_chat, FEED)):
        await app.store.save_chat(ChatSettings(chat))
        await app.store.add_subscription(Subscription(chat, feed))
    now = datetime.now(UTC)
    await app.store.set_next_runs([(hf_chat, now - timedelta(minutes=1))] * 1)
    await app.store.set_next_runs([(arxiv_chat, now - timedelta(minutes=1))])
    hf_server.hostile_next("trickle", times=ATTEMPTS)  # ~4 s of dribbling, then a failure
    enqueued: list[tuple[float, set[str]]] = []
    original = app.store.enqueue_digests
    started = time.monotonic()

    async def recording(items: Any, at: datetime) -> Any:
        enqueued.append((time.monotonic() - started, {e.chat.chat_id for e in items}))
        return await original(items, at)

    app.store.enqueue_digests = recording  # type: ignore[method-assign,assignment]
    stats = await scheduler_tick(app, now)
    assert stats.digests == 1 and stats.postponed == 1
    when = {chat: at for at, chats in enqueued for chat in chats}
    # The HF feed dribbles for ~4 s (two 2 s attempts); the arXiv chat does not wait for it.
    assert when["2"] < 3.0, f"the arXiv chat waited {when['2']:.1f}s for the HF feed"
    assert when["1"] > when["2"] + 0.5


async def test_a_dribbling_eprint_does_not_hold_the_arxiv_gate(
    arxiv_server: FakeArxiv, hf_server: FakeHF
) -> None:
    async with FakeEprint() as eprints:
        eprints.eprints["1605.08386"] = crafted_sources()["iffalse_7mb"]
        eprints.hostile_next("trickle", times=5)
        settings = hostile_settings(
            arxiv_server,
            hf_server,
            arxiv_eprint_url=eprints.eprint_url,
            arxiv_html_url=eprints.html_url,
            arxiv_delay_seconds=0.2,
        )
        async with open_service(settings) as core:
            explaining = asyncio.create_task(ask(core, "/explain 1605.08386"))
            await asyncio.sleep(1.0)  # the e-print is dribbling by now
            text, took = await ask(core, "/paper astro-ph/0601001")
            assert took < 3.0 and "astro-ph/0601001" in text
            text, took = await ask(core, "/today cs.AI")
            assert took < 3.0 and f"({FULL_DAY})" in text
            text, took = await explaining
            assert took < 2 * settings.upstream_deadline_seconds * 3 + 5


# ------------------------------------------------------------------------ crafted LaTeX


@pytest.mark.parametrize("name", sorted(crafted_sources()))
async def test_crafted_sources_cost_seconds_and_fall_back_clearly(
    arxiv_server: FakeArxiv, hf_server: FakeHF, name: str
) -> None:
    async with FakeEprint() as eprints:
        eprints.eprints["1605.08386"] = crafted_sources()[name]
        settings = hostile_settings(
            arxiv_server,
            hf_server,
            arxiv_eprint_url=eprints.eprint_url,
            arxiv_html_url=eprints.html_url,
        )
        async with open_service(settings) as core:
            await core.paper("1605.08386")  # looked up before the clock starts
            text, took = await ask(core, "/explain 1605.08386")
    assert took < 5.0, f"{name}: {took:.1f}s"
    assert "built from abstract only" in text  # the fallback says what it is built from
    assert not multiprocessing.active_children()  # no worker left behind


async def test_cancelling_a_parse_kills_its_worker_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.explain import sandbox
    from bot.explain.source import Limits

    def slow_unpack(data: bytes, limits: Limits) -> Any:
        time.sleep(60)  # stands in for a parse that would never end

    monkeypatch.setattr(sandbox, "_CTX", multiprocessing.get_context("fork"))
    monkeypatch.setattr(sandbox, "unpack", slow_unpack)
    job = asyncio.create_task(sandbox.read_source(b"x", Limits(), "", seconds=60))
    await asyncio.sleep(0.5)
    assert multiprocessing.active_children()
    started = time.monotonic()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert time.monotonic() - started < 2.0
    assert not multiprocessing.active_children()


async def test_a_parse_that_burns_cpu_is_stopped_by_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.explain import sandbox
    from bot.explain.source import Limits, SourceUnavailable

    def spin(data: bytes, limits: Limits) -> Any:
        while True:  # stands in for a parse no budget caught
            pass

    monkeypatch.setattr(sandbox, "_CTX", multiprocessing.get_context("fork"))
    monkeypatch.setattr(sandbox, "unpack", spin)
    monkeypatch.setattr(sandbox, "SOURCE_CPU_SECONDS", 1)
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="took too long"):
        await sandbox.read_source(b"x", Limits(), "", seconds=30)
    assert time.monotonic() - started < 10  # 1 s of CPU, however busy the machine
    assert not multiprocessing.active_children()


async def test_sigterm_during_a_crafted_parse_stops_the_bot(
    arxiv_server: FakeArxiv, hf_server: FakeHF, tmp_path: Path
) -> None:
    import os
    import signal
    import sys

    async with FakeEprint() as eprints:
        eprints.eprints["1605.08386"] = crafted_sources()["iffalse_blocks"]
        env = dict(os.environ)
        for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "LLM_PROVIDER", "LLM_API_KEY"):
            env.pop(key, None)
        env.update(
            ARXIV_API_URL=arxiv_server.api_url,
            ARXIV_LISTING_URL=arxiv_server.listing_url,
            ARXIV_EPRINT_URL=eprints.eprint_url,
            ARXIV_HTML_URL=eprints.html_url,
            ARXIV_DELAY_SECONDS="0",
            HF_API_URL=hf_server.api_url,
            PAPERBOY_DATABASE_URL=f"sqlite:///{tmp_path}/bot.db",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None
        proc.stdin.write(b"/explain 1605.08386\n")
        await proc.stdin.drain()
        for _ in range(200):  # until the e-print has been fetched: parsing now
            if eprints.count("e-print"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        for _ in range(100):  # 5 s
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert proc.returncode is not None, "the bot was still running 5 s after SIGTERM"
        # Nothing it started outlives it for long: the worker dies with it, and the
        # forkserver once its imports are done; then the output pipe closes.
        await asyncio.wait_for(proc.communicate(), 15.0)
        assert eprints.count("e-print") == 1
