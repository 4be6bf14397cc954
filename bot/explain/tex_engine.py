"""Equations drawn by a real TeX engine (`latex` + `dvipng`), sandboxed: one run per
batch in a private directory, paranoid file access, time and size limits, and
equations using dangerous primitives refused before TeX sees them (`tex_safe`)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bot.explain.macros import parse_macros
from bot.explain.mathfix import normalize

log = logging.getLogger(__name__)


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
    for name, macro in parse_macros(definitions, limit=limit).items():
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
