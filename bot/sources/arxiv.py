"""arXiv: today's announcements per category, lookup by id, and search.

Two upstreams:
- the listing feed (rss.arxiv.org, Atom or RSS 2.0): what was announced today in a category;
- the export API (export.arxiv.org/api/query, Atom): lookup by id in batches, and search.

We talk to both with httpx + feedparser rather than the `arxiv` package: that package is
synchronous (requests + time.sleep) and would block the event loop. Every request goes
through one serial, spaced `PoliteGate` (`.gate`, shared with the explainer), because arXiv
asks for requests 3 s apart. Entries that do not parse are skipped with a log line; the
rest still arrive. But an answer is used only when it arrived whole: a listing or API
answer that is not well-formed XML to its closing tag (cut by a dropped connection or a
proxy) is an `IncompleteAnswer`, never a short or empty day. Text is kept raw (whitespace
collapsed, control characters dropped, fields capped: `bot.sources.clean`): escaping is the
renderer's job. A listing that repeats an entry yields it once.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import xml.sax
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import feedparser
import httpx

from bot.config import Settings
from bot.ids import is_valid_id
from bot.models import Paper
from bot.sources.base import FeedFetch, SourceError
from bot.sources.categories import canonical_category, canonical_listing
from bot.sources.clean import merge_duplicates, tidy_paper
from bot.sources.http import Fetched, PoliteGate, Upstream, make_client

log = logging.getLogger(__name__)

# Listing entries worth delivering: new submissions and cross-lists. Replacements
# ("replace", "replace-cross") are new versions of old papers.
FRESH_ANNOUNCE_TYPES = frozenset({"new", "cross"})
MAX_SEARCH_RESULTS = 100

_VERSION_RE = re.compile(r"^(?P<id>.+?)v(?P<version>\d+)$")
_LISTING_HEADER_RE = re.compile(
    r"^\s*arXiv:\S+\s+Announce Type:\s*(?P<type>\S+)\s*(?:Abstract:)?", re.IGNORECASE
)
_ERROR_ID_RE = re.compile(r"/api/errors#")
_BAD_ID_RE = re.compile(r"incorrect id format for (?P<id>\S+)", re.IGNORECASE)
_QUERY_TOKEN_RE = re.compile(r'(?:(?P<field>\w+):)?(?:"(?P<phrase>[^"]*)"?|(?P<word>\S+))')
_FIELDS = {
    "all": "all",
    "au": "au",
    "author": "au",
    "ti": "ti",
    "title": "ti",
    "abs": "abs",
    "abstract": "abs",
    "cat": "cat",
    "category": "cat",
}
_OPERATORS = frozenset({"AND", "OR", "ANDNOT"})
# The closing tag of a whole answer: Atom listings and API answers end with </feed>, RSS
# listings with </rss>. Anything after it but whitespace (or before it cut) is not whole.
_FEED_START = re.compile(rb"<(?:\w+:)?(?:feed|rss)[\s>]")
_WHOLE_END = re.compile(rb"</(?:\w+:)?(?:feed|rss)>\s*$")
MAX_LISTING_BYTES = 30_000_000  # the biggest real listings (cs.LG on a Tuesday) are a few MB
MAX_API_BYTES = 20_000_000


class IncompleteAnswer(SourceError):
    """arXiv's answer was cut off or malformed; a later fetch may well get all of it."""


class ArxivSource:
    """`Source` for arXiv. Pass `client` to share one; otherwise the source owns its own.
    Every other arXiv client should send through `.gate` too."""

    prefix = "arxiv"

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.AsyncClient | None = None,
        batch_size: int = 100,
        attempts: int = 5,
        backoff: float = 2.0,
        max_wait: float = 120.0,
    ) -> None:
        self._api_url = settings.arxiv_api_url
        self._listing_url = settings.arxiv_listing_url.rstrip("/")
        self._batch_size = max(1, batch_size)
        self._owns_client = client is None
        self._client = client or make_client(settings, accept="application/atom+xml, */*")
        self.gate = PoliteGate(settings.arxiv_delay_seconds)
        self._upstream = Upstream(
            "arXiv",
            self._client,
            gate=self.gate,
            attempts=attempts,
            backoff=backoff,
            max_wait=max_wait,
            deadline=settings.upstream_deadline_seconds,
            max_bytes=max(MAX_LISTING_BYTES, MAX_API_BYTES),
            retry_after_cap=settings.retry_after_cap_seconds,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- listing feed ------------------------------------------------------------------

    async def feed(self, name: str) -> FeedFetch:
        """Today's announcement in a category (new + cross-lists). No items (weekend,
        holiday) is FeedFetch([], None), not an error."""
        category = canonical_listing(name)
        if category is None:
            raise SourceError(f"Unknown arXiv category: {name}")
        response = await self._upstream.get(f"{self._listing_url}/{category}")
        if response.status_code == 404:
            raise SourceError(f"arXiv has no listing for {category}.")
        if response.status_code != 200:
            log.warning("arXiv listing %s: HTTP %s", category, response.status_code)
            raise SourceError("arXiv's listing is not available right now; try again later.")
        parsed = await _parse_whole(response.content, f"listing {category}")
        if not parsed.get("version") or not parsed.feed.get("title"):
            # A real listing, even an empty one (weekend, holiday), is an Atom or RSS feed
            # with a title. An HTML page with status 200 is not "no announcement".
            log.warning("arXiv listing %s: not a feed (%r)", category, parsed.get("version"))
            raise IncompleteAnswer("arXiv sent an unreadable listing; I'll retry.")
        if not parsed.entries:
            return FeedFetch([], None)
        papers: list[Paper] = []
        announced: date | None = None
        readable = 0
        for entry in parsed.entries:
            try:
                paper = _listing_entry_to_paper(entry)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning(
                    "arXiv listing %s: skipping malformed entry %r: %s",
                    category,
                    entry.get("id"),
                    exc,
                )
                continue
            readable += 1
            if announced is None and paper.published is not None:
                announced = paper.published.date()
            if paper.announce_type in FRESH_ANNOUNCE_TYPES:
                papers.append(paper)
        if readable == 0:
            # Entries, but none we could read: a broken answer, not an empty day.
            raise IncompleteAnswer("arXiv sent an unreadable listing; I'll retry.")
        return FeedFetch(
            merge_duplicates(papers),
            announced or _feed_date(parsed.feed) or datetime.now(UTC).date(),
        )

    # -- export API --------------------------------------------------------------------

    async def papers(self, ids: Sequence[str]) -> list[Paper]:
        """Look ids up in batches; invalid ids are never sent, unknown ones are just missing."""
        wanted: list[str] = []
        for raw in ids:
            pid = raw.strip()
            if not is_valid_id(pid):
                log.warning("arXiv lookup: not asking for invalid id %r", raw)
            elif pid not in wanted:
                wanted.append(pid)
        found: dict[str, Paper] = {}
        for start in range(0, len(wanted), self._batch_size):
            for paper in await self._lookup_batch(wanted[start : start + self._batch_size]):
                found.setdefault(paper.id, paper)
        return [found[pid] for pid in wanted if pid in found]

    async def _lookup_batch(self, batch: list[str]) -> list[Paper]:
        batch = list(batch)
        while batch:
            params: dict[str, str | int] = {
                "id_list": ",".join(batch),
                "max_results": len(batch),
            }
            response = await self._upstream.get(self._api_url, params)
            if response.status_code == 400:
                # arXiv rejects the whole batch for one id it dislikes; drop that id, ask again.
                bad = _bad_id_from_error(response.content)
                log.warning("arXiv rejected id %r in a lookup", bad)
                if bad is None or bad not in batch:
                    return []
                batch.remove(bad)
                continue
            return await self._parse_api_response(response)
        return []

    async def search(self, query: str, limit: int = 10) -> list[Paper]:
        """Keyword search. Understands `author:Name`/`au:`, `ti:`, `abs:`, `cat:` and quoted
        phrases; everything else is a keyword. All terms must match."""
        search_query = build_search_query(query)
        if not search_query or limit <= 0:
            return []
        params: dict[str, str | int] = {
            "search_query": search_query,
            "start": 0,
            "max_results": min(limit, MAX_SEARCH_RESULTS),
            "sortBy": "relevance",
            "sortOrder": "descending",
        }
        response = await self._upstream.get(self._api_url, params)
        if response.status_code == 400:
            log.warning("arXiv rejected search %r", search_query)
            return []
        return (await self._parse_api_response(response))[:limit]

    async def _parse_api_response(self, response: Fetched) -> list[Paper]:
        if response.status_code != 200:
            log.warning("arXiv API: HTTP %s", response.status_code)
            raise SourceError("arXiv's API is not available right now; try again later.")
        parsed = await _parse_whole(response.content, "API answer")
        # Every API answer, even one with no results, is an Atom feed with a result count;
        # anything else (an empty body, an HTML page) is unreadable, not "no such paper".
        if "opensearch_totalresults" not in parsed.feed:
            log.warning("arXiv API: unreadable response: %r", parsed.get("bozo_exception"))
            raise SourceError("arXiv sent an unreadable answer; try again later.")
        papers = []
        for entry in parsed.entries:
            if _ERROR_ID_RE.search(entry.get("id", "")):
                log.warning("arXiv API error entry: %s", entry.get("summary"))
                continue
            try:
                papers.append(_api_entry_to_paper(entry))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("arXiv API: skipping malformed entry %r: %s", entry.get("id"), exc)
        return merge_duplicates(papers)


# -- parsing -------------------------------------------------------------------------------


async def _parse_whole(content: bytes, what: str) -> Any:
    """The parsed feed, or IncompleteAnswer when the XML is not a whole, well-formed feed.

    feedparser recovers what it can from broken XML (and sets `bozo`); for us a recovered
    half is worse than nothing, since it would be stored as the whole day."""
    listing = what.startswith("listing")
    if not _FEED_START.search(content[:4096]):
        log.warning("arXiv %s: not a feed (%d bytes)", what, len(content))
        raise IncompleteAnswer(
            "arXiv sent an unreadable listing; I'll retry."
            if listing
            else "arXiv sent an unreadable answer; try again in a minute."
        )
    cut = not _WHOLE_END.search(content[-512:])
    parsed = None if cut else await _parse_feed(content)
    if parsed is None or (
        parsed.get("bozo") and isinstance(parsed.get("bozo_exception"), xml.sax.SAXException)
    ):
        reason = "no closing tag" if parsed is None else parsed.get("bozo_exception")
        log.warning("arXiv %s: incomplete (%d bytes): %s", what, len(content), reason)
        raise IncompleteAnswer(
            "arXiv sent an incomplete listing; I'll retry."
            if listing
            else "arXiv sent an incomplete answer; try again in a minute."
        )
    return parsed


async def _parse_feed(content: bytes) -> Any:
    # sanitize_html=False keeps abstracts raw ("a < b" stays "a < b"; RSS descriptions are
    # typed text/html and would otherwise be rewritten). Parsing runs off the event loop.
    return await asyncio.to_thread(
        feedparser.parse, io.BytesIO(content), sanitize_html=False, resolve_relative_uris=False
    )


def _collapse(text: str | None) -> str:
    # Cut first: a field is capped later anyway, and a 100 MB one must not cost a 100 MB split.
    return " ".join((text or "")[:100_000].split())


def _split_version(text: str) -> tuple[str, int | None]:
    match = _VERSION_RE.match(text)
    if match:
        return match["id"], int(match["version"])
    return text, None


def _checked_id(raw: str) -> tuple[str, int | None]:
    pid, version = _split_version(raw.strip())
    if not is_valid_id(pid):
        raise ValueError(f"not an arXiv id: {raw!r}")
    return pid, version


def _parse_dt(value: str | None) -> datetime | None:
    """ISO 8601 (Atom) or RFC 822 (RSS); keeps the offset the feed gave."""
    if not value:
        return None
    value = value.strip()
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _feed_date(feed: Any) -> date | None:
    for key in ("published", "updated"):
        when = _parse_dt(feed.get(key))
        if when is not None:
            return when.date()
    return None


def _split_names(names: Iterable[str]) -> list[str]:
    """The listing puts all authors in one comma-separated dc:creator."""
    out: list[str] = []
    for chunk in names:
        for name in chunk.split(","):
            name = _collapse(name)
            if name.startswith("and "):
                name = name[4:]
            if name:
                out.append(name)
    return out


def _tags(entry: Any) -> list[str]:
    terms = [t.get("term") for t in entry.get("tags", [])]
    return [t.strip() for t in terms if isinstance(t, str) and t.strip()]


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _listing_entry_to_paper(entry: Any) -> Paper:
    raw_id = entry.get("id") or ""
    if ":" in raw_id and not raw_id.startswith("http"):
        raw_id = raw_id.rsplit(":", 1)[-1]  # oai:arXiv.org:2508.13167v1
    elif "/abs/" in raw_id:
        raw_id = raw_id.split("/abs/", 1)[1]
    pid, version = _checked_id(raw_id)
    title = _collapse(entry.get("title"))
    if not title:
        raise ValueError("no title")
    summary = entry.get("summary") or ""
    header = _LISTING_HEADER_RE.match(summary)
    announce_type = _announce_type(entry)
    abstract = summary[header.end() :] if header else summary
    return tidy_paper(
        Paper(
            id=pid,
            version=version,
            title=title,
            authors=_split_names(a.get("name", "") for a in entry.get("authors", [])),
            abstract=_collapse(abstract),
            categories=_dedupe(_tags(entry)),  # the listing puts the primary first
            published=_parse_dt(entry.get("published")),
            announce_type=_collapse(announce_type).lower() or None,
        )
    )


def _announce_type(entry: Any) -> str | None:
    if entry.get("arxiv_announce_type"):
        return str(entry.get("arxiv_announce_type"))
    header = _LISTING_HEADER_RE.match(entry.get("summary") or "")
    return header["type"] if header else None


def _api_entry_to_paper(entry: Any) -> Paper:
    raw_id = entry.get("id") or ""
    if "/abs/" not in raw_id:
        raise ValueError("entry id is not an abs URL")
    pid, version = _checked_id(raw_id.split("/abs/", 1)[1])
    title = _collapse(entry.get("title"))
    if not title:
        raise ValueError("no title")
    primary = entry.get("arxiv_primary_category") or {}
    primary_term = primary.get("term") if isinstance(primary, dict) else None
    categories = _dedupe(([primary_term] if primary_term else []) + _tags(entry))
    return tidy_paper(
        Paper(
            id=pid,
            version=version,
            title=title,
            authors=[_collapse(a.get("name")) for a in entry.get("authors", []) if a.get("name")],
            abstract=_collapse(entry.get("summary")),
            categories=categories,
            published=_parse_dt(entry.get("published")),
            updated=_parse_dt(entry.get("updated")),
            comment=_collapse(entry.get("arxiv_comment")) or None,
            journal_ref=_collapse(entry.get("arxiv_journal_ref")) or None,
            doi=_collapse(entry.get("arxiv_doi")) or None,
        )
    )


def _bad_id_from_error(content: bytes) -> str | None:
    parsed = feedparser.parse(io.BytesIO(content), sanitize_html=False)
    for entry in parsed.entries:
        match = _BAD_ID_RE.search(entry.get("summary", ""))
        if match:
            return str(match["id"])
    return None


# -- search query --------------------------------------------------------------------------


def _clean_term(text: str) -> str:
    # Quotes, parentheses and colons are query syntax upstream; a user's text must not be.
    return _collapse(re.sub(r'["():]', " ", text))


def build_search_query(query: str) -> str:
    """Turn what a person types into an arXiv `search_query`.

    `graph neural author:"Yann LeCun" cat:cs.LG "message passing"` becomes
    `all:graph AND all:neural AND au:"Yann LeCun" AND cat:cs.LG AND all:"message passing"`.
    """
    terms: list[str] = []
    for match in _QUERY_TOKEN_RE.finditer(query):
        field_name = (match["field"] or "").lower()
        value = match["phrase"] if match["phrase"] is not None else match["word"]
        field = _FIELDS.get(field_name)
        if field is None and field_name:
            value = f"{match['field']} {value}"  # "foo:bar" is just words
        field = field or "all"
        value = _clean_term(value or "")
        if not value or (field == "all" and value in _OPERATORS):
            continue
        if field == "cat":
            value = canonical_category(value) or value
        if field == "au":
            # arXiv matches author names as "Last_F" or a quoted full name.
            terms.append(f'au:"{value}"' if " " in value else f"au:{value}")
        elif " " in value:
            terms.append(f'{field}:"{value}"')
        else:
            terms.append(f"{field}:{value}")
    return " AND ".join(terms)
