"""Sources end to end: the real httpx clients against the local fakes in tests/fakes/."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from bot.config import USER_AGENT, Settings
from bot.sources.arxiv import ArxivSource, build_search_query
from bot.sources.base import SourceError
from bot.sources.categories import (
    canonical_category,
    canonical_listing,
    category_name,
    is_category,
    suggest_categories,
)
from bot.sources.hf import HuggingFaceSource
from bot.sources.http import parse_retry_after
from tests.fakes.arxiv import FakeArxiv, make_paper
from tests.fakes.hf import FakeHF

FIXTURES = Path(__file__).parent / "fixtures"
RSS = FIXTURES / "arxiv_rss"
FAST = 0.01  # backoff base in seconds: retries in tests should not dawdle


@pytest.fixture
async def arxiv(arxiv_server: FakeArxiv) -> AsyncIterator[ArxivSource]:
    source = ArxivSource(arxiv_server.settings(), backoff=FAST)
    yield source
    await source.aclose()


@pytest.fixture
async def hf(hf_server: FakeHF) -> AsyncIterator[HuggingFaceSource]:
    source = HuggingFaceSource(hf_server.settings(), today=lambda: date(2026, 6, 12), backoff=FAST)
    yield source
    await source.aclose()


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# -- arXiv listing feeds ---------------------------------------------------------------


async def test_atom_listing_has_new_and_cross(arxiv: ArxivSource, arxiv_server: FakeArxiv) -> None:
    fetch = await arxiv.feed("cs.AI")
    assert fetch.announced == date(2025, 8, 20)
    assert len(fetch.papers) == 86
    kinds = [p.announce_type for p in fetch.papers]
    assert kinds.count("new") == 41 and kinds.count("cross") == 45
    first = fetch.papers[0]
    assert first.id == "2508.13167" and first.version == 1
    assert first.title.startswith("Chain-of-Agents: End-to-End Agent Foundation Models")
    assert first.abstract.startswith("Recent advances in large language models")
    assert "Announce Type" not in first.abstract and "\n" not in first.abstract
    assert first.categories == ["cs.AI", "cs.CL"]
    assert first.authors[0] == "Weizhen Li" and first.authors[-1] == "Wangchunshu Zhou"
    assert len(first.authors) == 30
    assert first.published == datetime(2025, 8, 20, tzinfo=timezone(timedelta(hours=-4)))
    cross = next(p for p in fetch.papers if p.id == "2508.00875")
    assert cross.announce_type == "cross" and cross.primary_category == "cs.CY"
    assert [r.path for r in arxiv_server.requests] == ["/atom/cs.AI"]
    assert arxiv_server.requests[0].user_agent == USER_AGENT


async def test_rss2_listing(arxiv_server: FakeArxiv) -> None:
    settings = arxiv_server.settings(arxiv_listing_url=arxiv_server.rss_listing_url)
    source = ArxivSource(settings, backoff=FAST)
    try:
        fetch = await source.feed("cs.AI")
    finally:
        await source.aclose()
    assert fetch.announced == date(2026, 4, 27)
    assert [p.id for p in fetch.papers] == ["2604.21935", "2604.21936", "2604.21937"]
    medical = fetch.papers[1]
    assert medical.version == 1 and medical.announce_type == "new"
    assert medical.categories == ["cs.AI", "cs.CV", "cs.MA"]
    assert r"\textbf{adaptability}" in medical.abstract  # LaTeX kept for the renderer
    assert medical.authors[:2] == ["Lianrui Zuo", "Yihao Liu"] and len(medical.authors) == 18
    assert [r.path for r in arxiv_server.requests] == ["/rss/cs.AI"]


@pytest.mark.parametrize(
    ("form", "fixture"),
    [("atom", "atom_empty_weekend_2025-08-23.xml"), ("rss", "rss2_empty_weekend_2026-05-02.xml")],
)
async def test_weekend_is_no_announcement(arxiv_server: FakeArxiv, form: str, fixture: str) -> None:
    arxiv_server.set_listing("cs.AI", RSS / fixture, form=form)
    url = arxiv_server.listing_url if form == "atom" else arxiv_server.rss_listing_url
    source = ArxivSource(arxiv_server.settings(arxiv_listing_url=url), backoff=FAST)
    try:
        fetch = await source.feed("cs.AI")
    finally:
        await source.aclose()
    assert fetch.papers == [] and fetch.announced is None


async def test_listing_skips_replacements_and_malformed_keeps_hostile_raw(
    arxiv: ArxivSource, arxiv_server: FakeArxiv, caplog: pytest.LogCaptureFixture
) -> None:
    arxiv_server.set_listing("cs.LG", RSS / "atom_hostile_cs.LG_2026-05-04.xml")
    with caplog.at_level(logging.WARNING, logger="bot.sources.arxiv"):
        fetch = await arxiv.feed("cs.lg")  # case-insensitive
    assert fetch.announced == date(2026, 5, 4)
    assert [p.id for p in fetch.papers] == ["2605.01234", "2605.01235", "2605.01236", "2605.01238"]
    hostile, long_one, uni, plain = fetch.papers
    assert hostile.title == "Bounds for $x_i < y_j$ & the <b>bold</b> __init__ problem: A &amp; B"
    assert "$\\alpha_1 < \\beta^2$ whenever a_b & c > d" in hostile.abstract
    assert "<script>alert(1)</script> and &lt;br&gt; stay text" in hostile.abstract
    assert hostile.authors == ["Ada O'Brien", "Bob <Bobby> Smith_Jr", "Carol $Math$ Doe"]
    assert long_one.title == "A paper with a very long abstract"
    assert len(long_one.abstract) > 6000 and long_one.abstract.endswith("the <i>80</i>-th case.")
    assert uni.title == "Équations de Navier–Stokes: ζ-fonctions, 量子 и ∞ — naïve café 🚀"
    assert uni.announce_type == "cross" and uni.categories == ["math.AP", "cs.LG"]
    assert uni.authors == ["Zoë Ångström", "李雷", "Jürgen Müller"]
    assert plain.title == "A plain paper after the broken ones"
    skipped = [r.getMessage() for r in caplog.records if "skipping malformed" in r.getMessage()]
    assert len(skipped) == 2
    assert arxiv_server.requests[0].path == "/atom/cs.LG"


async def test_unknown_category_is_refused_without_asking(
    arxiv: ArxivSource, arxiv_server: FakeArxiv
) -> None:
    with pytest.raises(SourceError, match="Unknown arXiv category"):
        await arxiv.feed("cs.XX")
    with pytest.raises(SourceError, match="Unknown arXiv category"):
        await arxiv.feed("../api/query")
    assert arxiv_server.requests == []


async def test_listing_missing_upstream_is_a_source_error(arxiv: ArxivSource) -> None:
    with pytest.raises(SourceError, match=r"no listing for math\.AP"):
        await arxiv.feed("math.AP")


async def test_unreadable_listing_is_a_source_error(
    arxiv: ArxivSource, arxiv_server: FakeArxiv
) -> None:
    arxiv_server.set_listing("cs.AI", b"<html><body>maintenance</body")
    with pytest.raises(SourceError):
        await arxiv.feed("cs.AI")


@pytest.mark.parametrize(
    "body",
    [b"", b"<html><head><title>Down</title></head><body>maintenance</body></html>"],
)
async def test_empty_or_html_200_listing_is_not_an_empty_announcement(
    arxiv: ArxivSource, arxiv_server: FakeArxiv, body: bytes
) -> None:
    # Read as "no announcement" it would be cached for the day and skip every digest.
    arxiv_server.set_listing("cs.AI", body)
    with pytest.raises(SourceError, match="unreadable listing"):
        await arxiv.feed("cs.AI")


# -- arXiv export API --------------------------------------------------------------------


async def test_lookup_by_id_parses_every_field(arxiv: ArxivSource, arxiv_server: FakeArxiv) -> None:
    papers = await arxiv.papers(["astro-ph/0601001", "1605.08386", "0000.00000", "1605.08386"])
    assert [p.id for p in papers] == ["astro-ph/0601001", "1605.08386"]
    old, new = papers
    assert old.version == 1
    assert old.title.startswith("Frequency of Hot Jupiters and Very Hot Jupiters")
    assert old.abstract.startswith("We derive the frequencies")  # leading spaces collapsed
    assert "V_max<17.5" in old.abstract and "Gould & Morgan (2003)" in old.abstract
    assert old.authors == ["Andrew Gould", "Susan Dorsher", "B. Scott Gaudi", "Andrzej Udalski"]
    assert old.categories == ["astro-ph"]
    assert old.journal_ref == "ActaAstron.56:1-50,2006"
    assert old.comment is not None and old.comment.startswith("62 pages including 16 figures")
    assert old.published == datetime(2006, 1, 2, 14, 57, 58, tzinfo=UTC)
    assert new.categories == ["math.CO", "math.ST"] and new.comment == "20 pages, 3 figures"
    assert new.authors == ["Caprice Stanley", "Tobias Windisch"]
    assert new.doi is None and new.journal_ref is None
    assert new.updated == datetime(2016, 5, 26, 17, 59, 46, tzinfo=UTC)
    # One batch, invalid id never sent, duplicates sent once.
    [request] = arxiv_server.api_requests()
    assert request.query["id_list"] == "astro-ph/0601001,1605.08386"
    assert request.query["max_results"] == "2"


async def test_single_recorded_id_is_served_verbatim(arxiv: ArxivSource) -> None:
    [paper] = await arxiv.papers(["1605.08386"])
    assert paper.title == "Heat-bath random walks with Markov bases"
    assert paper.pdf_url == "https://arxiv.org/pdf/1605.08386v1"


async def test_hostile_api_entries_preserved_raw(arxiv: ArxivSource) -> None:
    hostile, long_one, uni = await arxiv.papers(["2605.01234", "2605.01235", "2605.01236"])
    assert hostile.version == 2
    assert hostile.title == "Bounds for $x_i < y_j$ & the <b>bold</b> __init__ problem: A &amp; B"
    assert hostile.abstract.startswith("We show that $\\alpha_1 < \\beta^2$ whenever a_b & c > d.")
    assert hostile.abstract.endswith("[links](http://x).")
    assert hostile.authors == ["Ada O'Brien", "Bob <Bobby> Smith_Jr"]
    assert hostile.comment == "12 pages; code at https://example.org/a_b?x=1&y=<2>"
    assert hostile.journal_ref == "J. Hostile Stud. 1 (2026) 1&2"
    assert long_one.doi == "10.1000/xyz<123>" and len(long_one.abstract) > 6000
    assert long_one.categories == ["cs.LG", "stat.ML"]
    assert uni.title.endswith("naïve café 🚀") and uni.authors[1] == "李雷"


async def test_250_ids_in_3_spaced_batches(arxiv_server: FakeArxiv) -> None:
    ids = [f"2601.{n:05d}" for n in range(1, 251)]
    for pid in ids:
        arxiv_server.add_paper(make_paper(pid))
    arxiv_server.min_interval = 0.2  # the fake answers 503 to anything faster
    source = ArxivSource(arxiv_server.settings(arxiv_delay_seconds=0.2), backoff=FAST)
    try:
        papers = await source.papers(ids)
    finally:
        await source.aclose()
    assert [p.id for p in papers] == ids
    requests = arxiv_server.api_requests()
    assert [r.status for r in requests] == [200, 200, 200]
    assert [len(r.query["id_list"].split(",")) for r in requests] == [100, 100, 50]
    assert all(gap >= 0.2 for gap in _gaps([r.at for r in requests]))
    assert {r.user_agent for r in requests} == {USER_AGENT}


async def test_concurrent_callers_are_serialised_and_spaced(arxiv_server: FakeArxiv) -> None:
    arxiv_server.min_interval = 0.15
    source = ArxivSource(arxiv_server.settings(arxiv_delay_seconds=0.15), backoff=FAST)
    try:
        results = await asyncio.gather(
            source.papers(["1605.08386"]),
            source.papers(["astro-ph/0601001"]),
            source.search("heat-bath"),
            source.feed("cs.AI"),
        )
    finally:
        await source.aclose()
    assert all(results)
    assert [r.status for r in arxiv_server.requests] == [200] * 4
    assert all(gap >= 0.15 for gap in _gaps([r.at for r in arxiv_server.requests]))


async def test_invalid_ids_are_never_sent(arxiv: ArxivSource, arxiv_server: FakeArxiv) -> None:
    assert await arxiv.papers(["abc", "1605.08386v1", "2613.00001", "hep-th/99010011", ""]) == []
    assert arxiv_server.requests == []
    papers = await arxiv.papers(["abc", "1605.08386"])
    assert [p.id for p in papers] == ["1605.08386"]
    assert arxiv_server.api_requests()[0].query["id_list"] == "1605.08386"


async def test_error_feed_drops_the_rejected_id_and_asks_again(
    arxiv: ArxivSource, arxiv_server: FakeArxiv, caplog: pytest.LogCaptureFixture
) -> None:
    # Our validator and arXiv's can disagree; arXiv's 400 error feed names the bad id.
    error = (FIXTURES / "arxiv_api" / "error_400_id_abc.atom.xml").read_bytes()
    arxiv_server.fail_next(400, body=error.replace(b"abc", b"1605.08386"))
    with caplog.at_level(logging.WARNING, logger="bot.sources.arxiv"):
        papers = await arxiv.papers(["1605.08386", "astro-ph/0601001"])
    assert [p.id for p in papers] == ["astro-ph/0601001"]
    ids_sent = [r.query["id_list"] for r in arxiv_server.api_requests()]
    assert ids_sent == ["1605.08386,astro-ph/0601001", "astro-ph/0601001"]
    assert any("rejected id '1605.08386'" in r.getMessage() for r in caplog.records)


async def test_error_feed_for_an_id_not_in_the_batch_gives_nothing(
    arxiv: ArxivSource, arxiv_server: FakeArxiv
) -> None:
    error = (FIXTURES / "arxiv_api" / "error_400_id_abc.atom.xml").read_bytes()
    arxiv_server.fail_next(400, body=error)
    assert await arxiv.papers(["1605.08386"]) == []
    assert len(arxiv_server.api_requests()) == 1


async def test_503_then_success(arxiv: ArxivSource, arxiv_server: FakeArxiv) -> None:
    arxiv_server.fail_next(503)
    [paper] = await arxiv.papers(["1605.08386"])
    assert paper.id == "1605.08386"
    assert [r.status for r in arxiv_server.requests] == [503, 200]


async def test_429_retry_after_is_honoured(arxiv: ArxivSource, arxiv_server: FakeArxiv) -> None:
    arxiv_server.fail_next(429, retry_after=0.5)
    [paper] = await arxiv.papers(["1605.08386"])
    assert paper.id == "1605.08386"
    first, second = arxiv_server.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.5  # backoff alone would be 0.01 s


async def test_impolite_client_gets_throttled_then_backs_off(arxiv_server: FakeArxiv) -> None:
    arxiv_server.min_interval = 0.3
    source = ArxivSource(arxiv_server.settings(arxiv_delay_seconds=0.0), backoff=FAST)
    try:
        await source.papers(["1605.08386"])
        await source.papers(["astro-ph/0601001"])  # too soon: 503 + Retry-After, then fine
    finally:
        await source.aclose()
    assert [r.status for r in arxiv_server.requests] == [200, 503, 200]
    assert arxiv_server.requests[2].at - arxiv_server.requests[1].at >= 0.3


async def test_upstream_down_is_a_friendly_source_error(arxiv_server: FakeArxiv) -> None:
    arxiv_server.fail_next(503, times=10)
    source = ArxivSource(arxiv_server.settings(), attempts=3, backoff=0.01)
    try:
        with pytest.raises(SourceError, match="arXiv is busy or down right now"):
            await source.papers(["1605.08386"])
    finally:
        await source.aclose()
    assert len(arxiv_server.requests) == 3


async def test_unreachable_upstream_is_a_source_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(arxiv_api_url=f"http://127.0.0.1:{port}/api/query", arxiv_delay_seconds=0)
    source = ArxivSource(settings, attempts=2, backoff=0.01)
    try:
        with pytest.raises(SourceError, match="not reachable"):
            await source.papers(["1605.08386"])
    finally:
        await source.aclose()


async def test_malformed_api_entry_is_skipped(
    arxiv: ArxivSource, arxiv_server: FakeArxiv, caplog: pytest.LogCaptureFixture
) -> None:
    arxiv_server.extra_entries = [
        "<entry><id>http://arxiv.org/abs/not_an_id</id><title>x</title></entry>",
        "<entry><id>http://arxiv.org/abs/2601.00009v1</id><title>  </title></entry>",
        "<entry><title>No id at all</title></entry>",
    ]
    with caplog.at_level(logging.WARNING, logger="bot.sources.arxiv"):
        papers = await arxiv.papers(["1605.08386", "astro-ph/0601001"])
    assert [p.id for p in papers] == ["1605.08386", "astro-ph/0601001"]
    assert sum("skipping malformed entry" in r.getMessage() for r in caplog.records) == 3


@pytest.mark.parametrize("body", [b"", b"<html><body>We are down.</body></html>"])
async def test_empty_or_html_200_api_answer_is_not_no_such_paper(
    arxiv: ArxivSource, arxiv_server: FakeArxiv, body: bytes
) -> None:
    arxiv_server.fail_next(200, body=body)
    with pytest.raises(SourceError, match="unreadable answer"):
        await arxiv.papers(["1605.08386"])
    arxiv_server.fail_next(200, body=body)
    with pytest.raises(SourceError, match="unreadable answer"):
        await arxiv.search("heat-bath")


async def test_no_results_is_an_empty_answer(arxiv: ArxivSource) -> None:
    assert await arxiv.search("nothing-matches-this-zzz") == []
    assert await arxiv.papers(["2601.99999"]) == []


async def test_search_with_author_terms_and_phrases(
    arxiv: ArxivSource, arxiv_server: FakeArxiv
) -> None:
    [paper] = await arxiv.search('author:Windisch "random walks"')
    assert paper.id == "1605.08386"
    assert arxiv_server.requests[-1].query["search_query"] == 'au:Windisch AND all:"random walks"'
    [paper] = await arxiv.search('au:"Andrew Gould" jupiters')
    assert paper.id == "astro-ph/0601001"
    assert await arxiv.search("author:Windisch jupiters") == []
    results = await arxiv.search("cat:CS.lg", limit=2)
    assert len(results) == 2 and all("cs.LG" in p.categories for p in results)
    assert arxiv_server.requests[-1].query["max_results"] == "2"
    assert arxiv_server.requests[-1].query["search_query"] == "cat:cs.LG"


async def test_empty_search_asks_nothing(arxiv: ArxivSource, arxiv_server: FakeArxiv) -> None:
    assert await arxiv.search('  "" () AND  ') == []
    assert arxiv_server.requests == []


@pytest.mark.parametrize(
    ("typed", "query"),
    [
        ("graph neural", "all:graph AND all:neural"),
        ('author:"Yann LeCun" "message passing"', 'au:"Yann LeCun" AND all:"message passing"'),
        ("au:Hinton title:capsules abs:routing", "au:Hinton AND ti:capsules AND abs:routing"),
        ("x AND y OR z ANDNOT w", "all:x AND all:y AND all:z AND all:w"),
        ('a) (b" OR "c:d', 'all:a AND all:b AND all:"c d"'),
        ('"unterminated phrase', 'all:"unterminated phrase"'),
        ("foo:bar", 'all:"foo bar"'),
        ("", ""),
    ],
)
def test_build_search_query(typed: str, query: str) -> None:
    assert build_search_query(typed) == query


# -- Hugging Face --------------------------------------------------------------------------


async def test_hf_daily_maps_every_field(hf: HuggingFaceSource, hf_server: FakeHF) -> None:
    fetch = await hf.feed("daily")
    assert fetch.announced == date(2026, 6, 12)
    assert len(fetch.papers) == 30
    assert hf_server.requests[0].query == {"date": "2026-06-12"}
    assert hf_server.requests[0].user_agent == USER_AGENT
    first = fetch.papers[0]
    assert first.id == "2606.00467"
    assert first.title.startswith("On the Limits of LLM Adaptability")
    assert first.authors == ["Etienne Casanova", "Rafal Kocielnik", "R. Michael Alvarez"]
    assert first.abstract.startswith("Large Language Models (LLMs) are increasingly used")
    assert first.upvotes == 0
    assert first.ai_summary is not None and first.ai_summary.startswith("Large language models")
    assert first.ai_keywords[:2] == ["zero-shot annotation", "LLM-as-a-judge"]
    assert first.published == datetime(2026, 5, 30, tzinfo=UTC)
    assert first.version is None and first.announce_type is None
    with_repo = [p for p in fetch.papers if p.github_repo]
    assert len(with_repo) == 16
    assert all(p.github_repo.startswith("https://github.com/") for p in with_repo if p.github_repo)
    assert all(isinstance(p.github_stars, int) for p in with_repo)
    assert sum(p.project_page is not None for p in fetch.papers) == 13


async def test_hf_daily_falls_back_to_latest_day_with_absent_fields(hf_server: FakeHF) -> None:
    source = HuggingFaceSource(hf_server.settings(), today=lambda: date(2026, 8, 5), backoff=FAST)
    try:
        fetch = await source.feed("daily")
    finally:
        await source.aclose()
    assert [r.query for r in hf_server.requests] == [{"date": "2026-08-05"}, {}]
    assert fetch.announced == date(2026, 7, 31)
    assert [p.id for p in fetch.papers] == ["2607.21001", "2607.21002", "2607.21003"]
    repo, hostile, bare = fetch.papers
    assert repo.github_repo == "https://github.com/example-lab/sparse-routers"
    assert repo.github_stars == 212 and repo.authors == ["Mira Kato", "Jonas Weber"]
    assert bare.ai_summary is None and bare.ai_keywords == []
    assert bare.github_repo is None and bare.github_stars is None and bare.project_page is None
    assert hostile.title == "Bounds for $x_i < y_j$ & <b>bold</b> __init__ agents"
    assert hostile.abstract == (
        "Hostile: a < b && c > d, $\\alpha_1$, <script>alert(1)</script>, &amp; stays literal."
    )
    assert hostile.authors == ["Zoë Ångström", "李雷"]


async def test_hf_daily_nothing_anywhere_is_no_announcement(
    hf: HuggingFaceSource, hf_server: FakeHF
) -> None:
    hf_server.days = {}
    assert (await hf.feed("daily")).announced is None


async def test_hf_trending(hf: HuggingFaceSource, hf_server: FakeHF) -> None:
    fetch = await hf.feed("trending")
    assert hf_server.requests[0].query == {"sort": "trending"}
    votes = [p.upvotes or 0 for p in fetch.papers]
    assert votes == sorted(votes, reverse=True) and len(votes) == 33
    assert fetch.announced == date(2026, 6, 12)


async def test_hf_unknown_feed(hf: HuggingFaceSource, hf_server: FakeHF) -> None:
    with pytest.raises(SourceError, match="Unknown Hugging Face feed"):
        await hf.feed("monthly")
    assert hf_server.requests == []


async def test_hf_lookup_by_id(hf: HuggingFaceSource, hf_server: FakeHF) -> None:
    papers = await hf.papers(["2606.00467", "2607.21003", "2601.99999", "not-an-id"])
    assert sorted(p.id for p in papers) == ["2606.00467", "2607.21003"]
    paths = sorted(r.path for r in hf_server.requests)
    assert paths == ["/api/papers/2601.99999", "/api/papers/2606.00467", "/api/papers/2607.21003"]
    assert {r.status for r in hf_server.requests} == {200, 404}


async def test_hf_search(hf: HuggingFaceSource, hf_server: FakeHF) -> None:
    [paper] = await hf.search("sparse routers")
    assert paper.id == "2607.21001"
    assert hf_server.requests[0].query == {"q": "sparse routers"}
    assert len(await hf.search("the", limit=3)) == 3
    assert await hf.search("   ") == []


async def test_hf_malformed_items_skipped_rest_arrive(
    hf: HuggingFaceSource, hf_server: FakeHF, caplog: pytest.LogCaptureFixture
) -> None:
    good: dict[str, Any] = {
        "paper": {
            "id": "2606.99001",
            "title": "Fine",
            "upvotes": "many",
            "authors": "not a list",
            "githubStars": True,
            "ai_keywords": ["ok", 3, None],
        }
    }
    hf_server.days = {
        "2026-06-12": [
            "just a string",
            {"paper": "not an object"},
            {"paper": {"id": "nope", "title": "Bad id"}},
            {"paper": {"id": 2606.99002, "title": "Numeric id"}},
            {"paper": {"id": "2606.99003"}},  # no title anywhere
            good,
            {"paper": {"id": "2606.99004"}, "title": "Title only at the top"},
        ]
    }
    with caplog.at_level(logging.WARNING, logger="bot.sources.hf"):
        fetch = await hf.feed("daily")
    assert [p.id for p in fetch.papers] == ["2606.99001", "2606.99004"]
    fine = fetch.papers[0]
    assert fine.upvotes is None and fine.authors == [] and fine.github_stars is None
    assert fine.ai_keywords == ["ok"]
    assert fetch.papers[1].title == "Title only at the top"
    assert sum("skipping" in r.getMessage() for r in caplog.records) == 5


async def test_hf_503_once_then_success(hf: HuggingFaceSource, hf_server: FakeHF) -> None:
    hf_server.fail_next(503, retry_after="0")
    fetch = await hf.feed("trending")
    assert fetch.papers
    assert [r.status for r in hf_server.requests] == [503, 200]


async def test_hf_down_is_a_source_error(hf_server: FakeHF) -> None:
    hf_server.fail_next(502, times=5)
    source = HuggingFaceSource(hf_server.settings(), attempts=2, backoff=0.01)
    try:
        with pytest.raises(SourceError, match="Hugging Face is busy or down"):
            await source.feed("trending")
    finally:
        await source.aclose()
    assert len(hf_server.requests) == 2


async def test_hf_non_json_is_a_source_error(hf: HuggingFaceSource, hf_server: FakeHF) -> None:
    hf_server.fail_next(200)  # the injected failure body is a JSON object, not a list
    with pytest.raises(SourceError, match="unexpected answer"):
        await hf.feed("trending")


# -- categories and helpers ------------------------------------------------------------


def test_categories() -> None:
    for cid in (
        "cs.AI",
        "cs.LG",
        "math.AP",
        "hep-th",
        "astro-ph.CO",
        "q-bio.NC",
        "stat.ML",
        "econ.EM",
        "eess.SP",
        "cond-mat.str-el",
        "physics.optics",
        "q-fin.TR",
        "nlin.SI",
    ):
        assert is_category(cid) and canonical_category(cid) == cid
    assert canonical_category(" CS.ai ") == "cs.AI"
    assert canonical_category("COND-MAT.STR-EL") == "cond-mat.str-el"
    assert canonical_category("cs.XX") is None and not is_category("cs")
    assert canonical_listing("CS") == "cs" and canonical_listing("Math.ap") == "math.AP"
    assert category_name("stat.ml") == "Machine Learning"
    assert suggest_categories("cs.L") == ["cs.LG", "cs.LO"]
    assert suggest_categories("machine learning") == ["cs.LG", "stat.ML"]
    assert suggest_categories("astro-ph")[0] == "astro-ph.CO"
    assert len(suggest_categories("")) == 25
    assert suggest_categories("zzz") == []


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    delay = parse_retry_after(future)
    assert delay is not None and 25 <= delay <= 31
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
    # Capped (the LLM client and the e-print fetch bound their waits).
    assert parse_retry_after("3", 30) == 3
    assert parse_retry_after("999", 30) == 30
    assert parse_retry_after(None, 30) is None
    assert parse_retry_after("soon", 30) is None
    future = formatdate(timeval=time.time() + 10, usegmt=True)
    assert 8 <= (parse_retry_after(future, 30) or 0) <= 10
