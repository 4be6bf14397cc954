"""/explain benchmarks, all against local fakes (no network):

- cached explain latency (p50/p95; goal p95 <= 20 ms),
- source extraction + analysis time on a large generated source (~5 MB of LaTeX),
- a hung LLM: time to the first (offline) answer, to the failure note, and for the next
  user while the provider is backed off (goals: < 2 s, the budget, ~0),
- 100 people asking at once for an unknown id, through the whole app with arXiv's real
  3 s gate -> metadata lookups, e-print fetches, LLM calls (goal: 1, 1, 1) and when the
  first and last offline and LLM answers came.

Run: python -m bench.bench_explain
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import replace

from bot.commands import Context, run_text
from bot.config import Settings
from bot.explain import Explainer, ExplainOptions, LimitSettings
from bot.explain.analyze import analyze
from bot.explain.source import extract
from bot.models import ChatRef, Paper
from bot.runtime import open_service
from tests.fakes.arxiv import FakeArxiv, FakePaper
from tests.fakes.eprint import FakeEprint, fixture_paper, tar_gz
from tests.fakes.hf import FakeHF
from tests.fakes.llm import FakeLLM

UNLIMITED = ExplainOptions(
    limits=LimitSettings(user_requests=10**9, chat_requests=10**9, daily_tokens=0)
)


def _paper(pid: str) -> Paper:
    return Paper(
        id=pid,
        title="Denoising Flow Matching for Fast Image Synthesis",
        authors=["Ada Lovelace", "Alan Turing"],
        abstract="We introduce DFM. It samples images in four steps. FID 2.1 on ImageNet.",
        version=1,
    )


def _settings(arxiv: FakeEprint, llm: FakeLLM) -> Settings:
    return Settings(
        arxiv_eprint_url=arxiv.eprint_url,
        arxiv_html_url=arxiv.html_url,
        arxiv_delay_seconds=0.0,
        llm_provider="openai",
        llm_base_url=f"{llm.url}/v1",
        llm_api_key=llm.api_key,
        llm_model="bench-model",
    )


def large_source(target_bytes: int = 4_000_000, figures_mb: int = 4, seed: int = 7) -> bytes:
    """A tar.gz: main file, macro file, many \\input-ed sections (~4 MB LaTeX) and figures."""
    rng = random.Random(seed)
    words = [
        "model",
        "loss",
        "gradient",
        "network",
        "data",
        "sample",
        "training",
        "objective",
        "we",
        "show",
        "that",
        "the",
        "results",
        "improve",
        "over",
        "baseline",
        "method",
        "attention",
        "layer",
        "token",
        "expert",
        "routing",
    ]
    macros = "\n".join(
        f"\\newcommand{{\\v{chr(97 + i)}}}{{\\mathbf{{{chr(97 + i)}}}}}" for i in range(26)
    )
    files: dict[str, str] = {"macros.tex": macros}
    size = 0
    n = 0
    inputs = []
    while size < target_bytes:
        parts = [f"\\section{{Part {n}}}\n"]
        for k in range(40):
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(12, 30)))
            parts.append(sentence.capitalize() + ". ")
            if k % 8 == 0:
                parts.append(
                    f"We minimize\n\\begin{{equation}}\\mathcal{{L}}_{{{n}{k}}} = \\sum_i "
                    f"\\| \\vx_i - \\vy_i \\|^2 \\label{{eq:{n}-{k}}}\\end{{equation}}\n"
                    f"where $\\vx_i$ is the input and $\\vy_i$ is the target. "
                    f"See \\eqref{{eq:{n}-{k}}}.\n\n"
                )
        text = "".join(parts)
        files[f"sections/part{n}.tex"] = text
        inputs.append(f"\\input{{sections/part{n}}}")
        size += len(text)
        n += 1
    files["main.tex"] = (
        "\\documentclass{article}\n\\input{macros}\n\\begin{document}\n"
        + "\n".join(inputs)
        + "\n\\end{document}\n"
    )
    blobs: dict[str, str | bytes] = dict(files)
    # Real sources carry figures: incompressible bytes the extractor must stream past.
    for i in range(figures_mb):
        blobs[f"figures/fig{i}.png"] = b"\x89PNG\r\n\x1a\n" + rng.randbytes(1 << 20)
    return tar_gz(blobs)


async def bench_cached(arxiv: FakeEprint, llm: FakeLLM, n: int = 500) -> dict[str, float]:
    ex = Explainer(_settings(arxiv, llm), options=UNLIMITED)
    try:
        p = _paper("2501.01234")
        warm = await ex.explain(p, user="warm", chat="warm")  # fetch, render, LLM: cached
        if warm.update is not None:
            await warm.update()
        samples = []
        for i in range(n):
            t = time.perf_counter()
            await ex.explain(p, user=f"u{i}", chat=f"c{i}")
            samples.append((time.perf_counter() - t) * 1000)
    finally:
        await ex.aclose()
    samples.sort()
    return {
        "p50_ms": statistics.median(samples),
        "p95_ms": samples[int(len(samples) * 0.95) - 1],
        "max_ms": samples[-1],
    }


def bench_extraction() -> dict[str, float]:
    data = large_source()
    t = time.perf_counter()
    src = extract(data)
    t_extract = time.perf_counter() - t
    t = time.perf_counter()
    result = analyze(src.body, src.preamble)
    t_analyze = time.perf_counter() - t
    return {
        "archive_mb": len(data) / 1e6,
        "latex_mb": len(src.body) / 1e6,
        "files": src.files,
        "extract_s": t_extract,
        "analyze_s": t_analyze,
        "equations": result.equation_count,
    }


async def bench_hung(arxiv: FakeEprint, llm: FakeLLM, budget: float = 5.0) -> dict[str, float]:
    """A provider that never answers: the offline explanation must not wait for it."""
    pid = "2501.06666"
    arxiv.eprints[pid] = fixture_paper()
    settings = _settings(arxiv, llm)
    settings.llm_budget_seconds = budget
    llm.stall = asyncio.Event()
    ex = Explainer(settings, options=UNLIMITED)
    try:
        t = time.perf_counter()
        first = await ex.explain(_paper(pid), user="a", chat="a")  # cold: fetch + render
        first_s = time.perf_counter() - t
        assert first.update is not None
        t = time.perf_counter()
        await first.update()
        note_s = time.perf_counter() - t
        t = time.perf_counter()
        await ex.explain(_paper(pid), user="b", chat="b")  # backed off
        next_ms = (time.perf_counter() - t) * 1000
    finally:
        llm.stall.set()
        llm.stall = None
        await ex.aclose()
    return {"first_s": first_s, "note_s": note_s, "budget_s": budget, "next_ms": next_ms}


async def bench_concurrent(
    arxiv: FakeEprint, llm: FakeLLM, n: int = 100, gate: float = 3.0
) -> dict[str, float]:
    """n people explain an unknown paper at once, through the app: arXiv lookup (behind
    the polite gate), Hugging Face, e-print, analysis, images, LLM."""
    pid = "2501.05555"
    arxiv.eprints[pid] = fixture_paper()
    arxiv.delay, llm.delay = 0.1, 1.0
    calls = len(llm.calls)
    async with FakeArxiv() as api, FakeHF() as hf:
        api.add_paper(
            FakePaper(pid, 1, "Denoising Flow Matching", "We introduce DFM.", ["Ada Lovelace"],
                      ["cs.LG"], "2025-01-02T00:00:00Z", "2025-01-02T00:00:00Z")
        )  # fmt: skip
        settings = replace(
            _settings(arxiv, llm),
            arxiv_api_url=api.api_url,
            hf_api_url=hf.api_url,
            arxiv_delay_seconds=gate,
            database_url="sqlite:///:memory:",
            explain_user_per_minute=10**6,
            explain_chat_per_minute=10**6,
        )
        offline: list[float] = []
        final: list[float] = []
        async with open_service(settings) as app:
            t = time.perf_counter()

            async def one(i: int) -> None:
                ctx = Context(ChatRef("console", f"c{i}"), user_id=f"u{i}", images=True)
                reply = await run_text(app, ctx, "explain", pid)
                offline.append(time.perf_counter() - t)
                if reply.update is not None:
                    await reply.update()
                final.append(time.perf_counter() - t)

            await asyncio.gather(*(one(i) for i in range(n)))
        lookups = len(api.api_requests())
    arxiv.delay = llm.delay = 0.0
    return {
        "requests": n,
        "gate_s": gate,
        "lookups": lookups,
        "eprint_fetches": arxiv.count("e-print", f"{pid}v1"),
        "llm_calls": len(llm.calls) - calls,
        "first_offline_s": min(offline),
        "last_offline_s": max(offline),
        "first_final_s": min(final),
        "last_final_s": max(final),
    }


async def main() -> None:
    async with FakeEprint() as arxiv, FakeLLM() as llm:
        arxiv.eprints["2501.01234"] = fixture_paper()
        # First, while nothing is warm (imports, fonts, rendered equations): a cold start.
        hung = await bench_hung(arxiv, llm)
        print(
            f"hung LLM: first (offline) answer {hung['first_s']:.2f} s, cold "
            f"(goal < 2 s); "
            f"failure note by edit {hung['note_s']:.2f} s later (budget {hung['budget_s']:.0f} s); "
            f"next user, provider backed off: {hung['next_ms']:.1f} ms"
        )
        cached = await bench_cached(arxiv, llm)
        print(
            f"explain (cached): p50 {cached['p50_ms']:.2f} ms, p95 {cached['p95_ms']:.2f} ms "
            f"(goal <= 20 ms), max {cached['max_ms']:.2f} ms"
        )
        ext = await asyncio.to_thread(bench_extraction)
        print(
            f"source extraction: {ext['archive_mb']:.2f} MB tar.gz, {int(ext['files'])} files, "
            f"{ext['latex_mb']:.2f} MB LaTeX -> unpack+flatten+macros {ext['extract_s']:.2f} s, "
            f"analysis {ext['analyze_s']:.2f} s ({int(ext['equations'])} equations)"
        )
        conc = await bench_concurrent(arxiv, llm)
        print(
            f"concurrent explain: {int(conc['requests'])} people, one unknown id, "
            f"{conc['gate_s']:.0f} s arXiv gate -> {int(conc['lookups'])} metadata lookup, "
            f"{int(conc['eprint_fetches'])} e-print fetch, {int(conc['llm_calls'])} LLM call "
            f"(goal 1, 1, 1); offline answers {conc['first_offline_s']:.2f}-"
            f"{conc['last_offline_s']:.2f} s, LLM answers {conc['first_final_s']:.2f}-"
            f"{conc['last_final_s']:.2f} s after asking"
        )


if __name__ == "__main__":
    asyncio.run(main())
