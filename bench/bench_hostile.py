"""Hostile upstreams and crafted papers (issue 11): worst-case answer time and peak memory.

    python -m bench.bench_hostile

Each arXiv and Hugging Face hostile mode of the fakes (tests/fakes/hostile.py: listings cut
after the header or midway, 100 B/s trickles, 100 MB bodies, a 512 MB gzip bomb, 503 with
Retry-After: 3600, connection resets) is answered through the terminal chat's `/today
cs.AI` or `/trending`, with the production settings' deadlines (6 s per command, 30 s per
upstream attempt). Then every crafted e-print (tests/fakes/eprint.py: \\iffalse over 7 MB,
unclosed \\def's, \\def\\a{\\a\\a}\\a, mutual recursion) is explained end to end. Printed:
each case's answer time, the worst, and the process's peak RSS growth (the fakes included).
Targets: every answer under 10 s, LaTeX cases under 5 s, RSS growth under 200 MB.
"""

from __future__ import annotations

import asyncio
import io
import logging
import resource
import time

from adapters.console import ConsoleChat, render_reply
from bot.config import Settings
from bot.explain.sandbox import warm_up
from bot.runtime import open_service
from bot.service import Paperboy
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.eprint import FakeEprint, crafted_sources
from tests.fakes.hf import FakeHF
from tests.fakes.hostile import gzip_bomb_body

ARXIV_MODES = [
    "cut_after_header",
    "cut_midway",
    "trickle",
    "huge",
    "gzip_bomb",
    "retry_after_hour",
    "reset",
]
HF_MODES = ["cut_json", "trickle", "huge", "gzip_bomb", "retry_after_hour", "reset"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _ask(app: Paperboy, line: str) -> tuple[float, str]:
    started = time.monotonic()
    reply = await ConsoleChat(app, out=io.StringIO()).handle(line)
    assert reply is not None
    return time.monotonic() - started, render_reply(reply).split("\n", 1)[0][:70]


async def main() -> None:
    logging.disable(logging.WARNING)  # the figures, not the (expected) warnings
    await asyncio.to_thread(warm_up)
    await asyncio.to_thread(gzip_bomb_body)  # built once by the fake, before any clock runs
    base_rss = _rss_mb()
    times: list[tuple[str, float]] = []
    async with FakeArxiv() as arxiv, FakeHF() as hf, FakeEprint() as eprints:
        settings: Settings = arxiv.settings(
            hf_api_url=hf.api_url,
            database_url="sqlite:///:memory:",
            arxiv_eprint_url=eprints.eprint_url,
            arxiv_html_url=eprints.html_url,
            http_timeout_seconds=30.0,  # the production defaults
        )
        print(
            f"  deadlines: command {settings.interactive_deadline_seconds:g} s, "
            f"upstream attempt {settings.upstream_deadline_seconds:g} s, "
            f"Retry-After cap {settings.retry_after_cap_seconds:g} s"
        )
        for source, modes, line, fake in (
            ("arXiv", ARXIV_MODES, "/today cs.AI", arxiv),
            ("HF", HF_MODES, "/trending", hf),
        ):
            for mode in modes:
                async with open_service(settings) as app:  # a fresh store: nothing cached
                    fake.hostile.clear()
                    fake.hostile_next(mode, times=5)
                    took, first = await _ask(app, line)
                    fake.hostile.clear()
                times.append((f"{source} {mode}", took))
                print(f"  {source:5} {mode:18} answered in {took:5.2f} s: {first}")
        for name, data in sorted(crafted_sources().items()):
            eprints.eprints["1605.08386"] = data
            async with open_service(settings) as app:
                await app.paper("1605.08386")
                took, first = await _ask(app, "/explain 1605.08386")
            times.append((f"LaTeX {name}", took))
            print(f"  LaTeX {name:18} explained in {took:5.2f} s: {first}")
    worst_name, worst = max(times, key=lambda t: t[1])
    latex_worst = max(t for n, t in times if n.startswith("LaTeX"))
    print(f"  worst answer: {worst:.2f} s ({worst_name}); worst crafted LaTeX: {latex_worst:.2f} s")
    print(f"  peak RSS: {_rss_mb():.0f} MB ({_rss_mb() - base_rss:+.0f} MB over the hostile cases)")


if __name__ == "__main__":
    asyncio.run(main())
