"""arXiv identifiers: every form a person pastes, reduced to one canonical id.

Two schemes exist. New style (from April 2007): ``yymm.nnnn`` until 2014, ``yymm.nnnnn``
from 2015. Old style (1991 to March 2007): ``archive/yymmnnn``, sometimes written with a
subject class (``math.GT/0309136``) that arXiv drops from the canonical id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The old-style archives, as arXiv listed them; anything else before a slash is not an id.
OLD_ARCHIVES: frozenset[str] = frozenset(
    {
        "acc-phys", "adap-org", "alg-geom", "ao-sci", "astro-ph", "atom-ph", "bayes-an",
        "chao-dyn", "chem-ph", "cmp-lg", "comp-gas", "cond-mat", "cs", "dg-ga", "funct-an",
        "gr-qc", "hep-ex", "hep-lat", "hep-ph", "hep-th", "math", "math-ph", "mtrl-th",
        "nlin", "nucl-ex", "nucl-th", "patt-sol", "physics", "plasm-ph", "q-alg", "q-bio",
        "quant-ph", "solv-int", "supr-con",
    }
)  # fmt: skip

_HINT = " ".join(
    (
        "Send an id like 2401.12345 or hep-th/9901001,",
        "or a link to arxiv.org or huggingface.co/papers.",
    )
)

# Longest names first so that "math-ph" is not read as "math" followed by junk.
_ARCHIVE_ALT = "|".join(sorted((re.escape(a) for a in OLD_ARCHIVES), key=len, reverse=True))

# The id itself, loose enough to recognise a mistyped date so the error can say what is wrong.
_CORE = (
    r"(?:(?P<yy>\d{2})(?P<mm>\d{2})\.(?P<num>\d{4,5})"
    rf"|(?P<arch>{_ARCHIVE_ALT})(?:\.(?P<subj>[a-z][a-z-]*))?/(?P<oyy>\d{{2}})(?P<omm>\d{{2}})(?P<onum>\d{{3}}))"
    r"(?:v(?P<ver>\d+))?"
)

# Everything that may stand before the id when the whole message is one reference.
_PREFIX = r"""
    (?:
        arxiv(?::\s*|\s+|\.)                                   # arXiv:2401.12345, arXiv 2401...
      | (?:(?:https?://)?(?:dx\.)?doi\.org/|doi:\s*)?10\.48550/arxiv\.   # the DataCite DOI
      | (?:https?://)?(?:(?:www|export|m)\.)?(?:arxiv\.org|xxx\.lanl\.gov)
            /(?:abs|pdf|html|src|e-print|format|ps|dvi)/(?:arxiv:)?
      | (?:https?://)?(?:ar5iv\.labs\.arxiv\.org|(?:www\.)?ar5iv\.org)/(?:html|abs)/
      | (?:https?://)?(?:www\.)?alphaxiv\.org/(?:abs|overview|pdf)/
      | (?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/papers/
    )?
"""

_FULL_RE = re.compile(
    rf"{_PREFIX}{_CORE}(?:\.pdf)?/?(?:[?#].*)?",
    re.IGNORECASE | re.VERBOSE | re.DOTALL | re.ASCII,
)

# re.ASCII throughout: \d must not accept other scripts' digits, nor IGNORECASE fold "ı" to "i".
# In free text an id must stand on its own: not glued to letters, digits or a longer number.
# "arxiv." may precede it (the DOI form), and "/" or ":" (links, "arXiv:").
_FIND_RE = re.compile(
    r"(?:(?<![\w.\-])|(?<=arxiv\.))" + _CORE + r"(?!\w)(?!\.\d)",
    re.IGNORECASE | re.ASCII,
)

_CANONICAL_RE = re.compile(
    rf"(?:(?P<yy>\d{{2}})(?P<mm>\d{{2}})\.(?P<num>\d{{4,5}})"
    rf"|(?P<arch>{_ARCHIVE_ALT})/(?P<oyy>\d{{2}})(?P<omm>\d{{2}})(?P<onum>\d{{3}}))",
    re.ASCII,
)

# Wrapping a person may put around a reference: quotes, brackets, markdown, sentence end.
_STRIP_BOTH = " \t\r\n\u00a0\u200b\ufeff<>()[]{}\"'`*_“”‘’«»‹›"
_STRIP_END = ".,;:!?"


class InvalidArxivId(ValueError):
    """Raised for text that is not an arXiv id; `str(e)` is fit to show to the user."""


@dataclass(frozen=True, slots=True)
class ArxivId:
    id: str  # canonical, without version: "2401.12345", "hep-th/9901001"
    version: int | None = None

    def __str__(self) -> str:
        return f"{self.id}v{self.version}" if self.version is not None else self.id


def _problem(m: re.Match[str]) -> str | None:
    """Why a shape-matching id cannot exist, or None when it can."""
    if m.group("num") is not None:
        yymm = int(m.group("yy") + m.group("mm"))
        month = int(m.group("mm"))
        digits = len(m.group("num"))
        if not 1 <= month <= 12:
            return f"month {m.group('mm')} does not exist"
        if yymm < 704:
            return "ids of this form began in April 2007 (0704)"
        if yymm < 1501 and digits != 4:
            return "ids before 2015 have 4 digits after the dot"
        if yymm >= 1501 and digits != 5:
            return "ids from 2015 on have 5 digits after the dot"
        if int(m.group("num")) == 0:
            return "paper numbers start at 1"
    else:
        month = int(m.group("omm"))
        yy = int(m.group("oyy"))
        if not 1 <= month <= 12:
            return f"month {m.group('omm')} does not exist"
        # Old-style ids ran from 1991 until March 2007.
        if not (yy >= 91 or yy < 7 or (yy == 7 and month <= 3)):
            return "old-style ids (archive/yymmnnn) ran from 1991 to March 2007"
        if int(m.group("onum")) == 0:
            return "paper numbers start at 1"
    ver = m.groupdict().get("ver")
    if ver is not None and int(ver) < 1:
        return "versions start at v1"
    return None


def _build(m: re.Match[str]) -> ArxivId:
    if m.group("num") is not None:
        canonical = f"{m.group('yy')}{m.group('mm')}.{m.group('num')}"
    else:
        canonical = f"{m.group('arch').lower()}/{m.group('oyy')}{m.group('omm')}{m.group('onum')}"
    ver = m.group("ver")
    return ArxivId(canonical, int(ver) if ver is not None else None)


def _quote(text: str) -> str:
    shown = " ".join(text.split())
    if len(shown) > 60:
        shown = shown[:57] + "…"
    return f"“{shown}”"


def _unwrap(text: str) -> str:
    # %2F appears when an old-style id travels inside a query string.
    text = re.sub("%2f", "/", text, flags=re.IGNORECASE)
    prev = None
    while prev != text:
        prev = text
        text = text.strip(_STRIP_BOTH).rstrip(_STRIP_END)
    return text


def parse_arxiv_id(text: str) -> ArxivId:
    """The arXiv id in `text`, which must be one reference (id, link, DOI), nothing more."""
    cleaned = _unwrap(text)
    if not cleaned:
        raise InvalidArxivId(f"That is empty. {_HINT}")
    m = _FULL_RE.fullmatch(cleaned)
    if m is None:
        raise InvalidArxivId(f"{_quote(text)} is not an arXiv id. {_HINT}")
    problem = _problem(m)
    if problem is not None:
        raise InvalidArxivId(f"{_quote(text)} is not an arXiv id: {problem}. {_HINT}")
    return _build(m)


def find_arxiv_ids(text: str) -> list[ArxivId]:
    """Every valid id mentioned in free text, in order, once per canonical id (first wins)."""
    text = re.sub("%2f", "/", text, flags=re.IGNORECASE)
    seen: set[str] = set()
    found: list[ArxivId] = []
    for m in _FIND_RE.finditer(text):
        if _problem(m) is not None:
            continue
        aid = _build(m)
        if aid.id not in seen:
            seen.add(aid.id)
            found.append(aid)
    return found


def is_valid_id(canonical: str) -> bool:
    """Whether `canonical` is already a canonical id (no version, no subject class)."""
    m = _CANONICAL_RE.fullmatch(canonical)
    return m is not None and _problem(m) is None
