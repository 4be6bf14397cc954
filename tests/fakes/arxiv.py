"""A fake arXiv on 127.0.0.1: the export API (`/api/query`) and the listing feeds
(`/atom/<category>`, `/rss/<category>`), speaking the real wire formats.

    async with FakeArxiv(min_interval=0.2) as fake:
        settings = fake.settings()          # base URLs pointed here, client delay 0
        fake.fail_next(503, retry_after=0.1)
        ...
        fake.requests                      # every request: path, query, time, User-Agent

The paper set is loaded from `tests/fixtures/arxiv_api/*.atom.xml`; single-id lookups of a
recorded fixture are answered with the recorded bytes verbatim, everything else is rendered
in the same Atom shape. Bad ids get the real HTTP 400 error feed. With `min_interval` set,
requests that come sooner than that after the previous one are answered 503 + Retry-After,
as arXiv does to impolite clients.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.config import Settings
from tests.fakes.base import FakeServer, RecordedRequest
from tests.fakes.hostile import HostilePlan
from tests.fakes.hostile import answer as hostile_answer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "arxiv": "http://arxiv.org/schemas/atom",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
}
ATOM_TYPE = "application/atom+xml; charset=utf-8"
RSS_TYPE = "application/rss+xml; charset=utf-8"

# The shapes arXiv's API accepts in id_list (with an optional version).
_ID_SHAPE = re.compile(r"^(?:\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$")
_VERSION = re.compile(r"v(\d+)$")
_TERM = re.compile(r'(?:(?P<field>\w+):)?(?:"(?P<phrase>[^"]*)"|(?P<word>\S+))')


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


@dataclass
class FakePaper:
    id: str  # canonical, no version
    version: int
    title: str
    summary: str
    authors: list[str]
    categories: list[str]  # primary first
    published: str
    updated: str
    comment: str | None = None
    journal_ref: str | None = None
    doi: str | None = None
    affiliations: dict[str, str] = field(default_factory=dict)

    def entry_xml(self) -> str:
        vid = f"{self.id}v{self.version}"
        lines = [
            "  <entry>",
            f"    <id>http://arxiv.org/abs/{vid}</id>",
            f"    <title>{escape(self.title)}</title>",
            f"    <updated>{self.updated}</updated>",
            f'    <link href="https://arxiv.org/abs/{vid}" rel="alternate" type="text/html"/>',
            f'    <link href="https://arxiv.org/pdf/{vid}" rel="related" type="application/pdf"'
            ' title="pdf"/>',
        ]
        if self.doi:
            lines.append(
                f'    <link href="https://doi.org/{_attr(self.doi)}" rel="related" title="doi"/>'
            )
        lines.append(f"    <summary>{escape(self.summary)}</summary>")
        lines += [
            f'    <category term="{_attr(c)}" scheme="http://arxiv.org/schemas/atom"/>'
            for c in self.categories
        ]
        lines.append(f"    <published>{self.published}</published>")
        if self.comment:
            lines.append(f"    <arxiv:comment>{escape(self.comment)}</arxiv:comment>")
        lines.append(f'    <arxiv:primary_category term="{_attr(self.categories[0])}"/>')
        if self.journal_ref:
            lines.append(f"    <arxiv:journal_ref>{escape(self.journal_ref)}</arxiv:journal_ref>")
        if self.doi:
            lines.append(f"    <arxiv:doi>{escape(self.doi)}</arxiv:doi>")
        for name in self.authors:
            lines.append("    <author>")
            lines.append(f"      <name>{escape(name)}</name>")
            if name in self.affiliations:
                aff = escape(self.affiliations[name])
                lines.append(f"      <arxiv:affiliation>{aff}</arxiv:affiliation>")
            lines.append("    </author>")
        lines.append("  </entry>")
        return "\n".join(lines)

    def haystack(self) -> str:
        parts = [self.title, self.summary, *self.authors, *self.categories, self.comment or ""]
        return "\n".join(parts).casefold()


def _text(el: ET.Element, path: str) -> str | None:
    found = el.find(path, NS)
    return found.text if found is not None else None


def load_api_fixtures(
    folder: Path = FIXTURES / "arxiv_api",
) -> tuple[dict[str, FakePaper], dict[str, bytes]]:
    """Papers from the recorded export-API responses, and the raw bytes of single-id ones."""
    papers: dict[str, FakePaper] = {}
    recorded: dict[str, bytes] = {}
    for path in sorted(folder.glob("*.atom.xml")):
        if path.name.startswith("error_"):
            continue
        body = path.read_bytes()
        entries = ET.fromstring(body).findall("atom:entry", NS)
        for entry in entries:
            vid = (_text(entry, "atom:id") or "").split("/abs/", 1)[1]
            match = _VERSION.search(vid)
            assert match, vid
            pid = vid[: match.start()]
            primary = entry.find("arxiv:primary_category", NS)
            cats = [c.get("term", "") for c in entry.findall("atom:category", NS)]
            primary_term = primary.get("term", "") if primary is not None else cats[0]
            authors, affiliations = [], {}
            for author in entry.findall("atom:author", NS):
                name = _text(author, "atom:name") or ""
                authors.append(name)
                aff = _text(author, "arxiv:affiliation")
                if aff:
                    affiliations[name] = aff
            papers[pid] = FakePaper(
                id=pid,
                version=int(match.group(1)),
                title=_text(entry, "atom:title") or "",
                summary=_text(entry, "atom:summary") or "",
                authors=authors,
                categories=[primary_term, *[c for c in cats if c != primary_term]],
                published=_text(entry, "atom:published") or "",
                updated=_text(entry, "atom:updated") or "",
                comment=_text(entry, "arxiv:comment"),
                journal_ref=_text(entry, "arxiv:journal_ref"),
                doi=_text(entry, "arxiv:doi"),
                affiliations=affiliations,
            )
            if len(entries) == 1:
                recorded[pid] = body
    return papers, recorded


def make_paper(pid: str, **overrides: Any) -> FakePaper:
    """A plausible paper with the given id (for bulk lookups)."""
    values: dict[str, Any] = {
        "id": pid,
        "version": 1,
        "title": f"Generated paper {pid}",
        "summary": f"An abstract for {pid}.",
        "authors": ["Ada Lovelace", "Alan Turing"],
        "categories": ["cs.LG", "stat.ML"],
        "published": "2026-01-05T18:00:00Z",
        "updated": "2026-01-05T18:00:00Z",
    }
    values.update(overrides)
    return FakePaper(**values)


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    body: bytes


class FakeArxiv(FakeServer):
    def __init__(self, *, min_interval: float = 0.0, throttle_status: int = 503) -> None:
        super().__init__()
        self.min_interval = min_interval
        self.throttle_status = throttle_status
        self.papers, self.recorded = load_api_fixtures()
        self.listings: dict[tuple[str, str], bytes] = {
            ("atom", "cs.AI"): (FIXTURES / "arxiv_rss" / "atom_cs.AI_2025-08-20.xml").read_bytes(),
            ("rss", "cs.AI"): (FIXTURES / "arxiv_rss" / "rss2_cs.AI_2026-04-27.xml").read_bytes(),
        }
        self.extra_entries: list[str] = []  # raw <entry> XML added to every API answer
        self._failures: deque[_Failure] = deque()
        self.hostile = HostilePlan()  # tests.fakes.hostile modes for the next requests

    # -- test controls -----------------------------------------------------------------

    def hostile_next(self, mode: str, *, times: int = 1) -> None:
        """Answer the next `times` requests in a hostile `mode` (see tests.fakes.hostile)."""
        self.hostile.add(mode, times)

    def add_paper(self, paper: FakePaper) -> None:
        self.papers[paper.id] = paper

    def set_listing(self, category: str, body: bytes | str | Path, form: str = "atom") -> None:
        if isinstance(body, Path):
            body = body.read_bytes()
        elif isinstance(body, str):
            body = body.encode()
        self.listings[(form, category)] = body

    def fail_next(
        self,
        status: int = 503,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: bytes = b"Service Unavailable",
    ) -> None:
        for _ in range(times):
            self._failures.append(_Failure(status, retry_after, body))

    def api_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/api/query"]

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/query"

    @property
    def listing_url(self) -> str:
        return f"{self.url}/atom"

    @property
    def rss_listing_url(self) -> str:
        return f"{self.url}/rss"

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "arxiv_api_url": self.api_url,
            "arxiv_listing_url": self.listing_url,
            "arxiv_delay_seconds": 0.0,
            "http_timeout_seconds": 5.0,
        }
        values.update(overrides)
        return Settings(**values)

    # -- handlers ----------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/api/query", self._query)
        app.router.add_get("/{form:atom|rss}/{category}", self._listing)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # This request is already recorded; the one before it sets the pace.
        if len(self.requests) > 1 and (
            self.requests[-1].at - self.requests[-2].at < self.min_interval
        ):
            return web.Response(
                status=self.throttle_status,
                text="Rate exceeded.",
                headers={"Retry-After": f"{self.min_interval:g}"},
            )
        if self._failures:
            failure = self._failures.popleft()
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = f"{failure.retry_after:g}"
            return web.Response(status=failure.status, body=failure.body, headers=headers)
        return await hostile_answer(self.hostile, request, handler)

    async def _listing(self, request: web.Request) -> web.Response:
        form, category = request.match_info["form"], request.match_info["category"]
        body = self.listings.get((form, category))
        if body is None:
            return web.Response(status=404, text=f"No feed for {category}")
        return web.Response(
            body=body,
            content_type=None,
            headers={"Content-Type": ATOM_TYPE if form == "atom" else RSS_TYPE},
        )

    async def _query(self, request: web.Request) -> web.Response:
        q = request.query
        id_list = [i.strip() for i in q.get("id_list", "").split(",") if i.strip()]
        search = q.get("search_query", "").strip()
        start = int(q.get("start", "0"))
        max_results = int(q.get("max_results", "10"))
        for raw in id_list:
            if not _ID_SHAPE.match(raw):
                return self._error(raw)
        if id_list:
            canon = [_VERSION.sub("", i) for i in id_list]
            if len(canon) == 1 and not search and canon[0] in self.recorded:
                return web.Response(
                    body=self.recorded[canon[0]], headers={"Content-Type": ATOM_TYPE}
                )
            found = [self.papers[c] for c in dict.fromkeys(canon) if c in self.papers]
        else:
            found = list(self.papers.values())
        if search:
            found = [p for p in found if _matches(p, search)]
        elif not id_list:
            found = []
        page = found[start : start + max_results]
        entries = [p.entry_xml() for p in page] + self.extra_entries
        return web.Response(
            body=_feed(request, len(found), start, max_results, entries).encode(),
            headers={"Content-Type": ATOM_TYPE},
        )

    def _error(self, bad: str) -> web.Response:
        now = _now()
        anchor = f"https://arxiv.org/api/errors#incorrect_id_format_for_{_attr(bad)}"
        body = f"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:opensearch="{NS["opensearch"]}" xmlns:arxiv="{NS["arxiv"]}" xmlns="{NS["atom"]}">
  <id>https://arxiv.org/</id>
  <title>arXiv Search Results</title>
  <updated>{now}</updated>
  <opensearch:itemsPerPage>1</opensearch:itemsPerPage>
  <opensearch:totalResults>1</opensearch:totalResults>
  <opensearch:startIndex>0</opensearch:startIndex>
  <entry>
    <id>{anchor}</id>
    <title>Error</title>
    <updated>{now}</updated>
    <link href="{anchor}" rel="alternate" type="text/html"/>
    <summary>incorrect id format for {escape(bad)}</summary>
    <author>
      <name>arXiv api core</name>
    </author>
  </entry>
</feed>
"""
        return web.Response(status=400, body=body.encode(), headers={"Content-Type": ATOM_TYPE})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _feed(request: web.Request, total: int, start: int, per_page: int, entries: list[str]) -> str:
    query = escape(request.query_string)
    link = _attr(f"https://arxiv.org/api/query?{request.query_string}")
    head = f"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:opensearch="{NS["opensearch"]}" xmlns:arxiv="{NS["arxiv"]}" xmlns="{NS["atom"]}">
  <id>https://arxiv.org/api/fake</id>
  <title>arXiv Query: {query}</title>
  <updated>{_now()}</updated>
  <link href="{link}" type="application/atom+xml"/>
  <opensearch:itemsPerPage>{per_page}</opensearch:itemsPerPage>
  <opensearch:totalResults>{total}</opensearch:totalResults>
  <opensearch:startIndex>{start}</opensearch:startIndex>
"""
    return head + "\n".join(entries) + "\n</feed>\n"


def _matches(paper: FakePaper, search_query: str) -> bool:
    """A small subset of arXiv's query language: field:term / field:"phrase" joined by AND."""
    for term in re.split(r"\s+AND\s+", search_query):
        m = _TERM.fullmatch(term.strip())
        if m is None:
            return False
        fld = (m["field"] or "all").lower()
        value = (m["phrase"] if m["phrase"] is not None else m["word"]).casefold()
        if fld == "au":
            words = value.replace("_", " ").split()
            if not any(all(w in a.casefold().split() for w in words) for a in paper.authors):
                return False
        elif fld == "ti":
            if value not in paper.title.casefold():
                return False
        elif fld == "abs":
            if value not in paper.summary.casefold():
                return False
        elif fld == "cat":
            if value not in (c.casefold() for c in paper.categories):
                return False
        elif value not in paper.haystack():
            return False
    return True
