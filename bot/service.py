"""Paperboy's services: what commands and the scheduler ask of the core.

Papers and feeds are cached in the store, so a feed is fetched once per day however
many chats follow it, and concurrent asks for one feed (or one paper) share one fetch.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.explain.cache import SingleFlight
from bot.ids import InvalidArxivId, parse_arxiv_id
from bot.models import ChatRef, ChatSettings, Paper
from bot.sources.base import FeedFetch, Source, SourceError
from bot.store.base import Store
from bot.text import Reply

if TYPE_CHECKING:
    from bot.commands import Context
    from bot.explain import Explainer

log = logging.getLogger(__name__)

ARXIV_ZONE = ZoneInfo("America/New_York")
# arXiv announces at 20:00 US Eastern and its listing feeds refresh by midnight Eastern;
# a fetch stays current until the next refresh, so arXiv feeds are cached per Eastern
# date, with a little slack for a late refresh.
ARXIV_REFRESH_SLACK = timedelta(minutes=30)


def feed_day(feed: str, now: datetime) -> date:
    """The day under which a feed's fetch is cached (see Paperboy.feed)."""
    if feed.startswith("arxiv:"):
        return (now.astimezone(ARXIV_ZONE) - ARXIV_REFRESH_SLACK).date()
    return now.astimezone(UTC).date()


class Paperboy:
    def __init__(
        self, store: Store, arxiv: Source, hf: Source, explainer: Explainer | None = None
    ) -> None:
        self.store = store
        self.arxiv = arxiv
        self.hf = hf
        self.explainer = explainer
        self._feed_locks: dict[str, asyncio.Lock] = {}
        # One arXiv lookup per unknown paper however many ask at once: each lookup waits
        # its turn at arXiv's polite gate, so 100 of them would take minutes.
        self._lookups: SingleFlight[Paper | None] = SingleFlight()

    def source_for(self, feed: str) -> tuple[Source, str]:
        prefix, _, name = feed.partition(":")
        source = {"arxiv": self.arxiv, "hf": self.hf}.get(prefix)
        if source is None or not name:
            raise ValueError(f"unknown feed {feed!r}")
        return source, name

    # ------------------------------------------------------------------ papers

    async def paper(self, text: str) -> Paper | None:
        """A paper by id or link: from the cache, else arXiv (+ what Hugging Face adds)."""
        wanted = parse_arxiv_id(text)
        cached = await self.store.get_paper(wanted.id)
        if cached and (wanted.version is None or (cached.version or 0) >= wanted.version):
            return cached
        return await self._lookups.do(wanted.id, lambda: self._look_up(wanted.id, cached))

    async def _look_up(self, paper_id: str, cached: Paper | None) -> Paper | None:
        """The paper from arXiv (+ what Hugging Face adds), stored."""
        found = await self.arxiv.papers([paper_id])
        if not found:
            return None
        paper = found[0]
        await self._add_hf_details(paper, cached)
        await self.store.upsert_papers([paper])
        return paper

    async def _add_hf_details(self, paper: Paper, cached: Paper | None) -> None:
        try:
            hf = await self.hf.papers([paper.id])
        except SourceError as e:  # Hugging Face is a nice-to-have for one paper
            log.info("no Hugging Face details for %s: %s", paper.id, e)
            hf = [cached] if cached else []
        if hf:
            merge_hf(paper, hf[0])

    async def trending(self, count: int) -> list[Paper]:
        return (await self.feed("hf:trending")).papers[:count]

    async def search(self, query: str, limit: int = 10) -> list[Paper]:
        papers = await self.arxiv.search(query, limit)
        await self.store.upsert_papers(papers)
        return papers

    async def feed(self, feed: str, day: date | None = None) -> FeedFetch:
        """A feed's papers for `day` (by default the feed's current day, see `feed_day`):
        stored after the first fetch of that day."""
        day = day or feed_day(feed, datetime.now(UTC))
        lock = self._feed_locks.setdefault(feed, asyncio.Lock())
        async with lock:
            stored = await self.store.load_feed(feed, day)
            if stored is not None:
                announced, ids = stored
                by_id = await self.store.get_papers(ids)
                return FeedFetch([by_id[i] for i in ids if i in by_id], announced)
            source, name = self.source_for(feed)
            fetch = await source.feed(name)
            await self.store.upsert_papers(fetch.papers)
            # An empty arXiv listing is a day without an announcement, the same all day. An
            # empty Hugging Face list is a glitch or a list not out yet: ask again next time.
            if fetch.papers or source is self.arxiv:
                await self.store.save_feed(feed, day, fetch.announced, [p.id for p in fetch.papers])
            return fetch

    # ------------------------------------------------------------------- chats

    async def chat_settings(self, chat: ChatRef) -> ChatSettings:
        return await self.store.get_chat(chat) or ChatSettings(chat)

    async def save_chat_settings(self, settings: ChatSettings) -> None:
        await self.store.save_chat(settings)

    # ----------------------------------------------------------------- explain

    async def explain(self, text: str, ctx: Context) -> Reply:
        paper = await self._paper_or_reply(text)
        if isinstance(paper, Reply):
            return paper
        if self.explainer is None:
            return Reply.text("Explanations are not available in this installation.")
        return await self.explainer.explain(
            paper, user=ctx.user_id, chat=ctx.chat.key, render_images=ctx.images
        )

    async def ask(self, text: str, question: str, ctx: Context) -> Reply:
        paper = await self._paper_or_reply(text)
        if isinstance(paper, Reply):
            return paper
        if self.explainer is None:
            return Reply.text("Questions about papers are not available in this installation.")
        return await self.explainer.follow_up(paper, question, user=ctx.user_id, chat=ctx.chat.key)

    async def _paper_or_reply(self, text: str) -> Paper | Reply:
        try:
            paper = await self.paper(text)
        except InvalidArxivId as e:
            return Reply.text(str(e))
        if paper is None:
            return Reply.text(f"I couldn't find arXiv paper {text}. Is the id right?")
        return paper

    async def aclose(self) -> None:
        if self.explainer is not None:
            await self.explainer.aclose()
        for source in (self.arxiv, self.hf):
            await source.aclose()


def merge_hf(paper: Paper, hf: Paper) -> None:
    """Add what Hugging Face knows (votes, AI summary, code) to an arXiv paper."""
    paper.upvotes = hf.upvotes if hf.upvotes is not None else paper.upvotes
    paper.ai_summary = hf.ai_summary or paper.ai_summary
    paper.ai_keywords = hf.ai_keywords or paper.ai_keywords
    paper.github_repo = hf.github_repo or paper.github_repo
    paper.github_stars = hf.github_stars if hf.github_stars is not None else paper.github_stars
    paper.project_page = hf.project_page or paper.project_page
