"""Equation images: both engines on the constructs real papers use, the fallback chain,
and hostile input to TeX. TeX tests skip when latex/dvipng are not installed."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time

import pytest
from PIL import Image

from bot.explain import mathtext_engine, render, tex_engine
from bot.explain.reply import EquationView
from bot.latex import display_unicode

needs_tex = pytest.mark.skipif(
    not tex_engine.tex_available(), reason="latex and dvipng are not installed (apt: see .ci/run)"
)

# Constructs the mathtext renderer used to refuse (issue 10), as papers write them.
CONSTRUCTS = [
    r"a \le b \ge c \ne d",
    r"\textmd{rate} = \text{tokens per second}",
    r"x = \begin{pmatrix} a & b \\ c & d \end{pmatrix} \begin{bmatrix} w \\ x \\ y \end{bmatrix}",
    r"f(x) = \begin{cases} x & \text{if } x > 0 \\ 0 & \text{otherwise} \end{cases}",
    r"\left( \frac{a}{b} \right. \\ \left. + c \right)",
    r"\big( x \big) + \Big[ y \Big] + \bigg\{ z \bigg\}",
    r"a \hspace{1cm} b",
    r"A \xrightarrow{f} B \xleftarrow[g]{h} C",
    r"E = mc^2 \tag{3}",
    r"\frac12 + \tfrac{1}{3} + \dfrac{x}{y}",
    r"\ket{\psi} = \qty(\frac{1}{2}) \dv{f}{x}",
    r"\operatorname*{arg\,min}_{\theta} \mathcal{L}(\theta) \coloneqq \lVert x \rVert_2^2",
]


def _is_png(data: bytes | None) -> bool:
    return data is not None and data.startswith(b"\x89PNG")


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    render._CACHE.clear()


@pytest.mark.parametrize("latex", CONSTRUCTS)
def test_mathtext_draws_what_papers_write(latex: str) -> None:
    assert _is_png(render.render_png(latex, engine="mathtext")), mathtext_engine.for_mathtext(latex)


@needs_tex
@pytest.mark.parametrize("latex", CONSTRUCTS)
def test_tex_draws_what_papers_write(latex: str) -> None:
    assert _is_png(render.render_png(latex, engine="tex"))


def test_rows_split_only_at_the_top_level() -> None:
    rows = mathtext_engine.split_top_rows(
        r"A = \begin{pmatrix} a & b \\ c & d \end{pmatrix} \\ \frac{x}{y \\ z} \\[2pt] B = 1"
    )
    assert rows == [
        r"A = \begin{pmatrix} a & b \\ c & d \end{pmatrix}",
        r"\frac{x}{y \\ z}",
        "B = 1",
    ]


def test_mathtext_stacks_a_matrix_inside_one_row() -> None:
    [row] = mathtext_engine.for_mathtext(r"M = \begin{pmatrix} a & b \\ c & d \end{pmatrix}")
    assert r"\genfrac" in row and r"\left(" in row and r"\right)" in row
    # The text keeps its spaces (\text, not \mathrm).
    [text_row] = mathtext_engine.for_mathtext(r"\textmd{a b}")
    assert text_row == r"\text{a b}"


def test_two_rows_make_a_taller_image_than_one() -> None:
    one = render.render_png(r"a = b", engine="mathtext")
    two = render.render_png(r"a = b \\ c = d", engine="mathtext")
    assert one and two
    h1 = Image.open(io.BytesIO(one)).height
    h2 = Image.open(io.BytesIO(two)).height
    assert h2 > h1 * 1.5


def test_fallback_to_mathtext_when_tex_binary_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        tex_engine, "_tex_tools", lambda: ("/nonexistent/latex", "/nonexistent/dvipng")
    )
    images = render.render_many([r"a \le b"], engine="auto")
    assert _is_png(images[r"a \le b"])


def test_fallback_to_mathtext_when_tex_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tex_engine, "_tex_tools", lambda: None)
    assert not tex_engine.tex_available()
    assert tex_engine.render_tex([r"a = b"]) == {r"a = b": None}
    assert _is_png(render.render_png(r"a = b"))


@needs_tex
def test_fallback_to_mathtext_when_tex_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        tex_engine, "TEX", dataclasses.replace(tex_engine.TEX, timeout=0.001, per_equation=0)
    )
    started = time.monotonic()
    images = render.render_many([r"x^2 + y^2", r"a \ge b"], engine="auto")
    assert all(_is_png(v) for v in images.values())
    assert time.monotonic() - started < 10


HOSTILE = [
    r"\input{/etc/passwd}",
    r"\immediate\write18{touch /tmp/pwned}",
    r"\def\a{\a\a}\a",
    r"\csname input\endcsname{/etc/passwd}",
    r"^^5cinput{/etc/passwd}",
    r"\catcode`\^^@=11",
    r"x } \end{gathered}$} \input{/etc/passwd} {",
    r"\begin{document} x",
    r"a \end",
    r"\newcommand{\x}{y} \x",
    r"\openout1=owned.tex",
]


@pytest.mark.parametrize("latex", HOSTILE)
def test_hostile_equations_are_refused_before_tex(latex: str) -> None:
    assert not tex_engine.tex_safe(latex)
    assert tex_engine.render_tex([latex]) == {latex: None}


@needs_tex
def test_tex_sandbox_refuses_file_reads_even_when_asked_directly() -> None:
    # Past tex_safe, kpathsea's paranoid mode still keeps TeX out of absolute paths.
    started = time.monotonic()
    got = tex_engine._tex_batch([r"\text{\input{/etc/passwd}}"], "", 5.0)
    assert got.get(0) is None
    assert time.monotonic() - started < 6


@needs_tex
def test_tex_sandbox_stops_an_endless_loop_in_time() -> None:
    # Past tex_safe, a macro bomb ends in TeX's own capacity error or at the time limit.
    started = time.monotonic()
    with contextlib.suppress(tex_engine.TexFailed):
        assert tex_engine._tex_batch([r"\def\a{\a\a}\a"], "", 1.5).get(0) is None
    assert time.monotonic() - started < 4


@needs_tex
def test_tex_refuses_a_giant_box() -> None:
    assert tex_engine.render_tex([r"\rule{2000cm}{1cm}"]) == {r"\rule{2000cm}{1cm}": None}


def test_safe_macros_keep_simple_math_and_drop_dangerous_ones() -> None:
    defs = (
        r"\newcommand{\R}{\mathbb{R}}"
        r"\newcommand{\norm}[1]{\left\lVert #1 \right\rVert}"
        r"\DeclareMathOperator{\Tr}{Tr}"
        r"\newcommand{\evil}{\input{/etc/passwd}}"
        r"\def\loopy{\loopy\loopy}"
        r"\newcommand{\typeout}{x}"
    )
    out = tex_engine.safe_macros(defs)
    assert r"\renewcommand{\R}{\mathbb{R}}" in out
    assert r"\renewcommand{\norm}[1]" in out
    assert r"\Tr" in out
    assert "/etc/passwd" not in out and "\\input" not in out
    assert "loopy" not in out and "typeout" not in out


@needs_tex
def test_safe_macros_reach_tex() -> None:
    macros = tex_engine.safe_macros(r"\newcommand{\vx}{\mathbf{x}}")
    assert _is_png(
        render.render_many([r"\vx^\top \vx"], engine="tex", macros=macros)[r"\vx^\top \vx"]
    )


def test_unicode_fallback_keeps_a_matrix_on_one_line() -> None:
    assert display_unicode(r"\begin{bmatrix} w \\ x \\ y \\ z \end{bmatrix}") == "[w, x, y, z]ᵀ"
    assert display_unicode(r"\begin{pmatrix} a & b \\ c & d \end{pmatrix}") == "(a, b; c, d)"
    assert display_unicode(r"\max_S f(S) = \frac{1}{12N}") == "max_S f(S) = 1/(12N)"
    cases = display_unicode(
        r"f(x) = \begin{cases} x & \text{if } x > 0 \\ 0 & \text{otherwise} \end{cases}"
    )
    assert "\n" not in cases and cases == "f(x) = {x if x > 0; 0 otherwise}"


def test_equation_view_unicode_splits_only_top_level_rows() -> None:
    view = EquationView("E1", r"A = \begin{pmatrix} a & b \\ c & d \end{pmatrix} \\ B = 1", "1")
    assert view.unicode == "A = (a, b; c, d)\nB = 1"


def test_normalize_reads_package_and_macro_leftovers_for_every_reader() -> None:
    from bot.explain.mathfix import normalize

    assert normalize(r"\qty(\frac{a}{b}) + \abs*{x} + \uptheta") == (
        r"\left(\frac{a}{b}\right) + \left|{x}\right| + \theta"
    )
    assert normalize(r"\dv{f}{x} = \pdv[2]{g}{y}") == (
        r"\frac{\mathrm{d} f}{\mathrm{d} x} = \frac{\partial^{2} g}{\partial y^{2}}"
    )
    assert normalize(r"a = b \hskip\fontdimen3\font \eqref{eq:1}").strip() == "a = b"
    view = EquationView("E1", r"Y(\uptheta) = \floor*{n} \ ", "1")
    assert view.unicode == "Y(θ) = ⌊n⌋"
    assert (
        normalize(r"\Ket{\psi} = \bra{0}") == r"\left|{\psi}\right\rangle = \left\langle{0}\right|"
    )
