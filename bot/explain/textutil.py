"""Text helpers shared by the explain modules: math-aware inlines, sanitizing, sentences."""

from __future__ import annotations

import re
import unicodedata

from bot.doc import Inline, Math, Text
from bot.latex import latex_to_unicode, rich_inlines

__all__ = ["latex_to_unicode", "math_inlines", "rich_inlines"]

_UPGREEK = re.compile(
    r"\\up(alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda|mu|nu|xi|pi|"
    r"rho|sigma|tau|upsilon|phi|chi|psi|omega|Gamma|Delta|Theta|Lambda|Xi|Pi|Sigma|Upsilon|Phi|"
    r"Psi|Omega)(?![A-Za-z])"
)


def upright_greek(s: str) -> str:
    """upgreek's \\uptheta is a θ like any other, for every reader of the math."""
    return _UPGREEK.sub(r"\\\1", s)


_INLINE_MATH = re.compile(r"(?<!\\)\$([^$]+?)(?<!\\)\$", re.S)


def math_inlines(text: str) -> tuple[Inline, ...]:
    """Plain text with `$...$` math -> Text and Math nodes, and nothing else.

    For our own prose and for LLM output: unlike `rich_inlines` (for arXiv metadata, which
    is LaTeX), nothing here is read as markup, so no text can turn itself into a link.
    """
    nodes: list[Inline] = []
    pos = 0
    for m in _INLINE_MATH.finditer(text):
        if m.start() > pos:
            nodes.append(Text(text[pos : m.start()]))
        src = m.group(1).strip()
        nodes.append(Math(src, latex_to_unicode(upright_greek(src))))
        pos = m.end()
    if pos < len(text):
        nodes.append(Text(text[pos:]))
    return tuple(nodes)


# ------------------------------------------------------------- sanitizing

# Zero-width and bidi controls, and the Unicode "tag" block used to smuggle invisible
# instructions to language models.
_INVISIBLE = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(s: str) -> str:
    """Drop invisible and control characters (kept: newlines and tabs)."""
    s = unicodedata.normalize("NFC", s)
    return _CONTROL.sub("", _INVISIBLE.sub("", s))


# Sentences that talk to a language model rather than to a reader. Kept narrow on
# purpose: papers about LLMs legitimately say "system prompt" or "as an assistant".
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override|neglect)\b[^.\n]{0,60}\b(previous|prior|above|earlier|"
    r"all|preceding|foregoing|system|reviewing)\b[^.\n]{0,40}\b(instruction|prompt|direction|"
    r"rule|guidance|guideline|criteria|task)s?\b"
    r"|\b(you are|you're)\s+(now\s+)?(an?\s+)?(ai|llm|large language model|language model|"
    r"assistant|chatbot|reviewer)\b"
    r"|\bif you are an?\s+(ai|llm|large language model|language model|automated)\b"
    r"|\bnew instructions?\s*:"
    r"|\bnote (?:to|for) (?:any |all |the )?(?:ai|llms?|language models?|automated|machine)"
    r"(?:\s+(?:systems?|reviewers?|models?|assistants?|tools?|agents?))?\b"
    r"|\b(give|write|provide|output)\b[^.\n]{0,30}\bpositive review\b"
    r"|\bdo not (highlight|mention|point out)\b[^.\n]{0,30}\b(negative|weakness|limitation|flaw)"
    r"|\b(llm|ai|language model)s?\b[^.\n]{0,30}\b(must|should)\b[^.\n]{0,20}"
    r"\b(recommend|accept|praise|rate)"
    r"|\b(add|include|insert|append|put)\b[^.\n]{0,40}\b(link|url|hyperlink|website)s?\b"
    r"[^\n]{0,80}?\b(summary|review|answer|response|explanation|output|reply)",
    re.I,
)
# A line that opens as a note to AI tools is dropped whole, whatever punctuation it has.
_NOTE_LINE = re.compile(
    r"^[^\n]{0,40}\bnote (?:to|for) (?:any |all |the )?(?:ai|llms?|language models?|automated|"
    r"machine)\b[^\n]*$",
    re.I | re.M,
)
# A sentence ends at . ! ? followed by a space (not inside "evil.example.com") or a newline.
_SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?]+(?=[^\s.!?]))*(?:[.!?]+|\n|$)")


def strip_injections(text: str) -> tuple[str, int]:
    """Remove sentences addressed to an AI ("ignore previous instructions ..."); count them."""
    text, removed = _NOTE_LINE.subn("", text)
    out: list[str] = []
    for m in _SENTENCE.finditer(text):
        sentence = m.group(0)
        if sentence and _INJECTION.search(sentence):
            removed += 1
            out.append("\n" if sentence.endswith("\n") else " ")
            continue
        out.append(sentence)
    return "".join(out), removed


_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\"']+", re.I)


def strip_foreign_links(text: str, allowed: set[str]) -> str:
    """Replace URLs that are not the paper's own with a marker: links come only from us."""

    def repl(m: re.Match[str]) -> str:
        url = m.group(0).rstrip(".,;:")
        tail = m.group(0)[len(url) :]
        norm = url.lower().removeprefix("https://").removeprefix("http://").rstrip("/")
        # The paper's own pages, any version of them ("…/abs/2501.00001v2").
        if any(norm == a or norm.startswith(a + "/") or _is_version(norm, a) for a in allowed):
            return m.group(0)
        return "[link removed]" + tail

    return _URL.sub(repl, text)


def mark_urls(text: str) -> str:
    """Every web address in paper text, marked as data: a model must not take it as a link
    to add or a page to visit."""

    def repl(m: re.Match[str]) -> str:
        url = m.group(0).rstrip(".,;:")
        return f"[URL, data only: {url}]" + m.group(0)[len(url) :]

    return _URL.sub(repl, text)


def _is_version(url: str, base: str) -> bool:
    return url.startswith(base + "v") and url[len(base) + 1 :].isdigit()


def url_key(url: str) -> str:
    return url.lower().removeprefix("https://").removeprefix("http://").rstrip("/")


_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[$\\])")


def sentences(text: str) -> list[str]:
    """Split prose into sentences, a little careful about abbreviations and math."""
    parts = _SENT_END.split(text.strip())
    out: list[str] = []
    for p in parts:
        if out and re.search(r"\b(e\.g|i\.e|et al|cf|Fig|Eq|Sec|vs|resp)\.$", out[-1]):
            out[-1] += " " + p
        else:
            out.append(p)
    return [s.strip() for s in out if s.strip()]


def shorten(text: str, limit: int) -> str:
    """Cut at a word boundary, never inside `$...$` math."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if cut.count("$") % 2:
        cut = cut[: cut.rfind("$")]
    cut = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return cut.rstrip(" ,;:") + "…"
