from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.doc import (
    Bold,
    Code,
    Inline,
    Italic,
    Link,
    ListBlock,
    Math,
    Paragraph,
    Text,
    b,
    bullets,
    code,
    i,
    joined,
    link,
    p,
    plain,
    section,
)
from bot.latex import clean_text, latex_to_unicode, rich_inlines

# ------------------------------------------------------------ latex_to_unicode


@pytest.mark.parametrize(
    ("latex", "expected"),
    [
        (r"\alpha x^2 x_i \mathcal{L} \frac{a}{b}", "α x² xᵢ ℒ a/b"),
        (r"\sqrt{x}", "√x"),
        (r"\sqrt{x+1}", "√(x+1)"),
        (r"\sqrt[3]{x}", "∛x"),
        (r"\sqrt[n]{x}", "ⁿ√x"),
        (r"\mathbb{R}^n", "ℝⁿ"),
        (r"\mathbb{E}", "𝔼"),
        (r"\hat{x}", "x̂"),
        (r"\bar{x}", "x̄"),
        (r"\tilde{O}(\sqrt{T})", "Õ(√T)"),
        (r"\vec{v}", "v⃗"),
        (r"a \leq b \geq c \neq d", "a ≤ b ≥ c ≠ d"),
        (r"f: X \to Y", "f: X → Y"),
        (r"\infty", "∞"),
        (r"\sum_{i=1}^{n} x_i", "∑ᵢ₌₁ⁿ xᵢ"),
        (r"\prod_{k} a_k", "∏ₖ aₖ"),
        (r"\int_0^\infty e^{-x} dx", "∫₀^∞ e⁻ˣ dx"),
        (r"x^{2n}", "x²ⁿ"),
        (r"x^{q+1}", "x^(q+1)"),
        (r"x^q", "x^q"),
        (r"x_{ij}", "xᵢⱼ"),
        (r"x_{i,j}", "x_(i,j)"),
        (r"y_\theta", "y_θ"),
        (r"x_i^2", "xᵢ²"),
        (r"x ^ {2}", "x²"),
        (r"W^\top x", "Wᵀ x"),
        (r"f'(x)", "f′(x)"),
        (r"\frac{a+b}{c}", "(a+b)/c"),
        (r"\frac{1}{2}", "1/2"),
        (r"\dfrac{n(n+1)}{2}", "(n(n+1))/2"),
        (r"\tfrac12", "1/2"),
        (r"\frac{\alpha}{\beta}", "α/β"),
        (r"\binom{n}{k}", "C(n, k)"),
        (r"\text{if } x > 0", "if x > 0"),
        (r"\mathrm{d}x", "dx"),
        (r"\operatorname{softmax}(QK^\top/\sqrt{d_k})", "softmax(QKᵀ/√dₖ)"),
        (r"\left( \frac{a}{b} \right)", "(a/b)"),
        (r"\left. f \right|_{x=0}", "f |ₓ₌₀"),
        (r"\bigl[ x \bigr]", "[x]"),
        (r"\|x\|_2", "‖x‖₂"),
        (r"\{1, \dots, n\}", "{1, …, n}"),
        (r"\mathcal{O}(n \log n)", "𝒪(n log n)"),
        (r"\mathbf{W}", "𝐖"),
        (r"\mathcal{L}_{\text{CE}}", "ℒ_CE"),
        (r"\ell_1", "ℓ₁"),
        (r"a \cdot b \times c", "a · b × c"),
        (r"\forall x \exists y", "∀ x ∃ y"),
        (r"x \in \mathbb{N}", "x ∈ ℕ"),
        (r"\Theta(n^2)", "Θ(n²)"),
        (r"\lambda_{\max}", "λₘₐₓ"),
        (r"\lambda_{\min}", "λₘᵢₙ"),
        (r"x_{\text{big}}", "x_big"),
        (r"\textcolor{red}{x}", "x"),
        (r"x \label{eq:1}", "x"),
    ],
)
def test_latex_to_unicode(latex: str, expected: str) -> None:
    assert latex_to_unicode(latex) == expected


def test_unknown_commands_stay_readable() -> None:
    assert latex_to_unicode(r"\foo") == "foo"
    assert latex_to_unicode(r"\myop{x}{y} + 1") == "myop(x, y) + 1"


@pytest.mark.parametrize(
    "latex",
    ["", "x^", "x_", "{", "}", "{{{", "}}}", "\\", "\\frac", "\\frac{a}", "\\sqrt[",
     "\\left", "\\begin{", "^^^", "_{_{_{", "\\text{", "\\mathcal{", "a & b \\\\ c"],
)  # fmt: skip
def test_latex_to_unicode_survives_broken_input(latex: str) -> None:
    assert isinstance(latex_to_unicode(latex), str)


def test_latex_to_unicode_keeps_what_it_can_of_broken_input() -> None:
    assert latex_to_unicode("x^") == "x^"
    assert latex_to_unicode("}}a{b") == "ab"
    assert latex_to_unicode("\\frac{a}") == "a/"


# ------------------------------------------------------------------ rich_inlines


def test_math_spans_become_math_nodes() -> None:
    nodes = rich_inlines(r"Scaling $\alpha$-stable laws with \(x_i\), $$E=mc^2$$ and \[a^2\]")
    assert nodes == (
        Text("Scaling "),
        Math(r"\alpha", "α"),
        Text("-stable laws with "),
        Math("x_i", "xᵢ"),
        Text(", "),
        Math("E=mc^2", "E=mc²"),
        Text(" and "),
        Math("a^2", "a²"),
    )


def test_text_mode_markup() -> None:
    nodes = rich_inlines(
        r"A \textbf{bold $x^2$ claim} and \emph{an aside}, {\bf grouped} {\it too}"
    )
    assert nodes == (
        Text("A "),
        Bold((Text("bold "), Math("x^2", "x²"), Text(" claim"))),
        Text(" and "),
        Italic((Text("an aside"),)),
        Text(", "),
        Bold((Text("grouped"),)),
        Text(" "),
        Italic((Text("too"),)),
    )


def test_links() -> None:
    assert rich_inlines(r"Code: \url{https://github.com/a/b\_c}") == (
        Text("Code: "),
        Link("https://github.com/a/b_c", "https://github.com/a/b_c"),
    )
    assert rich_inlines(r"\href{https://example.org/x?a=1&b=2}{our site}") == (
        Link("our site", "https://example.org/x?a=1&b=2"),
    )


def test_unsafe_links_are_reduced_to_their_text() -> None:
    assert rich_inlines(r"\href{javascript:alert(1)}{click}") == (Text("click"),)
    assert rich_inlines(r"\url{data:text/html,hi}") == (Text("data:text/html,hi"),)


def test_texttt_is_code() -> None:
    assert rich_inlines(r"run \texttt{pip install x}") == (Text("run "), Code("pip install x"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"50\% of A \& B use x\_y and \#1", "50% of A & B use x_y and #1"),
        ("50% of runs", "50% of runs"),  # a bare % is text here, not a comment
        ("a~b", "a b"),
        ("pages 1--10 --- roughly", "pages 1–10 — roughly"),
        ("``quoted'' text", "“quoted” text"),
        ("a `code` span", "a `code` span"),  # markdown backticks outnumber `quotes'
        ("it's fine", "it's fine"),
        (r"Schr\"odinger", "Schrödinger"),
        (r"G\"{o}del and {\"o}", "Gödel and ö"),
        (r"\'{e}t\'e \`a la", "été à la"),
        (r"Fran\c{c}ais, \v{S}ik, Erd\H{o}s, \~nand\'u", "Français, Šik, Erdős, ñandú"),
        (r"na\"{\i}ve", "naïve"),
        (r"Stra\ss{}e, \o, \aa, \AE", "Straße, ø, å, Æ"),
        (r"costs \$5", "costs $5"),
        ("costs $5 and $10", "costs $5 and $10"),
        ("a $ lone dollar", "a $ lone dollar"),
        ("unclosed $x + y", "unclosed $x + y"),
        ("  lots\n\n of \t space  ", "lots of space"),
        ("{Bayesian} {N}etworks", "Bayesian Networks"),
        (r"\LaTeX{} rocks", "LaTeX rocks"),
        (r"Deep {\em Residual} Learning", "Deep Residual Learning"),
        (r"\textbf{never closed", "never closed"),
        (r"stray } brace", "stray brace"),
        (r"x $O(n^2)$ vs O(n^2)", "x O(n²) vs O(n^2)"),
        (r"\begin{equation} E = mc^2 \end{equation} holds", "E = mc² holds"),
        (r"\unknowncmd and \foo{bar}", "unknowncmd and foo(bar)"),
        ("", ""),
    ],
)
def test_clean_text(text: str, expected: str) -> None:
    assert clean_text(text) == expected


def test_hostile_characters_pass_through_raw() -> None:
    # Escaping belongs to the renderers; the model holds raw text.
    text = "<b>x</b> & <script>alert('*_`')</script> a_b*c"
    assert clean_text(text) == text


def test_math_latex_keeps_the_source() -> None:
    (node,) = rich_inlines("$a <  b \n & c$")
    assert isinstance(node, Math)
    assert node.latex == "a < b & c"
    assert node.unicode == "a < b c"


def test_whitespace_never_doubles_across_nodes() -> None:
    text = clean_text(r"a  \textbf{ b }  c \emph{ } d $x$  e")
    assert text == "a b c d x e"


# ---------------------------------------------------------------- hostile & big


@pytest.mark.parametrize(
    "text",
    [
        "{" * 100_000,
        "}" * 100_000,
        "$" * 100_000,
        "$a $a " * 16_000,
        "\\" * 100_000,
        '\\"' * 50_000,
        "\\textbf" * 14_000,
        "\\text{$" * 14_000,
        "{\\bf " * 20_000,
        "$" + "\\frac{" * 300 + "x$",
        "$x" + "^" * 1_900 + "$",
        "\\begin{equation}" * 6_000,
    ],
    ids=lambda t: repr(t[:12]),
)
def test_hostile_input_is_fast_and_never_raises(text: str) -> None:
    start = time.perf_counter()
    result = clean_text(text)
    assert isinstance(result, str)
    assert time.perf_counter() - start < 2.0


def test_large_abstract_is_fast() -> None:
    sentence = (
        r"We minimise $\mathcal{L}(\theta) = \sum_{i=1}^{n} \ell(f_\theta(x_i), y_i)$ "
        r"over \textbf{all} $\theta \in \mathbb{R}^d$, improving 50\% on \emph{prior} work. "
    )
    text = sentence * (100_000 // len(sentence) + 1)
    start = time.perf_counter()
    result = clean_text(text)
    elapsed = time.perf_counter() - start
    # A linear pass takes well under a second; the bound is loose for a busy machine and
    # still catches a quadratic one (minutes on 100 kB).
    assert elapsed < 8
    assert result.startswith(
        "We minimise ℒ(θ) = ∑ᵢ₌₁ⁿ ℓ(f_θ(xᵢ), yᵢ) over all θ ∈ ℝᵈ, improving 50%"
    )
    assert "$" not in result


def test_nesting_deeper_than_the_limit_keeps_text() -> None:
    text = "{" * 200 + "deep" + "}" * 200 + " end"
    assert clean_text(text).endswith("end")
    assert isinstance(latex_to_unicode("x^{" * 500 + "2" + "}" * 500), str)


# ------------------------------------------------------------------- properties


@settings(max_examples=300)
@given(st.text())
def test_never_raises_on_arbitrary_text(text: str) -> None:
    nodes = rich_inlines(text)
    assert all(isinstance(n, Text | Bold | Italic | Code | Link | Math) for n in nodes)
    assert isinstance(latex_to_unicode(text), str)
    result = clean_text(text)
    assert "  " not in result and result == result.strip()


@given(st.text(alphabet=st.sampled_from("\\{}$^_[]()`'~-%&#ab1 \n")))
def test_never_raises_on_latex_heavy_text(text: str) -> None:
    assert isinstance(clean_text(text), str)
    assert isinstance(latex_to_unicode(text), str)


prose = st.text(
    alphabet=st.characters(exclude_characters="$\\"),
    max_size=40,
)
math_body = st.builds(
    lambda a, mid, b: a + mid + b,
    st.sampled_from(["x", "\\alpha", "a", "\\frac{1}{2}", "f(x)", "{y}"]),
    st.text(alphabet=st.sampled_from("abcxyz0123+-=^_{}() <>&*"), max_size=20),
    st.sampled_from(["x", "2", "\\beta", ")", "}", "n"]),
)


@given(st.lists(st.tuples(prose, math_body), min_size=1, max_size=5), prose)
def test_math_delimiters_never_leak_into_plain_text(
    pairs: list[tuple[str, str]], tail: str
) -> None:
    # Each span is closed by a `$` with a non-space before it and a space after it,
    # so every one of them is math and no `$` may survive into the plain text.
    text = "".join(f"{before} ${body}$ " for before, body in pairs) + tail
    nodes = rich_inlines(text)
    assert "$" not in plain(nodes)
    maths = [n for n in _walk(nodes) if isinstance(n, Math)]
    assert len(maths) == len(pairs)


def _walk(nodes: tuple[Inline, ...]) -> list[Inline]:
    out: list[Inline] = []
    for node in nodes:
        out.append(node)
        if isinstance(node, Bold | Italic):
            out.extend(_walk(node.children))
    return out


@given(st.text(alphabet=st.characters(exclude_characters="\\{}$~`'-%")))
def test_plain_prose_is_only_whitespace_collapsed(text: str) -> None:
    assert clean_text(text) == " ".join(text.split())


def test_math_that_renders_to_nothing_leaves_no_gap() -> None:
    assert rich_inlines(r"a $\label{x}$ b") == (Text("a b"),)
    assert clean_text(r"end $\label{x}$") == "end"
    assert clean_text(r"\texttt{} x") == "x"


# ------------------------------------------------------------------- builders


def test_builders_make_the_same_nodes_as_written_out() -> None:
    assert p("Try ", code("/help"), ".") == Paragraph((Text("Try "), Code("/help"), Text(".")))
    assert p(b("Commands")) == section("Commands") == Paragraph((Bold((Text("Commands"),)),))
    assert p(i("Why: ", link("abs", "https://arxiv.org/abs/1"))) == Paragraph(
        (Italic((Text("Why: "), Link("abs", "https://arxiv.org/abs/1"))),)
    )
    assert joined([code("a"), code("b"), code("c")], ", ") == (
        Code("a"), ", ", Code("b"), ", ", Code("c"),
    )  # fmt: skip
    assert joined([], ", ") == ()
    assert bullets("one", (code("two"), " more")) == ListBlock(
        ((Text("one"),), (Code("two"), Text(" more")))
    )
