"""The fake arXiv must speak the real wire format: the official `arxiv` client reads it.

Paperboy itself uses httpx + feedparser (the `arxiv` package is synchronous), so this
cross-check runs the reference client in a worker thread against the fake.
"""

from __future__ import annotations

import asyncio

import arxiv

from tests.fakes.arxiv import FakeArxiv


def _lookup(url: str, ids: list[str]) -> list[arxiv.Result]:
    client = arxiv.Client(delay_seconds=0, num_retries=0)
    client.query_url_format = url + "?{}"
    return list(client.results(arxiv.Search(id_list=ids)))


async def test_reference_client_reads_the_fake(arxiv_server: FakeArxiv) -> None:
    results = await asyncio.to_thread(_lookup, arxiv_server.api_url, ["1605.08386", "2605.01234"])
    by_id = {r.get_short_id(): r for r in results}
    assert by_id["1605.08386v1"].title == "Heat-bath random walks with Markov bases"
    assert [a.name for a in by_id["1605.08386v1"].authors] == ["Caprice Stanley", "Tobias Windisch"]
    hostile = by_id["2605.01234v2"]
    assert "<b>bold</b>" in hostile.title and "$x_i < y_j$" in hostile.title
