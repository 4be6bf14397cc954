"""/explain end to end: fake arXiv (e-print + HTML) and fake LLM servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import AsyncIterator

import pytest

from bot.config import USER_AGENT, Settings
from bot.doc import Heading, Link, MathBlock, Reply, block_text
from bot.explain import Explainer, ExplainOptions, Limits, LimitSettings
from bot.models import Paper
from bot.runtime import open_service
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.eprint import (
    MINIMAL_MAIN,
    FakeEprint,
    fixture_html,
    fixture_paper,
    gzip_bomb,
    gzip_single,
    tar_bomb,
    tar_gz,
)
from tests.fakes.llm import FakeLLM

PID = "2501.01234"
ABSTRACT = (
    "We introduce Denoising Flow Matching (DFM), a generative model that learns a velocity "
    "field transporting noise to data. DFM trains with a simple regression objective and "
    "samples images in four steps. On ImageNet $256\\times256$ it reaches an FID of 2.1."
)


def paper(pid: str = PID, **kw: object) -> Paper:
    fields: dict[str, object] = {
        "id": pid,
        "title": "Denoising Flow Matching for Fast Image Synthesis",
        "authors": ["Ada Lovelace", "Alan Turing"],
        "abstract": ABSTRACT,
        "version": 1,
    }
    fields.update(kw)
    return Paper(**fields)  # type: ignore[arg-type]


def text_of(reply: Reply) -> str:
    parts = []
    for msg in reply.messages:
        for block in msg.blocks:
            parts.append(block_text(block))
            if isinstance(block, MathBlock):
                parts.append(block.latex)
        for row in msg.buttons:
            parts += [f"{b.label} {b.url or ''}" for b in row]
    return "\n".join(parts)


def header(reply: Reply) -> str:
    return block_text(reply.messages[0].blocks[0])


def math_blocks(reply: Reply) -> list[MathBlock]:
    return [b for m in reply.messages for b in m.blocks if isinstance(b, MathBlock)]


def links(reply: Reply) -> list[str]:
    out = []
    for m in reply.messages:
        for b in m.blocks:
            for node in getattr(b, "children", ()):
                if isinstance(node, Link):
                    out.append(node.url)
        out += [btn.url for row in m.buttons for btn in row if btn.url]
    return out


@pytest.fixture
async def arxiv() -> AsyncIterator[FakeEprint]:
    async with FakeEprint() as server:
        server.eprints[PID] = fixture_paper()
        yield server


def settings(arxiv: FakeEprint, **kw: object) -> Settings:
    values: dict[str, object] = {"arxiv_delay_seconds": 0.0, **kw}
    return Settings(
        arxiv_eprint_url=arxiv.eprint_url,
        arxiv_html_url=arxiv.html_url,
        **values,  # type: ignore[arg-type]
    )


def llm_settings(arxiv: FakeEprint, llm: FakeLLM, provider: str = "openai") -> Settings:
    base = f"{llm.url}/v1" if provider == "openai" else llm.url
    return settings(
        arxiv,
        llm_provider=provider,
        llm_base_url=base,
        llm_api_key=llm.api_key,
        llm_model="test-model",
    )


# The fake LLM answers at once: a grace makes `explain` return its explanation directly.
FAST = ExplainOptions(llm_max_wait=0.05, llm_grace_seconds=10)


@pytest.fixture
async def explainers() -> AsyncIterator[list[Explainer]]:
    made: list[Explainer] = []
    yield made
    for e in made:
        await e.aclose()


def make(made: list[Explainer], s: Settings, options: ExplainOptions = FAST) -> Explainer:
    ex = Explainer(s, options=options)
    made.append(ex)
    return ex


# ------------------------------------------------------------------ offline


async def test_offline_explanation_from_latex_source(
    arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    ex = make(explainers, settings(arxiv))
    reply = await ex.explain(paper(), user="u1", chat="c1")
    text = text_of(reply)
    assert header(reply).startswith("Offline explanation — no LLM configured")
    assert "LaTeX source" in header(reply)
    # The key equations: the training loss (numbered 2, referenced four times) is chosen
    # and labelled as the objective; the appendix equation and the trivial one are not.
    eqs = math_blocks(reply)
    assert 2 <= len(eqs) <= 4
    labels = [e.label for e in eqs]
    assert "2" in labels
    loss = eqs[labels.index("2")]
    assert loss.latex.startswith("\\mathcal{L}(\\theta)")  # macros \loss, \E, \vx expanded
    assert "ℒ(θ)" in loss.unicode
    assert "objective / loss" in text
    assert "aux" not in text and "c = 1" not in text
    # Context sentence and the notation glossary from the "where ..." clause.
    assert "trained by minimizing the flow matching loss" in text
    assert "the velocity network with parameters" in text
    assert "the step size" in text
    # Contributions from the itemize after "Our main contributions", outline, TL;DR.
    assert "We propose Denoising Flow Matching" in text
    assert "state-of-the-art FID" in text
    outline = text[text.index("Outline") :]
    assert "1. Introduction" in outline and "2. Method: Background; Interpolation path" in outline
    assert "3. Experiments" in outline and "4. Conclusion" in outline
    assert "TL;DR (from the abstract)" in text
    # Hidden and commented-out text never reaches the reply.
    for bad in ("IGNORE", "positive review", "recommend acceptance", "secret", "Old draft"):
        assert bad.lower() not in text.lower()
    # Images rendered as PNG; links are the paper's own.
    assert all(e.image and e.image.startswith(b"\x89PNG") for e in eqs)
    assert set(links(reply)) == {f"https://arxiv.org/abs/{PID}v1", f"https://arxiv.org/pdf/{PID}v1"}
    # One polite request with our User-Agent.
    assert arxiv.count("e-print") == 1 and arxiv.count("html") == 0
    assert arxiv.hits[0].user_agent == USER_AGENT
    assert arxiv.hits[0].id == f"{PID}v1"


async def test_hf_summary_is_the_tldr_and_links_include_hf_and_repo(
    arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    ex = make(explainers, settings(arxiv))
    p = paper(
        ai_summary="DFM samples images in four steps by regressing a straight-line velocity.",
        upvotes=42,
        github_repo="https://github.com/ada/dfm",
    )
    reply = await ex.explain(p, user="u", chat="c", render_images=False)
    text = text_of(reply)
    assert "TL;DR (Hugging Face AI summary)" in text
    assert "regressing a straight-line velocity" in text
    assert f"https://huggingface.co/papers/{PID}" in links(reply)
    assert "https://github.com/ada/dfm" in links(reply)
    assert all(e.image is None for e in math_blocks(reply))


async def test_single_gzipped_tex_file(arxiv: FakeEprint, explainers: list[Explainer]) -> None:
    body = r"""
We minimize the objective
\begin{equation} \mathcal{L} = \sum_i (y_i - f(x_i))^2 \label{eq:l} \end{equation}
where $f$ is the model and $y_i$ is the target. Eq.~\eqref{eq:l} is all we need.
\section{Results} It works.
"""
    arxiv.eprints["2501.00002"] = gzip_single(MINIMAL_MAIN % body)
    ex = make(explainers, settings(arxiv))
    reply = await ex.explain(paper("2501.00002"), user="u", chat="c", render_images=False)
    assert "LaTeX source" in header(reply)
    eqs = math_blocks(reply)
    assert eqs and eqs[0].label == "1" and "y_i" in eqs[0].latex
    assert "the target" in text_of(reply)


async def test_html_fallback_is_labelled_and_drops_hidden_text(
    arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    arxiv.html["2501.00003"] = fixture_html()
    ex = make(explainers, settings(arxiv))
    reply = await ex.explain(
        paper("2501.00003", title="Sparse Mixture Routing", abstract="We present SMR."),
        user="u",
        chat="c",
    )
    text = text_of(reply)
    assert "arXiv HTML" in header(reply)
    assert arxiv.count("e-print") == 1 and arxiv.count("html") == 1
    eqs = math_blocks(reply)
    assert [e.label for e in eqs] == ["1", "2"]
    assert "\\alpha" in eqs[1].latex and eqs[1].image is not None
    assert "the balance weight" in text and "the router weight matrix" in text
    assert "load-balanced top-" in text  # contributions list
    assert "ignore" not in text.lower() and "recommend acceptance" not in text
    assert "https://arxiv.org/html/2501.00003v1" in links(reply)


async def test_abstract_fallback_is_labelled(
    arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    ex = make(explainers, settings(arxiv))
    reply = await ex.explain(paper("2501.09999"), user="u", chat="c")
    assert "abstract only" in header(reply)
    assert "We introduce Denoising Flow Matching" in text_of(reply)
    assert not math_blocks(reply)


async def test_pdf_only_eprint_falls_back(arxiv: FakeEprint, explainers: list[Explainer]) -> None:
    arxiv.eprints["2501.00004"] = b"%PDF-1.5\n" + b"0" * 1000
    ex = make(explainers, settings(arxiv))
    reply = await ex.explain(paper("2501.00004"), user="u", chat="c")
    assert "abstract only" in header(reply)


async def test_arxiv_busy_is_retried_politely(
    arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    arxiv.busy[PID] = 1
    ex = make(explainers, settings(arxiv))
    reply = await ex.explain(paper(), user="u", chat="c", render_images=False)
    assert "LaTeX source" in header(reply)
    assert arxiv.count("e-print") == 2


async def test_requests_to_arxiv_are_spaced(arxiv: FakeEprint, explainers: list[Explainer]) -> None:
    ex = make(explainers, settings(arxiv, arxiv_delay_seconds=0.3))
    await asyncio.gather(
        ex.explain(paper("2501.00005"), user="a", chat="a", render_images=False),
        ex.explain(paper("2501.00006"), user="b", chat="b", render_images=False),
    )
    times = sorted(h.at for h in arxiv.hits)
    assert len(times) == 4  # e-print 404 then HTML 404, for each paper
    assert all(b - a >= 0.28 for a, b in itertools.pairwise(times))


async def test_source_and_explainer_share_one_arxiv_gate(
    arxiv: FakeEprint, arxiv_server: FakeArxiv
) -> None:
    # arXiv's one-request-every-3-s rule counts everything we send, so the app's source
    # lookups and the explainer's e-print/HTML fetches must queue behind one gate.
    s = settings(
        arxiv,
        arxiv_api_url=arxiv_server.api_url,
        arxiv_delay_seconds=0.3,
        database_url="sqlite:///:memory:",
    )
    async with open_service(s) as app:
        assert app.explainer is not None
        found, _, _ = await asyncio.gather(
            app.arxiv.papers(["1605.08386"]),
            app.explainer.explain(paper(), user="a", chat="a", render_images=False),
            app.explainer.explain(paper("2501.00007"), user="b", chat="b", render_images=False),
        )
    assert [p.id for p in found] == ["1605.08386"]
    times = sorted([r.at for r in arxiv_server.requests] + [h.at for h in arxiv.hits])
    assert len(times) == 4  # lookup; e-print; e-print 404 then HTML 404
    assert all(b - a >= 0.28 for a, b in itertools.pairwise(times))


async def test_explain_limits_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPLAIN_USER_PER_MINUTE", "2")
    monkeypatch.setenv("EXPLAIN_CHAT_PER_MINUTE", "7")
    monkeypatch.setenv("LLM_DAILY_TOKENS", "1234")
    s = dataclasses.replace(Settings.from_env(read_dotenv=False), database_url="sqlite:///:memory:")
    assert (s.explain_user_per_minute, s.explain_chat_per_minute, s.llm_daily_tokens) == (
        2,
        7,
        1234,
    )
    async with open_service(s) as app:
        assert app.explainer is not None
        assert app.explainer.options.limits == LimitSettings(
            user_requests=2, chat_requests=7, window_seconds=60.0, daily_tokens=1234
        )
        assert app.explainer.budget.daily == 1234


def test_explain_limit_settings_default_to_the_engine_defaults() -> None:
    s, limits = Settings(), LimitSettings()
    assert s.explain_user_per_minute == limits.user_requests
    assert s.explain_chat_per_minute == limits.chat_requests
    assert s.llm_daily_tokens == limits.daily_tokens
    assert limits.window_seconds == 60.0  # the settings are per minute


# ----------------------------------------------------------- hostile archives


HOSTILE = {
    "traversal": tar_gz(
        {
            "main.tex": MINIMAL_MAIN % r"\input{../../etc/passwd} \input{/etc/hostname} Safe text.",
            "../../etc/passwd": "root:x:0:0:PWNED",
            "/etc/hostname": "PWNED-HOST",
        }
    ),
    "symlink": tar_gz(
        {"main.tex": MINIMAL_MAIN % r"\input{sections/intro} Safe text."},
        symlinks={"sections/intro.tex": "/etc/passwd"},
        hardlinks={"sections/other.tex": "/etc/shadow"},
    ),
    "deep": tar_gz(
        {
            "main.tex": MINIMAL_MAIN % r"\input{d0}",
            **{f"d{i}.tex": f"level {i} \\input{{d{i + 1}}}" for i in range(40)},
        }
    ),
    "cyclic": tar_gz(
        {
            "main.tex": MINIMAL_MAIN % r"\input{a} Safe text.",
            "a.tex": r"in a \input{b}",
            "b.tex": r"in b \input{a} \input{main}",
        }
    ),
    "macro_bomb": tar_gz(
        {
            "main.tex": (
                "\\documentclass{article}\n"
                + "\n".join(
                    f"\\newcommand{{\\m{chr(97 + i)}}}{{\\m{chr(98 + i)}\\m{chr(98 + i)}}}"
                    for i in range(25)
                )
                + "\n\\newcommand{\\mz}{lol}\n\\begin{document}\\section{A} \\ma Safe text.\n"
                "\\newcommand{\\loop}{\\loop x}\\loop\n\\end{document}"
            )
        }
    ),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_hostile_archives_are_handled_safely(
    kind: str, arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    pid = "2502.00001"
    arxiv.eprints[pid] = HOSTILE[kind]
    ex = make(explainers, settings(arxiv))
    started = time.perf_counter()
    reply = await asyncio.wait_for(ex.explain(paper(pid), user="u", chat="c"), 20)
    assert time.perf_counter() - started < 10
    text = text_of(reply)
    assert "PWNED" not in text and "root:" not in text
    assert header(reply).startswith("Offline explanation")


async def test_deep_and_cyclic_includes_are_cut() -> None:
    from bot.explain.source import Limits, extract, unpack

    src = extract(HOSTILE["deep"], Limits(max_include_depth=5))
    assert "level 3" in src.body and "level 10" not in src.body
    assert src.includes.skipped_depth == 1
    src = extract(HOSTILE["cyclic"])
    assert src.includes.skipped_cycles == 2 and src.body.count("in a") == 1
    files, report = unpack(HOSTILE["traversal"])
    assert set(files) == {"main.tex"}
    assert len(report.skipped_unsafe) == 2
    files, report = unpack(HOSTILE["symlink"])
    assert set(files) == {"main.tex"} and len(report.skipped_unsafe) == 2


@pytest.mark.parametrize("bomb", ["gzip", "tar"])
async def test_decompression_bombs_stop_at_the_cap(
    bomb: str, arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    from bot.explain.source import SourceUnavailable, unpack

    data = gzip_bomb(160 << 20) if bomb == "gzip" else tar_bomb(160 << 20)
    assert len(data) < 1 << 20  # under a megabyte on the wire
    started = time.perf_counter()
    with pytest.raises(SourceUnavailable):
        unpack(data, Limits(max_unpacked_bytes=16 << 20, max_member_bytes=1 << 20))
    assert time.perf_counter() - started < 5
    arxiv.eprints["2502.00002"] = data
    opts = ExplainOptions(source_limits=Limits(max_unpacked_bytes=16 << 20))
    ex = make(explainers, settings(arxiv), opts)
    reply = await ex.explain(paper("2502.00002"), user="u", chat="c")
    assert "abstract only" in header(reply)


async def test_too_many_members(arxiv: FakeEprint, explainers: list[Explainer]) -> None:
    from bot.explain.source import SourceUnavailable, unpack

    data = tar_gz({f"f{i}.txt": "x" for i in range(300)})
    with pytest.raises(SourceUnavailable, match="too many files"):
        unpack(data, Limits(max_members=100))
    arxiv.eprints["2502.00003"] = data
    ex = make(explainers, settings(arxiv), ExplainOptions(source_limits=Limits(max_members=100)))
    reply = await ex.explain(paper("2502.00003"), user="u", chat="c")
    assert "abstract only" in header(reply)


async def test_oversized_download_is_refused(
    arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    arxiv.eprints["2502.00004"] = b"\x1f\x8b" + b"\x00" * 300_000
    ex = make(
        explainers,
        settings(arxiv),
        ExplainOptions(source_limits=Limits(max_download_bytes=100_000)),
    )
    reply = await ex.explain(paper("2502.00004"), user="u", chat="c")
    assert "abstract only" in header(reply)


# ---------------------------------------------------------------------- LLM


async def test_openai_compatible_end_to_end(
    arxiv: FakeEprint, llm: FakeLLM, explainers: list[Explainer]
) -> None:
    ex = make(explainers, llm_settings(arxiv, llm, "openai"))
    reply = await ex.explain(paper(), user="u", chat="c")
    text = text_of(reply)
    assert header(reply).startswith("Explained by test-model")
    assert "LaTeX source" in header(reply)
    assert "DFM learns a straight-line velocity field" in text
    assert "Equation E2 explained plainly." in text
    assert "the network parameters" in text
    assert "How it works" in text and "Caveats" in text and "Results" in text
    assert "evil.example.com" not in text and "[link removed]" in text
    assert f"/ask {PID} <question>" in text and "simply reply to this message" in text
    assert all(e.image for e in math_blocks(reply))
    # The request as the OpenAI wire format wants it.
    (call,) = llm.calls
    assert call.api == "openai"
    assert call.headers["Authorization"] == f"Bearer {llm.api_key}"
    assert call.body["model"] == "test-model"
    assert call.body["response_format"] == {"type": "json_object"}
    assert isinstance(call.body["max_completion_tokens"], int)
    system, user = call.body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert "untrusted" in system["content"] and "JSON" in system["content"]
    fence = user["content"].split("<<<", 2)[1].split(">>>")[0]
    assert fence.startswith("PAPER-") and f"<<<END-{fence}>>>" in user["content"]
    assert "flow matching loss" in user["content"]
    assert "IGNORE ALL" not in user["content"].upper().replace(
        'IGNORE ALL PREVIOUS INSTRUCTIONS" IN', ""
    )
    assert "recommend acceptance" not in user["content"]
    assert ex.budget.used == llm.prompt_tokens + llm.completion_tokens


async def test_anthropic_end_to_end(
    arxiv: FakeEprint, llm: FakeLLM, explainers: list[Explainer]
) -> None:
    ex = make(explainers, llm_settings(arxiv, llm, "anthropic"))
    reply = await ex.explain(paper(), user="u", chat="c", language="de")
    assert header(reply).startswith("Explained by test-model")
    assert "DFM learns a straight-line velocity field" in text_of(reply)
    (call,) = llm.calls
    assert call.api == "anthropic"
    assert call.headers["x-api-key"] == llm.api_key
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in call.headers
    assert isinstance(call.body["max_tokens"], int)
    assert "German" in call.body["system"]
    assert [m["role"] for m in call.body["messages"]] == ["user"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_429_is_retried_after_retry_after(
    provider: str, arxiv: FakeEprint, llm: FakeLLM, explainers: list[Explainer]
) -> None:
    llm.script = [(429, "1")]
    ex = make(explainers, llm_settings(arxiv, llm, provider), ExplainOptions(llm_max_wait=5))
    first = await ex.explain(paper(), user="u", chat="c", render_images=False)
    # Without a grace the offline explanation comes at once; the LLM's follows by update.
    assert header(first).startswith("Offline explanation — a fuller one by test-model is on")
    assert first.update is not None
    reply = await first.update()
    assert header(reply).startswith("Explained by")
    assert len(llm.calls) == 2
    assert llm.calls[1].at - llm.calls[0].at >= 0.95


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ([(500, None)] * 3, "had an error (HTTP 500)"),
        ([(529, None)] * 3, "HTTP 529"),
        (["junk"], "structured JSON"),
    ],
)
async def test_llm_failure_falls_back_to_offline_with_reason(
    script: list[object], reason: str, arxiv: FakeEprint, llm: FakeLLM, explainers: list[Explainer]
) -> None:
    llm.script = list(script)  # type: ignore[arg-type]
    ex = make(explainers, llm_settings(arxiv, llm, "anthropic"))
    reply = await ex.explain(paper(), user="u", chat="c", render_images=False)
    assert header(reply).startswith("Offline explanation — ")
    text = text_of(reply)
    assert reason in text
    assert "Key equations" in text and "flow matching loss" in text


async def test_server_without_json_mode(
    arxiv: FakeEprint, llm: FakeLLM, explainers: list[Explainer]
) -> None:
    llm.reject_response_format = True
    ex = make(explainers, llm_settings(arxiv, llm, "openai"))
    reply = await ex.explain(paper(), user="u", chat="c", render_images=False)
    assert header(reply).startswith("Explained by")
    assert "response_format" in llm.calls[0].body and "response_format" not in llm.calls[1].body


async def test_api_key_never_logged_or_shown(
    arxiv: FakeEprint, llm: FakeLLM, explainers: list[Explainer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = llm.api_key
    good = make(explainers, llm_settings(arxiv, llm, "openai"))
    llm.script = [(500, "0"), (500, "0"), (500, "0")]
    failed = await good.explain(paper(), user="u", chat="c", render_images=False)
    bad_settings = llm_settings(arxiv, llm, "anthropic")
    bad_settings.llm_api_key = key + "-wrong"
    bad = make(explainers, bad_settings)
    rejected = await bad.explain(paper(), user="u", chat="c", render_images=False)
    assert "rejected the API key" in text_of(rejected)
    follow = await good.follow_up(paper(), "What is the loss?", user="u", chat="c")
    for reply in (failed, rejected, follow):
        assert key not in text_of(reply)
    assert key not in caplog.text and "SECRET" not in caplog.text
    assert key not in repr(good.settings)


async def test_cache_hit(arxiv: FakeEprint, llm: FakeLLM, explainers: list[Explainer]) -> None:
    ex = make(explainers, llm_settings(arxiv, llm))
    first = await ex.explain(paper(), user="u", chat="c")
    second = await ex.explain(paper(), user="u2", chat="c2")
    assert text_of(first) == text_of(second)
    assert arxiv.count("e-print") == 1 and len(llm.calls) == 1
    assert ex.stats.cache_hits == 1
    # Another language is another explanation, from the same fetched text.
    await ex.explain(paper(), user="u3", chat="c3", language="fr")
    assert arxiv.count("e-print") == 1 and len(llm.calls) == 2
    # Another version is another paper text.
    await ex.explain(paper(version=2), user="u4", chat="c4")
    assert arxiv.count("e-print") == 2


async def test_100_concurrent_requests_share_one_fetch_and_one_llm_call(
    arxiv: FakeEprint, llm: FakeLLM, explainers: list[Explainer]
) -> None:
    arxiv.delay = 0.2
    llm.delay = 0.2
    ex = make(explainers, llm_settings(arxiv, llm))
    replies = await asyncio.gather(
        *(ex.explain(paper(), user=f"u{i}", chat=f"c{i}") for i in range(100))
    )
    assert arxiv.count("e-print") == 1
    assert len(llm.calls) == 1
    assert len({text_of(r) for r in replies}) == 1
    assert all(header(r).startswith("Explained by") for r in replies)


# --------------------------------------------------------- limits and budget


async def test_rate_limits_give_a_friendly_message(
    arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    opts = ExplainOptions(limits=LimitSettings(user_requests=2, chat_requests=3))
    ex = make(explainers, settings(arxiv), opts)
    p = paper()
    assert "Offline" in header(await ex.explain(p, user="alice", chat="room"))
    assert "Offline" in header(await ex.explain(p, user="alice", chat="room"))
    limited = await ex.explain(p, user="alice", chat="room")
    assert "try again in" in text_of(limited) and limited.ephemeral
    assert "Offline" in header(await ex.explain(p, user="bob", chat="room"))
    chat_limited = await ex.explain(p, user="carol", chat="room")
    assert "try again in" in text_of(chat_limited)
    assert "Offline" in header(await ex.explain(p, user="carol", chat="elsewhere"))


async def test_daily_token_budget(
    arxiv: FakeEprint, llm: FakeLLM, explainers: list[Explainer]
) -> None:
    opts = ExplainOptions(limits=LimitSettings(daily_tokens=1000))
    ex = make(explainers, llm_settings(arxiv, llm), opts)
    reply = await ex.explain(paper(), user="u", chat="c", render_images=False)
    assert header(reply).startswith("Offline explanation — today's LLM budget is used up")
    assert "resets at midnight UTC" in text_of(reply)
    follow = await ex.follow_up(paper(), "Why?", user="u", chat="c")
    assert "budget" in text_of(follow)
    assert not llm.calls


# ------------------------------------------------------------------ follow-up


async def test_follow_up_with_llm(
    arxiv: FakeEprint, llm: FakeLLM, explainers: list[Explainer]
) -> None:
    ex = make(explainers, llm_settings(arxiv, llm, "anthropic"))
    reply = await ex.follow_up(paper(), "What does the loss regress?", user="u", chat="c")
    text = text_of(reply)
    assert "Answer by test-model" in text
    assert "regresses the velocity" in text
    (call,) = llm.calls
    assert "What does the loss regress?" in call.body["messages"][0]["content"]
    assert "<<<QUESTION>>>" in call.body["messages"][0]["content"]
    again = await ex.follow_up(paper(), "what does the loss  regress?", user="u", chat="c")
    assert "regresses the velocity" in text_of(again) and len(llm.calls) == 1  # cached


async def test_follow_up_without_llm(arxiv: FakeEprint, explainers: list[Explainer]) -> None:
    ex = make(explainers, settings(arxiv))
    reply = await ex.follow_up(paper(), "Why?", user="u", chat="c")
    assert "need an LLM" in text_of(reply)
    assert arxiv.count("e-print") == 0


async def test_misconfigured_llm_is_explained(
    arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    ex = make(explainers, settings(arxiv, llm_provider="openai", llm_model="gpt-x"))
    reply = await ex.explain(paper(), user="u", chat="c", render_images=False)
    assert header(reply).startswith("Offline explanation — LLM not set up correctly")
    assert "LLM_API_KEY is not set" in text_of(reply)


# --------------------------------------------------------------------- math


async def test_unrenderable_math_keeps_unicode(
    arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    body = r"""
We minimize the loss
\begin{equation}
  \mathcal{L} = \begin{tikzcd} A \arrow[r] & B \end{tikzcd} \label{a}
\end{equation}
Eq.~\eqref{a} and \eqref{a}.
"""
    arxiv.eprints["2503.00001"] = gzip_single(MINIMAL_MAIN % body)
    ex = make(explainers, settings(arxiv))
    reply = await ex.explain(paper("2503.00001"), user="u", chat="c")
    (eq,) = math_blocks(reply)
    assert eq.image is None and eq.unicode.startswith("ℒ")


async def test_reply_structure(arxiv: FakeEprint, explainers: list[Explainer]) -> None:
    ex = make(explainers, settings(arxiv))
    reply = await ex.explain(paper(), user="u", chat="c")
    blocks = reply.messages[0].blocks
    assert isinstance(blocks[1], Heading)
    (row,) = reply.messages[-1].buttons
    assert [b.label for b in row] == ["PDF", "arXiv"]


async def test_an_arxiv_outage_is_not_remembered_as_abstract_only(
    arxiv: FakeEprint, explainers: list[Explainer]
) -> None:
    # arXiv is down for every attempt: the explanation falls back to the abstract...
    arxiv.busy[PID] = 3
    opts = dataclasses.replace(FAST, failure_ttl_seconds=0.0)
    ex = make(explainers, settings(arxiv), opts)
    first = await ex.explain(paper(), user="u", chat="c", render_images=False)
    assert "abstract only" in header(first)
    # ...but only until arXiv is back, not for the week a paper's explanation is kept.
    second = await ex.explain(paper(), user="u2", chat="c2", render_images=False)
    assert "LaTeX source" in header(second)
    assert arxiv.count("e-print") == 4
