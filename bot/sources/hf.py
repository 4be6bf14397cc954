"""Hugging Face papers: the daily list, trending, single papers, and search (JSON API).

Daily and trending items share one shape: `{"paper": {...}, "title", "summary", ...}`;
`/papers/{id}` returns the inner paper object itself. Many fields are optional upstream
(older items have no `ai_summary`/`ai_keywords`, most have no `githubRepo`), so absent or
wrongly typed optional fields become None; an item without a usable id or title is skipped
with a log line, and the rest still arrive. A body that is not whole JSON (cut off) is an
error, never a short list; a paper listed twice arrives once; text is made inert and capped
(`bot.sources.clean`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx

from bot.config import Settings
from bot.ids import is_valid_id
from bot.models import Paper
from bot.sources.base import FeedFetch, SourceError
from bot.sources.clean import merge_duplicates, tidy_paper
from bot.sources.http import Fetched, Upstream, make_client

log = logging.getLogger(__name__)

FEEDS = ("daily", "trending")
WEEKLY = "weekly"  # `/daily_papers?week=YYYY-Www`: read by weekly digests, not subscribable
_CONCURRENT_LOOKUPS = 4
MAX_BYTES = 10_000_000  # a daily list of 50 papers is ~300 KB


def _today_utc() -> date:
    return datetime.now(UTC).date()


class HuggingFaceSource:
    """`Source` for Hugging Face. `today` is injectable so tests can pin the date."""

    prefix = "hf"

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.AsyncClient | None = None,
        attempts: int = 4,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        today: Callable[[], date] = _today_utc,
    ) -> None:
        self._base = settings.hf_api_url.rstrip("/")
        self._owns_client = client is None
        self._client = client or make_client(settings, accept="application/json")
        self._upstream = Upstream(
            "Hugging Face",
            self._client,
            attempts=attempts,
            backoff=backoff,
            max_wait=max_wait,
            deadline=settings.upstream_deadline_seconds,
            max_bytes=MAX_BYTES,
            retry_after_cap=settings.retry_after_cap_seconds,
        )
        self._today = today

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def feed(self, name: str) -> FeedFetch:
        if name == "daily":
            return await self._daily()
        if name == "trending":
            items = await self._get_list("/daily_papers", {"sort": "trending"})
            papers = _items_to_papers(items, "trending")
            return FeedFetch(papers, self._today() if papers else None)
        if name == WEEKLY:
            # The week's daily papers, for weekly digests only (not a feed to subscribe to).
            year, week, _ = self._today().isocalendar()
            items = await self._get_list("/daily_papers", {"week": f"{year}-W{week:02d}"})
            papers = _items_to_papers(items, "weekly")
            return FeedFetch(papers, self._today() if papers else None)
        raise SourceError(f"Unknown Hugging Face feed: {name} (try one of: {', '.join(FEEDS)})")

    async def _daily(self) -> FeedFetch:
        today = self._today()
        items = await self._get_list("/daily_papers", {"date": today.isoformat()})
        if items:
            return FeedFetch(_items_to_papers(items, "daily"), today)
        # Nothing listed for today yet (early UTC, weekend): fall back to the latest day.
        items = await self._get_list("/daily_papers", None)
        if not items:
            return FeedFetch([], None)
        return FeedFetch(_items_to_papers(items, "daily"), _listed_day(items) or today)

    async def papers(self, ids: Sequence[str]) -> list[Paper]:
        wanted = list(dict.fromkeys(i.strip() for i in ids))
        valid = [i for i in wanted if is_valid_id(i)]
        for bad in set(wanted) - set(valid):
            log.warning("Hugging Face lookup: not asking for invalid id %r", bad)
        gate = asyncio.Semaphore(_CONCURRENT_LOOKUPS)

        async def one(pid: str) -> Paper | None:
            async with gate:
                response = await self._upstream.get(f"{self._base}/papers/{quote(pid, safe='')}")
            if response.status_code == 404:
                return None
            data = _json(response)
            return _item_to_paper(data, f"papers/{pid}")

        found = await asyncio.gather(*(one(pid) for pid in valid))
        return [p for p in found if p is not None]

    async def search(self, query: str, limit: int = 10) -> list[Paper]:
        query = query.strip()
        if not query or limit <= 0:
            return []
        items = await self._get_list("/papers/search", {"q": query})
        return _items_to_papers(items, "search")[:limit]

    async def _get_list(self, path: str, params: dict[str, str | int] | None) -> list[Any]:
        response = await self._upstream.get(f"{self._base}{path}", params)
        data = _json(response)
        if not isinstance(data, list):
            log.warning("Hugging Face %s: expected a JSON list, got %s", path, type(data).__name__)
            raise SourceError("Hugging Face sent an unexpected answer; try again later.")
        return data


def _json(response: Fetched) -> Any:
    if response.status_code != 200:
        log.warning("Hugging Face %s: HTTP %s", response.url.path, response.status_code)
        raise SourceError("Hugging Face is not available right now; try again later.")
    try:
        return response.json()
    except ValueError as exc:
        log.warning("Hugging Face %s: invalid JSON: %s", response.url.path, exc)
        raise SourceError("Hugging Face sent an unreadable answer; try again later.") from exc


def _listed_day(items: list[Any]) -> date | None:
    """The day a daily list is for: the most common `submittedOnDailyAt` date."""
    days: Counter[date] = Counter()
    for item in items:
        paper = item.get("paper") if isinstance(item, dict) else None
        when = _parse_dt(paper.get("submittedOnDailyAt")) if isinstance(paper, dict) else None
        if when is not None:
            days[when.date()] += 1
    return days.most_common(1)[0][0] if days else None


def _items_to_papers(items: list[Any], where: str) -> list[Paper]:
    papers = []
    for item in items:
        paper = _item_to_paper(item, where)
        if paper is not None:
            papers.append(paper)
    return merge_duplicates(papers)


def _item_to_paper(item: Any, where: str) -> Paper | None:
    """Map a daily/trending/search item, or a bare paper object, to a Paper; None if unusable."""
    if not isinstance(item, dict):
        log.warning("Hugging Face %s: skipping non-object item", where)
        return None
    inner = item.get("paper", item)
    if not isinstance(inner, dict):
        log.warning("Hugging Face %s: skipping item whose paper is not an object", where)
        return None
    pid = inner.get("id")
    title = _text(inner.get("title")) or _text(item.get("title"))
    if not isinstance(pid, str) or not is_valid_id(pid.strip()):
        log.warning("Hugging Face %s: skipping item with bad id %r", where, pid)
        return None
    if not title:
        log.warning("Hugging Face %s: skipping %s without a title", where, pid)
        return None
    authors = inner.get("authors")
    keywords = inner.get("ai_keywords")
    return tidy_paper(
        Paper(
            id=pid.strip(),
            title=title,
            authors=[
                _text(a.get("name"))
                for a in (authors if isinstance(authors, list) else [])
                if isinstance(a, dict) and _text(a.get("name"))
            ],
            abstract=_text(inner.get("summary")) or _text(item.get("summary")),
            published=_parse_dt(inner.get("publishedAt")),
            upvotes=_int(inner.get("upvotes")),
            ai_summary=_text(inner.get("ai_summary")) or None,
            ai_keywords=[
                k.strip()
                for k in (keywords if isinstance(keywords, list) else [])
                if isinstance(k, str) and k.strip()
            ],
            github_repo=_text(inner.get("githubRepo")) or None,
            github_stars=_int(inner.get("githubStars")),
            project_page=_text(inner.get("projectPage")) or None,
        )
    )


def _text(value: Any) -> str:
    return " ".join(value[:100_000].split()) if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    # bool is an int subclass; a true/false here is not a count.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_dt(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None
