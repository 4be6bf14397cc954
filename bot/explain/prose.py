"""LaTeX prose -> readable text: careful (pylatexenc) for what is shown, quick
for whole papers; references become printed numbers, citations go."""

from __future__ import annotations

import re

from pylatexenc.latex2text import LatexNodes2Text

from bot.explain import latex
from bot.explain.textutil import clean_text, upright_greek

_L2T = LatexNodes2Text(math_mode="verbatim", strict_latex_spaces=True)
_MATH_INLINE = re.compile(r"(?<!\\)\$(?!\$)((?:\\.|[^$\\])+?)(?<!\\)\$|\\\((.+?)\\\)", re.S)
REF = re.compile(r"~?\\(eqref|ref|cref|Cref|autoref|labelcref)\*?\s*\{([^{}]*)\}")
CITE = re.compile(r"~?\\(?:cite[a-z]*|nocite)\*?\s*(?:\[[^\]]*\]\s*)*\{[^{}]*\}")
_DROP_WITH_ARG = re.compile(r"\\(?:footnote|label|thanks|vspace|hspace|index|marginpar)\*?\s*")


NUM = re.compile(r"\\num\s*(?:\[[^\]]*\])?\s*\{([^{}]*)\}")  # siunitx: \num{22028942}


def prose(fragment: str, numbers: dict[str, str] | None = None) -> str:
    """LaTeX prose -> readable text; inline math stays as `$latex$` for the renderer."""
    numbers = numbers or {}
    maths: list[str] = []

    def keep_math(m: re.Match[str]) -> str:
        body = (m.group(1) or m.group(2) or "").strip()
        body = re.sub(r"\\label\s*\{[^{}]*\}", "", body)
        maths.append(body)
        return f"\ue000{len(maths) - 1}\ue001"

    def ref(m: re.Match[str]) -> str:
        keys = [k.strip() for k in m.group(2).split(",")]
        nums = [numbers.get(k, "") for k in keys]
        nums = [n for n in nums if n]
        if not nums:
            return ""
        joined = ", ".join(nums)
        if m.group(1) == "eqref":
            return f" ({joined})"
        if m.group(1) in ("cref", "Cref", "autoref"):
            return f" Eq. ({joined})"
        return f" {joined}"

    s = upright_greek(NUM.sub(r"\1", fragment))
    s = _MATH_INLINE.sub(keep_math, s)
    s = REF.sub(ref, s)
    s = CITE.sub("", s)
    s = _drop_commands_with_arg(s)
    s = re.sub(r"\\(?:url)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\href\s*\{[^{}]*\}\s*\{([^{}]*)\}", r"\1", s)
    try:
        s = _L2T.latex_to_text(s)
    except Exception:  # a lenient parser, but this is hostile input
        s = re.sub(r"\\[A-Za-z@]+\*?|[{}]", "", s)
    s = re.sub(r"\ue000(\d+)\ue001", lambda m: "$" + maths[int(m.group(1))] + "$", s)
    s = clean_text(s)
    return _tidy_residue(re.sub(r"\s+", " ", s).strip())


def _tidy_residue(s: str) -> str:
    """What dropped citations leave behind: "such as , , and ." -> "such as ."."""
    s = re.sub(r"(?:[ \t]*,){2,}[ \t]*(?:(?:and|or)[ \t]+)?", " ", s)
    s = re.sub(r"(?:[ \t]*,)+[ \t]*(?:(?:and|or)[ \t]*)?(?=[.;:)])", "", s)
    s = re.sub(r"\(\s*(?:see|e\.g\.|cf\.|i\.e\.)?\s*[,;]?\s*\)|\[\s*\]", "", s)
    s = re.sub(r"[ \t]+([,.;:])", r"\1", s)
    return re.sub(r"[ \t]{2,}", " ", s).strip(" \t")


def _drop_commands_with_arg(s: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _DROP_WITH_ARG.finditer(s):
        if m.start() < pos:
            continue
        g = latex.read_group(s, m.end())
        if g is None:
            continue
        out.append(s[pos : m.start()])
        pos = g[1]
    out.append(s[pos:])
    return "".join(out)


def quick_prose(s: str, numbers: dict[str, str]) -> str:
    """Cheap prose cleanup for long text (pylatexenc is too slow for whole papers)."""

    def ref(m: re.Match[str]) -> str:
        nums = [numbers.get(k.strip(), "") for k in m.group(2).split(",")]
        joined = ", ".join(n for n in nums if n)
        if not joined:
            return ""
        return f" ({joined})" if m.group(1) == "eqref" else f" {joined}"

    s = REF.sub(ref, s)
    s = NUM.sub(r"\1", s)
    s = CITE.sub("", s)
    s = _drop_commands_with_arg(s)
    s = re.sub(
        r"\\(?:emph|textbf|textit|text|textsc|texttt|underline|mbox)\s*\{([^{}]*)\}", r"\1", s
    )
    s = re.sub(r"\\(?:item)\b", "\n- ", s)
    s = re.sub(r"\\(?:begin|end)\s*\{[^{}]*\}(?:\[[^\]]*\])?", "\n", s)
    s = re.sub(
        r"\\(?:maketitle|centering|noindent|newpage|clearpage|appendix|small|footnotesize)\b", "", s
    )
    s = _tidy_residue(s.replace("~", " ").replace("``", '"').replace("''", '"'))
    # Whatever markup is left outside math is residue: keep the words, drop the commands.
    parts = re.split(r"((?<!\\)\$[^$]*(?<!\\)\$)", s)
    for k in range(0, len(parts), 2):
        parts[k] = re.sub(r"\\[A-Za-z@]+\*?|(?<!\\)[{}]", "", parts[k])
    return "".join(parts)
