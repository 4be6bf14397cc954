"""Score the offline explainer against real papers (tests/corpus/explain, see SOURCES.md).

Each paper is an arXiv-style e-print (`eprint.tar.gz`, or `eprint.gz` for a single file)
with `expected.toml` written by reading its source: the root file, the main result, the
central equations, five glossary entries and the words a one-sentence claim would use.

`observe` runs the explainer's offline pieces on the archive bytes and `to_observed` turns
what they return into a plain `Observed`; that one function is the only place that knows
the explainer's object shapes, so a new field (theorem statements, a TL;DR on the
analysis) is a one-line change there. `score` compares an `Observed` with `Expected`.

Run `python -m tests.corpus.score` for a table; `bench/bench_explain_corpus.py` adds
timings, equation images and the prompt's share of TeX internals.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.explain import analyze as analyze_mod
from bot.explain.analyze import Analysis
from bot.explain.offline import offline_explanation
from bot.explain.paper_text import PaperText
from bot.explain.source import LatexSource, extract
from bot.models import Paper

CORPUS = Path(__file__).resolve().parent / "explain"

# root_file of a single gzipped .tex: it carries no name, so whatever the explainer calls it
ONLY_FILE = "*"
# "Equation (3)": a printed equation number, for display math the paper never labels.
_EQ_NUMBER = re.compile(r"^Equation \((\S+)\)$")
# "Theorem 1.1", "Proposition 2": a numbered statement as the paper prints it.
_STATEMENT = re.compile(r"^(Theorem|Proposition|Lemma|Corollary|Definition) (\S+)$")


@dataclass(frozen=True, slots=True)
class GlossaryItem:
    symbol: str  # as LaTeX
    keywords: tuple[str, ...]  # any one of them must appear in a correct meaning
    defined: bool = True  # False: the paper uses the symbol but never says what it is


@dataclass(frozen=True, slots=True)
class Expected:
    root_files: tuple[str, ...]  # any one is right (a blueprint has a print and a web root)
    kind: str
    main_result: tuple[str, ...]  # labels, "Equation (N)" or "Theorem N.M": any one counts
    central_equations: tuple[str, ...]
    glossary: tuple[GlossaryItem, ...]
    tldr_claim_words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CorpusPaper:
    slug: str
    archive: Path
    expected: Expected

    def data(self) -> bytes:
        return self.archive.read_bytes()


@dataclass(slots=True)
class Observed:
    """What the explainer showed, in plain terms."""

    root: str
    key_labels: list[str] = field(default_factory=list)  # every \label of the key equations
    key_numbers: list[str] = field(default_factory=list)  # their printed numbers
    key_theorems: list[str] = field(default_factory=list)  # "Theorem 1.1" and statement labels
    glossary: list[tuple[str, str]] = field(default_factory=list)  # (symbol LaTeX, meaning)
    tldr: str = ""


@dataclass(slots=True)
class PaperScore:
    slug: str
    root_ok: bool
    main_hit: bool | None  # None: the paper has no main result to point at
    glossary_checked: int  # entries shown for a symbol the expectations cover
    glossary_right: int
    glossary_covered: int  # expected symbols that got any entry at all
    glossary_expected: int
    tldr_hits: int
    tldr_words: int
    observed: Observed


@dataclass(slots=True)
class Summary:
    papers: int
    root_right: int
    main_expected: int
    main_hits: int
    glossary_checked: int
    glossary_right: int

    @property
    def main_share(self) -> float:
        return self.main_hits / self.main_expected if self.main_expected else 0.0

    @property
    def glossary_precision(self) -> float:
        # Nothing shown for the symbols we know is no precision at all, not 100%.
        return self.glossary_right / self.glossary_checked if self.glossary_checked else 0.0


# ------------------------------------------------------------------ corpus


def _strs(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in (v or []))


def load_expected(path: Path) -> Expected:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    root = raw["root_file"]
    return Expected(
        root_files=tuple(str(r) for r in root) if isinstance(root, list) else (str(root),),
        kind=str(raw.get("kind", "")),
        main_result=_strs(raw.get("main_result")),
        central_equations=_strs(raw.get("central_equations")),
        glossary=tuple(
            GlossaryItem(
                symbol=str(g["symbol"]),
                keywords=_strs(g.get("meaning_keywords")),
                defined=bool(g.get("defined", True)),
            )
            for g in raw.get("glossary", [])
        ),
        tldr_claim_words=_strs(raw.get("tldr_claim_words")),
    )


def papers(root: Path = CORPUS) -> list[CorpusPaper]:
    out: list[CorpusPaper] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        archive = next((d / n for n in ("eprint.tar.gz", "eprint.gz") if (d / n).exists()), None)
        if archive is not None and (d / "expected.toml").exists():
            out.append(CorpusPaper(d.name, archive, load_expected(d / "expected.toml")))
    return out


def archive_texts(data: bytes) -> dict[str, str]:
    """The archive's text files, read with the standard library alone (not the bot's code),
    so the corpus checks do not depend on what they are meant to measure."""
    raw = gzip.decompress(data)
    try:
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            return {
                m.name: tar.extractfile(m).read().decode("utf-8", "replace")  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile()
            }
    except tarfile.ReadError:  # a single gzipped .tex, as arXiv serves one-file papers
        return {ONLY_FILE: raw.decode("utf-8", "replace")}


def label_in_source(label: str, text: str) -> bool:
    """Is `label` a \\label key of the source? Authors often wrap \\label in a macro
    (\\eqlabel{gp-likelihood} for eq:gp-likelihood), so the part after the prefix counts."""
    if _EQ_NUMBER.match(label) or _STATEMENT.match(label):
        return True  # numbers are checked by reading, not by grepping
    tail = label.split(":", 1)[1] if ":" in label else label
    return "{" + label + "}" in text or "{" + tail + "}" in text


# ------------------------------------------------------------------ observing


def _offline_tldr(analysis: Analysis) -> str:
    """The offline TL;DR exactly as /explain builds it (no Hugging Face summary here)."""
    paper = Paper(id="0000.00000", title=analysis.title, abstract="", version=1)
    return offline_explanation(paper, PaperText("latex", analysis)).tldr


def to_observed(src: LatexSource, analysis: Analysis) -> Observed:
    """The one adapter from explainer objects to `Observed` (see the module docstring)."""
    chosen = list(analysis.equations)
    theorems: list[str] = []
    # The main results the reply leads with (theorem statements), not every theorem.
    for t in getattr(analysis, "results", None) or []:
        kind, number, label = (getattr(t, a, "") or "" for a in ("kind", "number", "label"))
        if number:
            theorems.append(f"{str(kind).capitalize() or 'Theorem'} {number}")
        if label:
            theorems.append(str(label))
    glossary = [(s, m) for e in chosen for s, m in e.glossary]
    glossary += list(getattr(analysis, "glossary", None) or [])
    tldr = getattr(analysis, "tldr", None) or _offline_tldr(analysis)
    return Observed(
        root=src.main,
        key_labels=[k for e in chosen for k in (e.keys or ([e.key] if e.key else []))],
        key_numbers=[e.number for e in chosen if e.number],
        key_theorems=theorems,
        glossary=glossary,
        tldr=str(tldr),
    )


def observe(data: bytes) -> tuple[Observed, LatexSource, Analysis]:
    """Run the offline explainer pieces on e-print bytes (CPU-bound; tests call it directly)."""
    src = extract(data)
    analysis = analyze_mod.analyze(src.body, src.preamble)
    return to_observed(src, analysis), src, analysis


# ------------------------------------------------------------------ scoring

_FONT = re.compile(r"\\(?:mathbf|bm|boldsymbol|mathrm|mathit|text|textrm|ensuremath|rm)\b")


def norm_symbol(s: str) -> str:
    """Same symbol, however typed: font wrappers, braces and spacing do not count."""
    s = _FONT.sub("", s)
    s = re.sub(r"\\(?:left|right|[,;:!]|\s)", "", s)
    return re.sub(r"[\s{}]", "", s)


def meaning_ok(meaning: str, item: GlossaryItem) -> bool:
    m = meaning.lower()
    # Inline $...$ math is drawn for the reader; a command outside it (\emph{...}) is
    # raw LaTeX, not a meaning a reader can use.
    if "\\" in re.sub(r"\$[^$]*\$", "", meaning):
        return False
    if not item.defined:
        return "not defined" in m or "undefined" in m
    return any(k.lower() in m for k in item.keywords)


def _main_hit(expected: Expected, seen: Observed) -> bool | None:
    if not expected.main_result:
        return None
    for want in expected.main_result:
        number = _EQ_NUMBER.match(want)
        if number and number.group(1) in seen.key_numbers:
            return True
        if want in seen.key_labels or want in seen.key_theorems:
            return True
    return False


def score(paper: CorpusPaper, seen: Observed) -> PaperScore:
    exp = paper.expected
    wanted = {norm_symbol(g.symbol): g for g in exp.glossary}
    checked = right = 0
    covered: set[str] = set()
    for sym, meaning in seen.glossary:
        item = wanted.get(norm_symbol(sym))
        if item is None:
            continue
        checked += 1
        covered.add(norm_symbol(sym))
        right += meaning_ok(meaning, item)
    tldr = seen.tldr.lower()
    return PaperScore(
        slug=paper.slug,
        root_ok=seen.root in exp.root_files or ONLY_FILE in exp.root_files,
        main_hit=_main_hit(exp, seen),
        glossary_checked=checked,
        glossary_right=right,
        glossary_covered=len(covered),
        glossary_expected=len(exp.glossary),
        tldr_hits=sum(w.lower() in tldr for w in exp.tldr_claim_words),
        tldr_words=len(exp.tldr_claim_words),
        observed=seen,
    )


def summarize(scores: list[PaperScore]) -> Summary:
    return Summary(
        papers=len(scores),
        root_right=sum(s.root_ok for s in scores),
        main_expected=sum(s.main_hit is not None for s in scores),
        main_hits=sum(bool(s.main_hit) for s in scores),
        glossary_checked=sum(s.glossary_checked for s in scores),
        glossary_right=sum(s.glossary_right for s in scores),
    )


def score_paper(paper: CorpusPaper) -> PaperScore:
    seen, _src, _analysis = observe(paper.data())
    return score(paper, seen)


def score_corpus(root: Path = CORPUS) -> list[PaperScore]:
    return [score_paper(p) for p in papers(root)]


def table(scores: list[PaperScore]) -> str:
    lines = [f"{'paper':34} root main  glossary  covered  tldr"]
    for s in scores:
        main = "-" if s.main_hit is None else ("yes" if s.main_hit else "no")
        gl = f"{s.glossary_right}/{s.glossary_checked}"
        cov = f"{s.glossary_covered}/{s.glossary_expected}"
        ok = "yes" if s.root_ok else "NO"
        lines.append(f"{s.slug:34} {ok:4} {main:4} {gl:>8} {cov:>8} {s.tldr_hits}/{s.tldr_words}")
    t = summarize(scores)
    lines.append(
        f"root right {t.root_right}/{t.papers}; main result among key items "
        f"{t.main_hits}/{t.main_expected} ({t.main_share:.0%}); glossary precision "
        f"{t.glossary_right}/{t.glossary_checked} ({t.glossary_precision:.0%})"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(score_corpus()))
