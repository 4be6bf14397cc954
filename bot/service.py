"""Paperboy's services: what commands and the scheduler ask of the core.

Papers and feeds are cached in the store, so a feed is fetched once per day however
many chats follow it, and concurrent asks for one feed (or one paper) share one fetch.
Only a fetch that succeeded is stored (the sources raise on anything cut off or
unreadable), so a bad upstream moment is retried, never kept as the day.

Chat commands wait `interactive_deadline` seconds at most: then they get the last good
copy of the feed, marked stale, or a "still fetching" message, while the fetch goes on in
the background and stores the day when it completes. The scheduler waits for the fetch
itself (each upstream attempt has its own deadline in `bot.sources.http`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.doc import Reply
from bot.explain.cache import SingleFlight
from bot.ids import InvalidArxivId, parse_arxiv_id
from bot.models import ChatRef, ChatSettings, Paper, Subscription
from bot.sources.base import FeedFetch, Source, SourceError
from bot.store.base import Store
from bot.store.learning import LearnState

if TYPE_CHECKING:
    from bot.explain import Explainer
    from bot.explain.digest_line import MathLines

log = logging.getLogger(__name__)

ARXIV_ZONE = ZoneInfo("America/New_York")
# arXiv announces at 20:00 US Eastern and its listing feeds refresh by midnight Eastern;
# a fetch stays current until the next refresh, so arXiv feeds are cached per Eastern
# date, with a little slack for a late refresh.
ARXIV_REFRESH_SLACK = timedelta(minutes=30)


# How far back a stale copy of a feed may come from when the upstream fails.
STALE_DAYS = 7


def feed_day(feed: str, now: datetime) -> date:
    """The day under which a feed's fetch is cached (see Paperboy.feed)."""
    if feed.startswith("arxiv:"):
        return (now.astimezone(ARXIV_ZONE) - ARXIV_REFRESH_SLACK).date()
    return now.astimezone(UTC).date()


class Paperboy:
    def __init__(
        self,
        store: Store,
        arxiv: Source,
        hf: Source,
        explainer: Explainer | None = None,
        *,
        interactive_deadline: float = 6.0,
    ) -> None:
        self.store = store
        self.arxiv = arxiv
        self.hf = hf
        self.explainer = explainer
        self.interactive_deadline = interactive_deadline
        # Digest math lines (`/settings explain on`): set by `bot.runtime.open_service`, one cache
        # for every chat; without it digests carry no math lines.
        self.math_lines: MathLines | None = None
        # One arXiv lookup per unknown paper however many ask at once: each lookup waits
        # its turn at arXiv's polite gate, so 100 of them would take minutes.
        self._lookups: SingleFlight[Paper | None] = SingleFlight()
        # One fetch per (feed, day) in flight, shared by every asker; it outlives a chat
        # command that stopped waiting, so the day gets stored when the upstream answers.
        self._fetches: dict[tuple[str, date], asyncio.Task[FeedFetch]] = {}

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
        try:
            # One deadline for the whole answer; a lookup that outlives it still completes
            # (it is shared and shielded) and stores the paper for the next ask.
            async with asyncio.timeout(self.interactive_deadline):
                return await self._lookups.do(wanted.id, lambda: self._look_up(wanted.id, cached))
        except TimeoutError:
            raise SourceError("arXiv is answering slowly; try again in a minute.") from None

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
            # A nice-to-have for one paper: a short wait, then without it.
            async with asyncio.timeout(self.interactive_deadline / 2):
                hf = await self.hf.papers([paper.id])
        except (SourceError, TimeoutError) as e:
            log.info("no Hugging Face details for %s: %s", paper.id, e or "too slow")
            hf = [cached] if cached else []
        if hf:
            merge_hf(paper, hf[0])

    async def trending(self, count: int) -> list[Paper]:
        return (await self.feed("hf:trending")).papers[:count]

    async def search(self, query: str, limit: int = 10) -> list[Paper]:
        try:
            async with asyncio.timeout(self.interactive_deadline):
                papers = await self.arxiv.search(query, limit)
        except TimeoutError:
            raise SourceError("arXiv search is answering slowly; try again in a minute.") from None
        await self.store.upsert_papers(papers)
        return papers

    async def feed(
        self, feed: str, day: date | None = None, *, background: bool = False
    ) -> FeedFetch:
        """A feed's papers for `day` (by default the feed's current day, see `feed_day`):
        stored after the first successful fetch of that day.

        A chat command (`background=False`) waits `interactive_deadline` at most; if the
        upstream is slow or failing it gets the last good copy, with `stale` set, or a
        SourceError. The scheduler (`background=True`) waits for the fetch itself."""
        day = day or feed_day(feed, datetime.now(UTC))
        stored = await self._stored(feed, day)
        if stored is not None:
            return stored
        source, name = self.source_for(feed)
        fetching = self._fetch(feed, name, source, day)
        if background:
            return await asyncio.shield(fetching)
        try:
            async with asyncio.timeout(self.interactive_deadline):
                return await asyncio.shield(fetching)
        except TimeoutError:
            why = f"{_upstream_name(feed)} is answering slowly; I'm still fetching {feed}."
            problem: SourceError = SourceError(f"{why} Please try again in a minute.")
        except SourceError as e:
            why, problem = str(e), e
        earlier = await self._last_good(feed, day)
        if earlier is None:
            raise problem
        earlier.stale = why
        return earlier

    async def _stored(self, feed: str, day: date) -> FeedFetch | None:
        stored = await self.store.load_feed(feed, day)
        if stored is None:
            return None
        announced, ids = stored
        by_id = await self.store.get_papers(ids)
        return FeedFetch([by_id[i] for i in ids if i in by_id], announced)

    async def _last_good(self, feed: str, day: date) -> FeedFetch | None:
        """The most recent stored day of this feed with papers, within `STALE_DAYS`."""
        for back in range(1, STALE_DAYS + 1):
            stored = await self._stored(feed, day - timedelta(days=back))
            if stored is not None and stored.papers:
                return stored
        return None

    def _fetch(self, feed: str, name: str, source: Source, day: date) -> asyncio.Task[FeedFetch]:
        key = (feed, day)
        task = self._fetches.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch_and_store(feed, name, source, day))
            self._fetches[key] = task
            task.add_done_callback(lambda t: self._fetch_done(key, t))
        return task

    def _fetch_done(self, key: tuple[str, date], task: asyncio.Task[FeedFetch]) -> None:
        self._fetches.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here so a fetch nobody waited for to the end does not warn; the
            # next ask (or the scheduler's next round) fetches again.
            log.info("fetching %s failed: %s", key[0], task.exception())

    async def _fetch_and_store(self, feed: str, name: str, source: Source, day: date) -> FeedFetch:
        stored = await self._stored(feed, day)  # a fetch that just finished stored it
        if stored is not None:
            return stored
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

    async def reactivate(self, chat: ChatRef) -> bool:
        """Switch a paused chat (a delivery failed there) back on; True if it was paused."""
        settings = await self.store.get_chat(chat)
        if settings is None or settings.active:
            return False
        await self.store.set_chat_active(chat, True)
        return True

    # ----------------------------------------------------------- subscriptions

    async def subscriptions(self, chat: ChatRef) -> list[Subscription]:
        return await self.store.list_subscriptions(chat)

    async def subscribe(
        self, sub: Subscription, topics: list[str]
    ) -> tuple[Subscription, Subscription | None]:
        """Follow `sub.feed` with these filters and topics (one subscription per feed):
        the subscription as stored, and the one it replaced, if any."""
        before = [s for s in await self.store.list_subscriptions(sub.chat) if s.feed == sub.feed]
        stored = await self.store.add_subscription(sub)
        await self.store.set_topics(sub.chat, sub.feed, topics)  # matched by meaning (bot/rank)
        return stored, (before[0] if before else None)

    async def unsubscribe(self, chat: ChatRef, feed: str) -> bool:
        """Stop following `feed` (its topics go too); False if the chat did not follow it."""
        if not await self.store.remove_subscription(chat, feed):
            return False
        await self.store.set_topics(chat, feed, [])
        return True

    async def chat_topics(self, chat: ChatRef) -> dict[str, list[str]]:
        return await self.store.chat_topics(chat)

    # ---------------------------------------------------------------- learning

    async def learning(self, chat: ChatRef) -> LearnState:
        return await self.store.get_learning(chat)

    async def save_learning(self, chat: ChatRef, state: LearnState) -> None:
        await self.store.save_learning(chat, state)

    async def forget_learning(self, chat: ChatRef) -> int:
        """Forget the chat's votes and model; the number of votes forgotten."""
        return await self.store.forget_learning(chat)

    async def voted_papers(self, chat: ChatRef) -> set[str]:
        return {v.paper_id for v in await self.store.chat_votes(chat)}

    # ----------------------------------------------------------------- library

    async def save_paper(self, chat: ChatRef, paper_id: str) -> bool:
        """Add to the chat's library; False if it was there already."""
        return await self.store.save_paper(chat, paper_id)

    async def unsave_paper(self, chat: ChatRef, paper_id: str) -> bool:
        return await self.store.unsave_paper(chat, paper_id)

    async def saved_papers(self, chat: ChatRef) -> list[Paper]:
        """The chat's library, newest first."""
        saved = await self.store.saved_papers(chat)
        papers = await self.store.get_papers([p for p, _ in saved])
        return [papers[p] for p, _ in saved if p in papers]

    # ----------------------------------------------------------------- explain

    async def explain(self, text: str, chat: ChatRef, user: str, *, images: bool) -> Reply:
        """A paper explained in the chat's language (`/settings language`)."""
        paper = await self.paper_or_reply(text)
        if isinstance(paper, Reply):
            return paper
        if self.explainer is None:
            return Reply.text("Explanations are not available in this installation.")
        language = (await self.chat_settings(chat)).language
        return await self.explainer.explain(
            paper, user=user, chat=chat.key, language=language, render_images=images
        )

    async def ask(self, text: str, question: str, chat: ChatRef, user: str) -> Reply:
        paper = await self.paper_or_reply(text)
        if isinstance(paper, Reply):
            return paper
        if self.explainer is None:
            return Reply.text("Questions about papers are not available in this installation.")
        language = (await self.chat_settings(chat)).language
        return await self.explainer.follow_up(
            paper, question, user=user, chat=chat.key, language=language
        )

    async def paper_or_reply(self, text: str) -> Paper | Reply:
        """The paper, or the reply that says why there is none."""
        try:
            paper = await self.paper(text)
        except InvalidArxivId as e:
            return Reply.text(str(e))
        if paper is None:
            return Reply.text(f"I couldn't find arXiv paper {text}. Is the id right?")
        return paper

    async def aclose(self) -> None:
        if self.math_lines is not None:
            await self.math_lines.aclose()
        fetches = list(self._fetches.values())
        for task in fetches:
            task.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)
        await self._lookups.cancel()
        if self.explainer is not None:
            await self.explainer.aclose()
        for source in (self.arxiv, self.hf):
            await source.aclose()


def _upstream_name(feed: str) -> str:
    return "Hugging Face" if feed.startswith("hf:") else "arXiv"


def merge_hf(paper: Paper, hf: Paper) -> None:
    """Add what Hugging Face knows (votes, AI summary, code) to an arXiv paper."""
    paper.upvotes = hf.upvotes if hf.upvotes is not None else paper.upvotes
    paper.ai_summary = hf.ai_summary or paper.ai_summary
    paper.ai_keywords = hf.ai_keywords or paper.ai_keywords
    paper.github_repo = hf.github_repo or paper.github_repo
    paper.github_stars = hf.github_stars if hf.github_stars is not None else paper.github_stars
    paper.project_page = hf.project_page or paper.project_page
