"""Theorem-like statements: which environments a paper declares, their numbers and text.

amsthm's `\\newtheorem{env}{Name}[within]`, `\\newtheorem{env}[shared]{Name}` and
`\\newtheorem*{env}{Name}`, thmtools' `\\declaretheorem` and `restatable`, and
`\\numberwithin{thm}{section}` decide how a statement is printed ("Theorem 1.1",
"Lemma 3", "Theorem A"); we count the same way so the reply names them as the PDF does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.explain import latex
from bot.explain.tex_internals import strip_internals

KINDS = (
    "theorem",
    "proposition",
    "corollary",
    "lemma",
    "definition",
    "conjecture",
    "claim",
    "assumption",
    "hypothesis",
)
# Statements that are results of the paper (a definition or an assumption is not).
RESULT_KINDS = frozenset({"theorem", "proposition", "corollary", "lemma", "claim", "conjecture"})
_KIND_PREFIX = {
    "thm": "theorem",
    "theo": "theorem",
    "prop": "proposition",
    "cor": "corollary",
    "coro": "corollary",
    "lem": "lemma",
    "lemm": "lemma",
    "defn": "definition",
    "def": "definition",
    "dfn": "definition",
    "conj": "conjecture",
    "clm": "claim",
    "assum": "assumption",
    "assump": "assumption",
    "ass": "assumption",
    "hyp": "hypothesis",
}


@dataclass(slots=True)
class Statement:
    kind: str  # one of KINDS
    number: str | None  # as printed: "1.1", "3", "A"; None when unnumbered
    label: str | None
    title: str  # the optional note: \begin{theorem}[Main theorem]
    text: str  # readable: prose with inline math as $...$ (filled in by the analyzer)
    latex: str  # the statement's LaTeX, labels removed
    name: str = ""  # the printed name: "Theorem", "Main Theorem"
    position: int = 0
    end: int = 0
    section: str = ""
    score: float = 0.0

    @property
    def heading(self) -> str:
        head = self.name or self.kind.capitalize()
        if self.number:
            head += f" {self.number}"
        return head + (f" ({self.title})" if self.title else "")


@dataclass(slots=True)
class _Env:
    name: str  # printed name
    kind: str
    counter: str | None  # None: unnumbered
    within: str = ""  # "section" when numbered within sections


def _kind_of(env: str, name: str) -> str | None:
    words = re.findall(r"[a-z]+", name.lower())
    for w in words:
        if w in KINDS:
            return w
    env_l = env.lower().rstrip("*")
    for k in KINDS:
        if env_l.startswith(k):
            return k
    for prefix in sorted(_KIND_PREFIX, key=len, reverse=True):
        if env_l.startswith(prefix):
            return _KIND_PREFIX[prefix]
    return None


_NEWTHEOREM = re.compile(r"\\newtheorem(\*?)\s*\{([^{}]+)\}")
_DECLARETHEOREM = re.compile(r"\\declaretheorem\s*(?:\[([^\]]*)\])?\s*\{([^{}]+)\}")
_WITHIN = re.compile(r"\\(?:numberwithin|counterwithin)\*?\s*\{([^{}]+)\}\s*\{([^{}]+)\}")


def declarations(text: str) -> dict[str, _Env]:
    """Environment name -> how it prints, from the paper's own declarations."""
    envs: dict[str, _Env] = {}
    for m in _NEWTHEOREM.finditer(text):
        env = m.group(2).strip()
        i = m.end()
        shared = latex.read_group(text, i, "[", "]")
        counter: str | None = env
        if shared is not None and text[i:].lstrip().startswith("["):
            counter, i = shared[0].strip(), shared[1]
        g = latex.read_group(text, i)
        if g is None:
            continue
        name, i = strip_internals(g[0]).strip(), g[1]
        within = ""
        w = latex.read_group(text, i, "[", "]")
        if w is not None and text[i:].lstrip().startswith("["):
            within = w[0].strip()
        # Remarks and examples are not shown, but they may share a counter with theorems.
        kind = _kind_of(env, name) or "other"
        if m.group(1):
            counter = None
        envs[env] = _Env(re.sub(r"[{}\\]", "", name) or kind.capitalize(), kind, counter, within)
    for m in _DECLARETHEOREM.finditer(text):
        env = m.group(2).strip()
        opts = dict(
            (k.strip().lower(), v.strip().strip("{}"))
            for k, _, v in (o.partition("=") for o in (m.group(1) or "").split(","))
            if k.strip()
        )
        name = opts.get("name", env.capitalize())
        kind = _kind_of(env, name) or "other"
        shared_with: str | None = opts.get("sibling") or opts.get("numberlike") or env
        if opts.get("numbered", "yes") == "no":
            shared_with = None
        envs[env] = _Env(name, kind, shared_with, opts.get("numberwithin", ""))
    for m in _WITHIN.finditer(text):
        counter_name, parent = m.group(1).strip(), m.group(2).strip()
        for e in envs.values():
            if e.counter == counter_name:
                e.within = parent
    # Shared counters number within whatever their owner does.
    for e in envs.values():
        owner = envs.get(e.counter or "")
        if owner is not None and owner is not e and not e.within:
            e.within = owner.within
    return envs


# Classes such as amsart/acmart/llncs predefine these; used when the paper declares nothing.
_DEFAULT_ENVS = {
    "theorem": "Theorem",
    "proposition": "Proposition",
    "lemma": "Lemma",
    "corollary": "Corollary",
    "definition": "Definition",
    "conjecture": "Conjecture",
    "claim": "Claim",
    "assumption": "Assumption",
}

# What html.py writes for a LaTeXML theorem: \begin{thm}[note]\thmnumber{1.1} ...
_HTML_ENVS = re.compile(r"\\begin\{([A-Za-z]+)\}\s*(?:\[[^\]]*\])?\s*\\thmnumber\{")
_PRINTED_NUMBER = re.compile(r"\s*\\thmnumber\{([^{}]*)\}\s*")
_BEGIN = re.compile(r"\\begin\s*\{([A-Za-z@]+\*?)\}")
_SECTION = re.compile(r"\\(chapter|section)\*?\s*(?:\[[^\]]*\])?\s*\{|\\appendix(?![A-Za-z])")


def statements(body: str, preamble: str = "", max_statements: int = 2000) -> list[Statement]:
    """Every theorem-like statement of the body, numbered as the PDF numbers it."""
    envs = declarations(preamble + "\n" + body)
    declared = bool(envs)
    if not envs:
        envs = {e: _Env(n, _kind_of(e, n) or e, "theorem") for e, n in _DEFAULT_ENVS.items()}
    counts: dict[str, int] = {}
    chapter = 0
    section = 0
    appendix = False
    section_title = ""
    out: list[Statement] = []
    # One pass over sections and \begin{...}, in document order.
    events = sorted(
        [(m.start(), "s", m) for m in _SECTION.finditer(body)]
        + [(m.start(), "b", m) for m in _BEGIN.finditer(body)],
        key=lambda e: e[0],
    )
    skip_to = 0
    unclosed = 0
    for pos, what, m in events:
        if pos < skip_to:
            continue
        if len(out) >= max_statements:
            break
        if what == "s":
            if m.group(0).startswith("\\appendix"):
                appendix, chapter, section = True, 0, 0
                continue
            starred = "*" in m.group(0)
            title = latex.read_group(body, m.end() - 1)
            level = m.group(1)
            if not starred:
                if level == "chapter":
                    chapter, section = chapter + 1, 0
                else:
                    section += 1
                for decl in envs.values():
                    # A new chapter resets section-level counters too.
                    resets = decl.within == level or (
                        level == "chapter" and decl.within == "section"
                    )
                    if decl.counter and resets:
                        counts[decl.counter] = 0
            section_title = title[0] if title else ""
            continue
        env_name = m.group(1)
        i = m.end()
        if env_name == "restatable" or env_name == "restatable*":
            # \begin{restatable}[note]{theorem}{macroname}
            opt = latex.read_group(body, i, "[", "]")
            note_pre = ""
            if opt is not None and body[i:].lstrip().startswith("["):
                note_pre, i = opt[0], opt[1]
            inner = latex.read_group(body, i)
            macro = latex.read_group(body, inner[1]) if inner else None
            if inner is None or macro is None:
                continue
            base = inner[0].strip()
            star = env_name.endswith("*")
            i = macro[1]
        else:
            base = env_name.rstrip("*")
            star = env_name.endswith("*")
            note_pre = ""
        env = envs.get(base) or envs.get(env_name)
        if env is None and not declared and base in _HTML_ENVS.findall(body):
            # arXiv HTML keeps the source's environment names ("thm", "prop") undeclared.
            kind = _kind_of(base, "")
            env = _Env(kind.capitalize(), kind, "theorem") if kind else None
        if env is None:
            continue
        end_m = re.compile(r"\\end\s*\{" + re.escape(env_name) + r"\}").search(body, i)
        if end_m is None:
            unclosed += 1  # each costs a scan to the end: a hostile source gets few
            if unclosed > 20:
                break
            continue
        skip_to = end_m.end()
        note = note_pre
        opt = latex.read_group(body, i, "[", "]")
        if opt is not None and body[i:].lstrip().startswith("["):
            note, i = opt[0], opt[1]
        content = body[i : end_m.start()]
        number: str | None = None
        printed = _PRINTED_NUMBER.match(content)
        if printed:  # the number as the HTML page prints it
            number, content = printed.group(1), content[printed.end() :]
        elif env.counter and not star:
            counts[env.counter] = counts.get(env.counter, 0) + 1
            n = counts[env.counter]
            if env.within in ("section", "chapter"):
                top = chapter if chapter else section
                prefix = chr(ord("A") + max(top, 1) - 1) if appendix else str(top)
                if env.within == "section" and chapter:
                    prefix += f".{section}"
                number = f"{prefix}.{n}"
            else:
                number = str(n)
        if env.kind == "other":
            continue
        labels = re.findall(r"\\label\s*\{([^{}]*)\}", content)
        clean = re.sub(r"\\label\s*\{[^{}]*\}", "", content).strip()
        out.append(
            Statement(
                kind=env.kind,
                number=number,
                label=labels[0].strip() if labels else None,
                title=note.strip(),
                text="",
                latex=clean,
                name=env.name,
                position=pos,
                end=end_m.end(),
                section=section_title,
            )
        )
    return out
