"""Equations drawn by matplotlib's mathtext (embedded, no TeX needed): `for_mathtext`
rewrites what mathtext lacks (matrices and cases as stacked rows, `\\le`, `\\big`, ...),
each top-level row is drawn and the rows are stacked into one PNG."""

from __future__ import annotations

import io
import logging
import re
import threading

from PIL import Image

from bot.explain import latex as latex_mod
from bot.explain.mathfix import normalize
from bot.latex import split_display_rows as split_top_rows

log = logging.getLogger(__name__)

# mathtext's parser and font caches are shared state; one render at a time is plenty.
_LOCK = threading.Lock()


# Commands mathtext lacks, mapped to ones it has (or dropped when purely cosmetic).
_REWRITES: list[tuple[str, str]] = [
    (r"\\(?:label|tag\*?)\s*\{[^{}]*\}", ""),
    (r"\\(?:nonumber|notag|qedhere)(?![A-Za-z])", ""),
    # Old font switches: {\rm orb}, {\cal I}, and \mathcal I without braces.
    (r"\{\s*\\(rm|bf|it|sf|tt)\s+([^{}]*)\}", r"{\\math\1{\2}}"),
    (r"\{\s*\\cal\s+([^{}]*)\}", r"{\\mathcal{\1}}"),
    (
        r"\\(mathcal|mathbb|mathbf|mathrm|mathfrak|mathsf|mathit|mathscr)\s+([A-Za-z0-9])",
        r"\\\1{\2}",
    ),
    (r"\\hskip\s*\\fontdimen\d\\font", r"\\ "),
    (r"\\(?:hskip|kern|mkern|hspace\*?)\s*-?[\d.]+\s*(?:pt|em|ex|mu|cm|mm|in)", r"\\ "),
    (r"\\degr(?![A-Za-z])", r"^\\circ"),
    (r"\\displaylimits(?![A-Za-z])", ""),
    (r"\\(?:boldsymbol|bm|mathbold|pmb)(?![A-Za-z])", r"\\mathbf"),
    (r"\\(?:mathbbm|mathds)(?![A-Za-z])", r"\\mathbb"),
    (r"\\(?:dfrac|tfrac|cfrac)(?![A-Za-z])", r"\\frac"),
    (r"\\(?:dbinom|tbinom)(?![A-Za-z])", r"\\binom"),
    (r"\\(?:lVert|rVert)(?![A-Za-z])", r"\\Vert"),
    (r"\\(?:lvert|rvert)(?![A-Za-z])", r"|"),
    (r"\\lbrack(?![A-Za-z])", r"["),
    (r"\\rbrack(?![A-Za-z])", r"]"),
    (r"\\coloneqq(?![A-Za-z])", r":="),
    (r"\\eqqcolon(?![A-Za-z])", r"=:"),
    (r"\\vcentcolon(?![A-Za-z])", r":"),
    (r"\\triangleq(?![A-Za-z])", r"\\equiv"),
    (r"\\le(?![A-Za-z])", r"\\leq"),
    (r"\\ge(?![A-Za-z])", r"\\geq"),
    (r"\\ne(?![A-Za-z])", r"\\neq"),
    (r"\\land(?![A-Za-z])", r"\\wedge"),
    (r"\\lor(?![A-Za-z])", r"\\vee"),
    (r"\\lnot(?![A-Za-z])", r"\\neg"),
    (r"\\implies(?![A-Za-z])", r"\\Longrightarrow"),
    (r"\\impliedby(?![A-Za-z])", r"\\Longleftarrow"),
    (r"\\iff(?![A-Za-z])", r"\\Longleftrightarrow"),
    (r"\\(?:square|Box)(?![A-Za-z])", r"\\boxdot"),
    (r"\\dots[bcmio](?![A-Za-z])", r"\\ldots"),
    (r"\\llbracket(?![A-Za-z])", r"[["),
    (r"\\rrbracket(?![A-Za-z])", r"]]"),
    (r"\\&", r"\\text{&}"),
    # Sizing: mathtext sizes \left…\right itself and has no \big family.
    (r"\\(?:big|Big|bigg|Bigg)[lrm]?(?![A-Za-z])", ""),
    (r"\\(?:left|right)(?=\s*\\?[.])\s*\\?\.", ""),
    (r"\\(?:textmd|textup|textrm|textnormal|textsf|mbox|hbox)(?![A-Za-z])", r"\\text"),
    (r"\\textbf(?![A-Za-z])", r"\\mathbf"),
    (r"\\(?:textit|emph)(?![A-Za-z])", r"\\mathit"),
    (r"\\(?:operatorname\*?)(?![A-Za-z])", r"\\operatorname"),
    (r"\\intercal(?![A-Za-z])", r"T"),
    (r"\\top(?![A-Za-z])", r"T"),
    (
        r"\\(?:limits|nolimits|displaystyle|textstyle|scriptstyle|scriptscriptstyle|"
        r"mathstrut|strut|allowbreak|middle)(?![A-Za-z])",
        "",
    ),
    (r"\\(?:,|;|:|>)", r"\\ "),
    (r"\\!", ""),
    (r"~", r"\\ "),
    (r"\\(?:qquad|quad)(?![A-Za-z])", r"\\ \\ "),
    (r"\\(?:mathcal|mathscr)\s*\{\s*\}", ""),
    (r"\\(?:hat|tilde|bar|vec)\s*\{\s*\}", ""),
]
_COMPILED = [(re.compile(p), r) for p, r in _REWRITES]

# Commands whose arguments are rearranged: name -> (argument count, template).
_ARG_REWRITES: dict[str, tuple[int, str]] = {
    "xrightarrow": (1, r"\overset{{{0}}}{{\longrightarrow}}"),
    "xleftarrow": (1, r"\overset{{{0}}}{{\longleftarrow}}"),
    "xmapsto": (1, r"\overset{{{0}}}{{\longmapsto}}"),
    "xLeftrightarrow": (1, r"\overset{{{0}}}{{\Longleftrightarrow}}"),
    "xRightarrow": (1, r"\overset{{{0}}}{{\Longrightarrow}}"),
    "stackrel": (2, r"\overset{{{0}}}{{{1}}}"),
    "frac": (2, r"\frac{{{0}}}{{{1}}}"),
    "binom": (2, r"\binom{{{0}}}{{{1}}}"),
    "boxed": (1, "{{{0}}}"),
    "fbox": (1, "{{{0}}}"),
    "cancel": (1, "{{{0}}}"),
    "bcancel": (1, "{{{0}}}"),
    "smash": (1, "{{{0}}}"),
    "mathop": (1, "{{{0}}}"),
    "mathbin": (1, "{{{0}}}"),
    "mathrel": (1, "{{{0}}}"),
    "mathord": (1, "{{{0}}}"),
    "mathpunct": (1, "{{{0}}}"),
    "ensuremath": (1, "{{{0}}}"),
    "textcolor": (2, "{{{1}}}"),
    "colorbox": (2, "{{{1}}}"),
    "color": (1, ""),
    "hspace": (1, r"\ "),
    "hspace*": (1, r"\ "),
    "vspace": (1, ""),
    "vspace*": (1, ""),
    "vphantom": (1, ""),
    "intertext": (1, r"\text{{{0}}}\ \ "),
    "shortintertext": (1, r"\text{{{0}}}\ \ "),
    "ket": (1, r"|{0}\rangle"),
    "bra": (1, r"\langle {0}|"),
    "braket": (1, r"\langle {0}\rangle"),
    "abs": (1, r"|{0}|"),
    "norm": (1, r"\Vert {0}\Vert"),
    "substack": (1, "{0}"),
    "underbrace": (1, "{{{0}}}"),
    "overbrace": (1, "{{{0}}}"),
}
_ARG_COMMAND = re.compile(
    r"\\(" + "|".join(re.escape(k) for k in sorted(_ARG_REWRITES, key=len, reverse=True)) + r")"
    r"(?![A-Za-z])"
)

# Array-like environments: (left delimiter, right delimiter, cell separator).
_STACKS: dict[str, tuple[str, str, str]] = {
    "matrix": ("", "", r"\ \ \ "),
    "smallmatrix": ("", "", r"\ \ "),
    "array": ("", "", r"\ \ \ "),
    "subarray": ("", "", r"\ "),
    "pmatrix": (r"\left(", r"\right)", r"\ \ \ "),
    "bmatrix": (r"\left[", r"\right]", r"\ \ \ "),
    "Bmatrix": (r"\left\{", r"\right\}", r"\ \ \ "),
    "vmatrix": (r"\left|", r"\right|", r"\ \ \ "),
    "Vmatrix": (r"\left\Vert", r"\right\Vert", r"\ \ \ "),
    "cases": (r"\left\{", r"\right.", r"\ \ "),
    "dcases": (r"\left\{", r"\right.", r"\ \ "),
    "rcases": (r"\left.", r"\right\}", r"\ \ "),
    "aligned": ("", "", " "),
    "alignedat": ("", "", " "),
    "gathered": ("", "", " "),
    "split": ("", "", " "),
    "multlined": ("", "", " "),
}
_INNER_ENV = re.compile(
    r"\\begin\s*\{(\w+\*?)\}((?:(?!\\begin\s*\{)(?!\\end\s*\{).)*?)\\end\s*\{\1\}", re.S
)


def _stack(rows: list[str]) -> str:
    """Rows one above the other, as nested zero-rule fractions (mathtext has no arrays)."""
    if len(rows) == 1:
        return "{" + rows[0] + "}"
    half = (len(rows) + 1) // 2
    return r"\genfrac{}{}{0}{0}{" + _stack(rows[:half]) + "}{" + _stack(rows[half:]) + "}"


def _env_rewrite(m: re.Match[str]) -> str:
    name, content = m.group(1).rstrip("*"), m.group(2)
    spec = _STACKS.get(name)
    if spec is None:
        return m.group(0)  # unknown: mathtext will refuse it, and the Unicode form stays
    left, right, sep = spec
    if name in ("array", "subarray", "alignedat"):
        g = latex_mod.read_group(content, 0)
        if g is not None and content.lstrip().startswith("{"):
            content = content[g[1] :]
    elif content.lstrip().startswith("["):  # [t], [c]: vertical placement
        g = latex_mod.read_group(content, 0, "[", "]")
        if g is not None:
            content = content[g[1] :]
    rows = [sep.join(c.strip() for c in _split_cells(r)) for r in split_top_rows(content)]
    rows = [r for r in rows if r.strip()] or [""]
    return f"{left}{_stack(rows)}{right}" if left or right else _stack(rows)


def _split_cells(row: str) -> list[str]:
    cells, depth, start = [], 0, 0
    for i, c in enumerate(row):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "&" and depth == 0 and (i == 0 or row[i - 1] != "\\"):
            cells.append(row[start:i])
            start = i + 1
    cells.append(row[start:])
    return cells


def _rewrite_args(s: str) -> str:
    """`\\xrightarrow{f}` -> `\\overset{f}{\\longrightarrow}` and the like, left to right
    (arguments are copied as they are and rewritten when the scan reaches them)."""
    pos = 0
    for _ in range(2000):  # bounded: hostile input cannot make this quadratic forever
        m = _ARG_COMMAND.search(s, pos)
        if m is None:
            break
        name = m.group(1)
        count, template = _ARG_REWRITES[name]
        i = m.end()
        below = ""
        if name.startswith("x") and s[i:].lstrip().startswith("["):
            opt = latex_mod.read_group(s, i, "[", "]")
            if opt is not None:
                below, i = opt[0], opt[1]
        args: list[str] = []
        for _k in range(count):
            a = latex_mod.read_arg(s, i)
            if a is None:
                break
            args.append(a[0].strip())
            i = a[1]
        if len(args) < count:
            s = s[: m.start()] + s[m.end() :]  # argument missing: drop the command
            pos = m.start()
            continue
        out = template.format(*args)
        if below:
            out = r"\underset{" + below + "}{" + out + "}"
        s = s[: m.start()] + out + s[i:]
        pos = m.start() + 1
    return s


def _balance_delimiters(row: str) -> str:
    """A `\\left` without its `\\right` in this row (or the reverse) gets an invisible one."""
    lefts = len(re.findall(r"\\left(?![A-Za-z])", row))
    rights = len(re.findall(r"\\right(?![A-Za-z])", row))
    if lefts > rights:
        row += r"\right." * (lefts - rights)
    elif rights > lefts:
        row = r"\left." * (rights - lefts) + row
    return row


def _text_math(s: str) -> str:
    """`\\text{if $x>0$}` -> `\\text{if }x>0`: mathtext's \\text holds no math of its own
    (and no size switches)."""
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\\text\s*(?=\{)", s):
        if m.start() < pos:
            continue
        g = latex_mod.read_group(s, m.end())
        if g is None or "$" not in g[0]:
            continue
        parts = re.split(r"(?<!\\)\$", g[0])
        pieces = []
        for i, part in enumerate(parts):
            if i % 2:
                pieces.append("{" + part + "}")
            else:
                text = re.sub(r"\\(?:normalsize|small|large|footnotesize|scriptsize)\b", "", part)
                pieces.append(r"\text{" + text + "}" if text.strip() else "")
        out.append(s[pos : m.start()] + "".join(pieces))
        pos = g[1]
    out.append(s[pos:])
    return "".join(out)


def for_mathtext(latex: str) -> list[str]:
    """One display equation as the rows mathtext is asked to draw."""
    s = normalize(latex)
    for pattern, repl in _COMPILED:
        s = pattern.sub(repl, s)
    s = _rewrite_args(s)
    s = _text_math(s)
    for _ in range(30):  # innermost environments first
        new = _INNER_ENV.sub(_env_rewrite, s)
        if new == s:
            break
        s = new
    rows = [_balance_delimiters(r) for r in split_top_rows(s)]
    # A row break left inside a group (a two-line subscript) becomes a space; a trailing
    # backslash (from "\ " at the end) would escape mathtext's closing $.
    rows = [re.sub(r"\\\\", r"\\ ", r) for r in rows]
    rows = [re.sub(r"\\\s*$", "", re.sub(r"\s+", " ", r).strip()) for r in rows]
    return [r for r in rows if r]


def render_mathtext(latex: str, *, dpi: int = 200, fontsize: int = 14) -> bytes | None:
    """One equation drawn by mathtext, rows stacked; None if mathtext can't draw it."""
    rows = for_mathtext(latex)
    if not rows or len(rows) > 16 or any(len(r) > 1500 for r in rows):
        return None
    # matplotlib is imported here, not at module top: it costs ~40 MB of RSS that a process
    # which never draws with mathtext (TeX installed, or a delivery worker) should not pay.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    with _LOCK:
        images: list[Image.Image] = []
        for row in rows:
            buf = io.BytesIO()
            try:
                mathtext.math_to_image(
                    f"${row}$", buf, prop=FontProperties(size=fontsize), dpi=dpi, format="png"
                )
            except Exception as exc:  # mathtext raises ValueError (and friends) on syntax
                log.debug("mathtext could not render an equation: %s", type(exc).__name__)
                return None
            images.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return _compose(images, pad=int(dpi * 0.12), gap=int(dpi * 0.1))


def _compose(images: list[Image.Image], pad: int, gap: int) -> bytes | None:
    width = max(im.width for im in images) + 2 * pad
    height = sum(im.height for im in images) + gap * (len(images) - 1) + 2 * pad
    if width * height > 40_000_000:
        return None
    page = Image.new("RGB", (width, height), "white")
    y = pad
    for im in images:
        page.paste(im, ((width - im.width) // 2, y))
        y += im.height + gap
    buf = io.BytesIO()
    page.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
