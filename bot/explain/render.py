"""Display equations as PNG images: a real TeX engine when installed, else matplotlib.

Two engines, tried in order (`render_many`):

1. **TeX** (`latex` + `dvipng`, from the texlive packages `.ci/run` and the Docker image
   install). Every equation of a call goes into one LaTeX run, one page each, in a
   private temporary directory, with shell escape off, kpathsea's paranoid file access
   (`openin_any=p`, `openout_any=p`), font generation off, a wall-clock limit and a size
   limit on every box and image. Equations that use a primitive able to read or write
   files, define macros or loop are refused before TeX sees them (`tex_safe`).
2. **mathtext** (matplotlib, embedded): `for_mathtext` rewrites what it lacks (matrices and
   cases as stacked rows, `\\le`, `\\xrightarrow`, `\\big`, `\\hspace`…) and each top-level
   row is drawn and the rows stacked.

What neither can draw gets no image, and the reply shows the readable Unicode form.
Everything here is CPU or subprocess work: callers run it in a thread.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from PIL import Image

from bot.explain import latex as latex_mod
from bot.explain.mathfix import normalize
from bot.latex import split_display_rows as split_top_rows

log = logging.getLogger(__name__)

Engine = Literal["auto", "tex", "mathtext"]

# mathtext's parser and font caches are shared state; one render at a time is plenty.
_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple[str, str], bytes | None] = OrderedDict()
_CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class TexLimits:
    timeout: float = 4.0  # seconds for one latex (or dvipng) run of up to `batch` equations
    per_equation: float = 0.25  # added to the timeout per equation in a batch
    budget: float = 12.0  # seconds for all TeX work of one `render_many` call
    batch: int = 24
    max_chars: int = 4000  # of one equation's LaTeX
    max_width_pt: int = 1400  # a box wider or taller than this is refused, not drawn
    max_height_pt: int = 700
    max_png_bytes: int = 1_500_000
    dpi: int = 200


TEX = TexLimits()


# ---------------------------------------------------------------- row structure


# ---------------------------------------------------------------- TeX engine

# Control words that read or write files, define or redefine macros, change category
# codes, loop or branch, talk to the engine or the shell, or allocate registers.
_TEX_FORBIDDEN_WORDS = """
    input include includeonly InputIfFileExists IfFileExists endinput openin openout
    read readline write immediate closein closeout special shipout output jobname
    catcode lccode uccode sfcode mathcode delcode def edef gdef xdef let futurelet
    newcommand renewcommand providecommand DeclareRobustCommand DeclareMathOperator
    newenvironment renewenvironment csname endcsname expandafter noexpand usepackage
    RequirePackage documentclass LoadClass makeatletter makeatother loop repeat
    afterassignment aftergroup errmessage errhelp message typeout batchmode nonstopmode
    scrollmode errorstopmode dump scantokens detokenize unexpanded romannumeral number
    string meaning uppercase lowercase setbox global long outer count dimen skip muskip
    toks advance multiply divide fi else or unless directlua latelua luaexec ShellEscape
    write18 verb url href include graphicspath includegraphics pagebreak clearpage
    newpage vadjust mark insert vsplit lastbox unvbox unhbox box copy unskip penalty
    afterpage
"""
_TEX_FORBIDDEN = frozenset(_TEX_FORBIDDEN_WORDS.split())
_TEX_FORBIDDEN_PREFIXES = ("new", "pdf", "tracing", "every", "if", "xe", "lua", "set", "tex")
_TEX_ALLOWED_DESPITE_PREFIX = frozenset({"iff", "setminus", "texttt", "textrm", "textit"})
_TEX_FORBIDDEN_ENVS = frozenset({"document", "filecontents", "filecontents*", "verbatim"})
_CONTROL_WORD = re.compile(r"\\([A-Za-z@]+)")


def tex_safe(latex: str, limit: int = TEX.max_chars) -> bool:
    """May this equation go to TeX? Refuses file, definition, catcode and loop primitives,
    `^^` character codes, unbalanced groups and environments, and very long input."""
    if len(latex) > limit or "^^" in latex or "\x00" in latex:
        return False
    for m in _CONTROL_WORD.finditer(latex):
        word = m.group(1)
        if "@" in word or word in _TEX_FORBIDDEN:
            return False
        if (
            word.startswith(_TEX_FORBIDDEN_PREFIXES)
            and word not in _TEX_ALLOWED_DESPITE_PREFIX
            and not word.startswith("text")
        ):
            return False
    depth = 0
    for m in re.finditer(r"\\.|[{}]", latex, re.S):
        tok = m.group(0)
        depth += {"{": 1, "}": -1}.get(tok, 0)
        if depth < 0:
            return False
    if depth != 0:
        return False
    envs: list[str] = []
    for m in re.finditer(r"\\(begin|end)\s*\{([^{}]*)\}", latex):
        name = m.group(2).strip()
        if name in _TEX_FORBIDDEN_ENVS:
            return False
        if m.group(1) == "begin":
            envs.append(name)
        elif not envs or envs.pop() != name:
            return False
    if envs:
        return False
    # `\end` is only harmless as `\end{env}`; bare, it stops TeX.
    return re.search(r"\\end(?![A-Za-z])(?!\s*\{)", latex) is None


# Names the template itself uses: an author's macro must not redefine them.
_TEMPLATE_NAMES_WORDS = """
    begin end hbox vbox box displaystyle text typeout the wd ht dp shipout ifdim fi
    setbox count gathered frac left right mathbb mathrm operatorname
"""
_TEMPLATE_NAMES = frozenset(_TEMPLATE_NAMES_WORDS.split())


def safe_macros(definitions: str, limit: int = 300) -> str:
    """The author's simple math macros (from `\\newcommand`, `\\def`, `\\DeclareMathOperator`)
    as LaTeX for the TeX preamble, keeping only those whose name and body are safe."""
    out: list[str] = []
    for name, macro in latex_mod.parse_macros(definitions, limit=limit).items():
        if not re.fullmatch(r"[A-Za-z]+", name) or name in _TEMPLATE_NAMES:
            continue
        if name in _TEX_FORBIDDEN or not tex_safe(macro.body, 1000):
            continue
        if re.search(rf"\\{name}(?![A-Za-z])", macro.body):
            continue  # recursive: TeX would loop until the time limit
        args = f"[{macro.nargs}]" if macro.nargs else ""
        if macro.default is not None:
            if not tex_safe(macro.default, 200):
                continue
            args += f"[{macro.default}]"
        out.append(
            f"\\providecommand{{\\{name}}}{{}}\\renewcommand{{\\{name}}}{args}{{{macro.body}}}"
        )
    return "\n".join(out)


# Common package macros the minimal texlive set lacks, as close stand-ins.
_TEX_STANDINS = r"""
\providecommand{\mathbbm}[1]{\mathbb{#1}}
\providecommand{\mathds}[1]{\mathbb{#1}}
\providecommand{\bbone}{\mathbb{1}}
\providecommand{\llbracket}{[\![}
\providecommand{\rrbracket}{]\!]}
\providecommand{\ket}[1]{\left|#1\right\rangle}
\providecommand{\bra}[1]{\left\langle#1\right|}
\providecommand{\braket}[1]{\left\langle#1\right\rangle}
\providecommand{\abs}[1]{\left|#1\right|}
\providecommand{\norm}[1]{\left\|#1\right\|}
\providecommand{\cancel}[1]{#1}
\providecommand{\textcolor}[2]{#2}
\providecommand{\color}[1]{}
\providecommand{\Tr}{\operatorname{Tr}}
\providecommand{\tr}{\operatorname{tr}}
\providecommand{\E}{\mathbb{E}}
\providecommand{\R}{\mathbb{R}}
\providecommand{\argmin}{\operatorname*{arg\,min}}
\providecommand{\argmax}{\operatorname*{arg\,max}}
\providecommand{\diag}{\operatorname{diag}}
\providecommand{\sign}{\operatorname{sign}}
\providecommand{\softmax}{\operatorname{softmax}}
\providecommand{\mathscr}[1]{\mathcal{#1}}
\providecommand{\checkmark}{\surd}
"""


def _tex_document(latexes: list[str], macros: str) -> str:
    parts = [
        "\\documentclass[12pt]{article}",
        "\\usepackage{amsmath,amssymb,amsfonts,mathtools,bm}",
        "\\pagestyle{empty}",
        _TEX_STANDINS,
        macros,
        "\\begin{document}",
    ]
    for i, body in enumerate(latexes, 1):
        # The body sits on lines of its own, so a stray % cannot comment out the frame.
        parts.append(
            f"\\typeout{{PBEQ-BEGIN-{i}}}\n"
            "\\setbox0=\\hbox{$\\displaystyle\\begin{gathered}\n"
            f"{body}\n"
            "\\end{gathered}$}\n"
            f"\\ifdim\\wd0>{TEX.max_width_pt}pt \\typeout{{PBEQ-TOOBIG}}\\setbox0=\\hbox{{}}\\fi\n"
            f"\\ifdim\\ht0>{TEX.max_height_pt}pt \\typeout{{PBEQ-TOOBIG}}\\setbox0=\\hbox{{}}\\fi\n"
            f"\\ifdim\\dp0>{TEX.max_height_pt}pt \\typeout{{PBEQ-TOOBIG}}\\setbox0=\\hbox{{}}\\fi\n"
            f"\\count0={i}\\shipout\\box0\n"
            f"\\typeout{{PBEQ-END-{i}}}"
        )
    parts.append("\\end{document}")
    return "\n".join(parts) + "\n"


@lru_cache(maxsize=1)
def _tex_tools() -> tuple[str, str] | None:
    latex, dvipng = shutil.which("latex"), shutil.which("dvipng")
    return (latex, dvipng) if latex and dvipng else None


def tex_available() -> bool:
    """Is a TeX engine (latex and dvipng) installed?"""
    return _tex_tools() is not None


def _tex_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": workdir,
        "LC_ALL": "C",
        "openin_any": "p",  # kpathsea: no dot files, no parent dirs, no absolute paths
        "openout_any": "p",
        "shell_escape": "f",
        "TEXMFOUTPUT": workdir,
        "TEXMFVAR": os.path.join(workdir, ".texmf-var"),
        "MKTEXPK": "0",  # never run Metafont to make fonts on the fly
        "MKTEXTFM": "0",
        "MKTEXMF": "0",
    }


class TexFailed(Exception):
    """The TeX run as a whole failed (binary missing, timeout, crash)."""


def _run(cmd: list[str], workdir: str, timeout: float) -> None:
    try:
        subprocess.run(
            cmd,
            cwd=workdir,
            env=_tex_env(workdir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed the child
        raise TexFailed(f"{Path(cmd[0]).name} timed out") from exc
    except OSError as exc:
        raise TexFailed(f"{Path(cmd[0]).name} could not run: {exc}") from exc


def _tex_batch(latexes: list[str], macros: str, timeout: float) -> dict[int, bytes | None]:
    """One LaTeX run for several equations: index -> PNG, None (TeX rejected it). Indexes
    missing from the answer were not reached (a fatal error stopped the run)."""
    tools = _tex_tools()
    if tools is None:
        raise TexFailed("latex or dvipng is not installed")
    latex_bin, dvipng_bin = tools
    with tempfile.TemporaryDirectory(prefix="paperboy-tex-") as work:
        Path(work, "eq.tex").write_text(_tex_document(latexes, macros), encoding="utf-8")
        _run(
            [
                latex_bin,
                "-no-shell-escape",
                "-interaction=nonstopmode",
                "-file-line-error",
                "eq.tex",
            ],
            work,
            timeout,
        )
        log_path, dvi = Path(work, "eq.log"), Path(work, "eq.dvi")
        text = log_path.read_text(encoding="latin-1") if log_path.exists() else ""
        verdicts = _verdicts(text, len(latexes))
        if not dvi.exists() or not any(verdicts.values()):
            return {i: None for i, ok in verdicts.items()}
        _run(
            [
                dvipng_bin,
                "-T",
                "tight",
                "-D",
                str(TEX.dpi),
                "-bg",
                "White",
                "-z",
                "6",
                "-q",
                "-o",
                "eq%d.png",
                "eq.dvi",
            ],
            work,
            timeout,
        )
        out: dict[int, bytes | None] = {}
        for i, ok in verdicts.items():
            png = Path(work, f"eq{i + 1}.png")
            data = png.read_bytes() if ok and png.exists() else b""
            good = data.startswith(b"\x89PNG") and len(data) <= TEX.max_png_bytes
            out[i] = data if good else None
        return out


def _verdicts(log_text: str, n: int) -> dict[int, bool]:
    """Per equation reached: did TeX typeset it without an error?"""
    out: dict[int, bool] = {}
    for i in range(n):
        begin = log_text.find(f"PBEQ-BEGIN-{i + 1}\n")
        end = log_text.find(f"PBEQ-END-{i + 1}\n", begin)
        if begin < 0 or end < 0:
            continue
        segment = log_text[begin:end]
        # "! Undefined control sequence." or, with -file-line-error, "eq.tex:12: ...".
        bad = re.search(r"^(?:! |[^\s:]*\.tex:\d+: )", segment, re.M)
        out[i] = not bad and "PBEQ-TOOBIG" not in segment
    return out


def render_tex(latexes: list[str], macros: str = "") -> dict[str, bytes | None]:
    """Draw equations with TeX; unsafe ones, and ones TeX cannot typeset, map to None.
    Never raises: a missing binary or a run past its time limit just draws nothing."""
    unique = list(dict.fromkeys(latexes))
    out: dict[str, bytes | None] = dict.fromkeys(unique)
    bodies = {s: _tex_body(s) for s in unique}
    todo = [s for s in unique if tex_safe(bodies[s])]
    if not todo or not tex_available():
        return out
    deadline = time.monotonic() + TEX.budget
    for start in range(0, len(todo), TEX.batch):
        chunk = todo[start : start + TEX.batch]
        left = deadline - time.monotonic()
        if left <= 0.5:
            break
        try:
            timeout = min(TEX.timeout + TEX.per_equation * len(chunk), left)
            got = _tex_batch([bodies[s] for s in chunk], macros, timeout)
        except TexFailed as exc:
            log.info("TeX run failed: %s", exc)
            got = {}
        for i, s in enumerate(chunk):
            if i in got:
                out[s] = got[i]
            elif len(chunk) > 1:
                # Not reached (the run stopped early or timed out): again on its own, so
                # one hostile equation costs only itself.
                out[s] = _single(bodies[s], macros, deadline)
    return out


def _single(body: str, macros: str, deadline: float) -> bytes | None:
    left = deadline - time.monotonic()
    if left <= 0.5:
        return None
    try:
        return _tex_batch([body], macros, min(TEX.timeout, left)).get(0)
    except TexFailed as exc:
        log.info("TeX could not draw an equation: %s", exc)
        return None


def _tex_body(latex: str) -> str:
    """Numbering, labels and proof marks are the reply's business, not the image's."""
    s = re.sub(r"\\(?:label|tag\*?)\s*\{[^{}]*\}", "", latex)
    s = re.sub(r"\\(?:nonumber|notag|qedhere)(?![A-Za-z])", "", s)
    return normalize(s).strip()


# ---------------------------------------------------------------- mathtext engine

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


# ---------------------------------------------------------------- both


def _cached(engine: str, latex: str) -> tuple[bool, bytes | None]:
    with _LOCK:
        if (engine, latex) in _CACHE:
            _CACHE.move_to_end((engine, latex))
            return True, _CACHE[(engine, latex)]
    return False, None


def _store(engine: str, latex: str, png: bytes | None) -> None:
    with _LOCK:
        _CACHE[(engine, latex)] = png
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)


def render_many(
    latexes: list[str], *, engine: Engine = "auto", macros: str = ""
) -> dict[str, bytes | None]:
    """Several equations as PNGs (call in a thread: this is CPU and subprocess work).

    `auto` uses TeX when installed and mathtext for whatever TeX did not draw. `macros`
    is preamble LaTeX from `safe_macros` (the explainer expands the author's macros into
    the equations already, so it passes none).
    """
    out: dict[str, bytes | None] = {}
    todo: list[str] = []
    for s in dict.fromkeys(latexes):
        hit, png = _cached(engine, s)
        if hit:
            out[s] = png
        else:
            todo.append(s)
    if not todo:
        return out
    drawn: dict[str, bytes | None] = dict.fromkeys(todo)
    if engine in ("auto", "tex"):
        drawn.update(render_tex(todo, macros))
    if engine in ("auto", "mathtext"):
        for s in todo:
            if drawn[s] is None:
                drawn[s] = render_mathtext(s)
    for s, png in drawn.items():
        if not macros:
            _store(engine, s, png)
        out[s] = png
    return out


def render_png(latex: str, *, engine: Engine = "auto") -> bytes | None:
    """One equation (rows separated by `\\\\`) as a PNG, or None if no engine can draw it."""
    return render_many([latex], engine=engine)[latex]
