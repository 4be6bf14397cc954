"""What a paper says it does: its contribution list and the abstract's claim
sentences ("we show ...", results with numbers), background ranked last."""

from __future__ import annotations

import re

from bot.explain.prose import prose
from bot.explain.sections import find_sections
from bot.explain.textutil import sentences, shorten

# ------------------------------------------------------------ contributions

CONTRIB_CUE = re.compile(
    r"contributions?\s+(?:of this (?:paper|work)\s+)?(?:are|is|include|as follows)|"
    r"(?:our|main|key)\s+contributions?|we (?:make|summari[sz]e|highlight) the following|"
    r"in summary,? we|to summari[sz]e,? (?:we|our)",
    re.I,
)
LIST_ENV = re.compile(r"\\begin\s*\{(itemize|enumerate|description)\}")
_CLAIM = re.compile(
    r"\b(?:we|this paper|this work|our (?:method|approach|model))\s+"
    r"(?:propose|introduce|present|show|demonstrate|develop|design|achieve|establish|prove)",
    re.I,
)


def list_items(body: str, start: int) -> list[str]:
    m = LIST_ENV.search(body, start)
    if not m:
        return []
    end = body.find(f"\\end{{{m.group(1)}}}", m.end())
    if end < 0:
        return []
    content = body[m.end() : end]
    items = re.split(r"\\item\s*(?:\[[^\]]*\])?", content)[1:]
    return [i.strip() for i in items if i.strip()]


def contributions(body: str, abstract: str, numbers: dict[str, str]) -> list[str]:
    for cue in CONTRIB_CUE.finditer(body):
        items = list_items(body, cue.end())
        lm = LIST_ENV.search(body, cue.end())
        if items and lm and lm.start() - cue.end() < 900:
            return [shorten(prose(i, numbers), 320) for i in items[:6]]
    # No list: the claims the introduction makes ("we propose ...").
    intro_end = len(body)
    secs = find_sections(body)
    if len(secs) > 1:
        intro_end = secs[1][0]
    found = [s for s in sentences(re.sub(r"\s+", " ", body[:intro_end])) if _CLAIM.search(s)]
    claims = [shorten(prose(s, numbers), 320) for s in found[:4]]
    if not claims and abstract:
        claims = [shorten(s, 320) for s in sentences(abstract) if _CLAIM.search(s)]
    return claims[:4]


_CLAIM_VERBS = re.compile(
    r"\b(?:we|this (?:paper|work|article|note|letter|review|study|project|report)|the (?:project|"
    r"package|library|method|algorithm|framework)|our (?:results?|method|approach|model|analysis|"
    r"work|framework|experiments?|package|code))\s+(?:also\s+|further\s+|then\s+|here\s+|first\s+|"
    r"successfully\s+|have\s+|has\s+)?"
    r"(?:show|prove|propose|obtain|introduce|demonstrate|present|establish|derive|find|found|"
    r"achieve|develop|compute|construct|give|provide|report|identify|reveal|improve|"
    r"outperform|reduce|extend|resolve|settle|confirm|determine|suggest|summari[sz]e|describe)"
    r"|\b(?:is|are) shown to\b|\bwe (?:can )?(?:now )?(?:show|prove)\b",
    re.I,
)
_NUMBERS = re.compile(r"\d+(?:\.\d+)?\s*(?:%|×|x\b|times|fold)|\b\d+(?:[.,]\d+)?\b")
_BACKGROUND = re.compile(
    r"^(?:recent(?:ly)?|however|although|while|despite|in recent|over the past|traditionally|"
    r"it is (?:well )?known|existing|previous|prior|many|most|the last)\b|\bremains? (?:an? )?"
    r"(?:open|challenging|unclear|unknown)|\bhas been\b|\bhave been\b|\bis lost\b|\bhave seen\b",
    re.I,
)


def _numbers_in(sentence: str) -> bool:
    """Numbers a reader sees: in the prose, or math that is only a number ($4694$)."""

    def keep_numeric(m: re.Match[str]) -> str:
        inner = re.sub(r"\\num\s*|[{}\s]|\\,", "", m.group(1))
        return inner if re.fullmatch(r"[\d.,%]+", inner) else " "

    return bool(_NUMBERS.search(re.sub(r"\$([^$]*)\$", keep_numeric, sentence)))


def claim_sentences(abstract: str, most: int = 2, *, strict: bool = False) -> list[str]:
    """The abstract's sentences that say what the paper does: "we show/prove/propose",
    results with numbers; background sentences rank last. In the abstract's order.
    `strict`: only sentences that make a claim (for text other than an abstract)."""
    parts = sentences(abstract)
    scored = []
    for k, sent in enumerate(parts):
        score = 0.0
        if _CLAIM_VERBS.search(sent):
            score += 3.0
        if re.search(r"\b(?:our|we)\b", sent, re.I):
            score += 1.0
        if _numbers_in(sent):
            score += 1.5
        if _BACKGROUND.search(sent):
            score -= 2.0
        scored.append((score, k))
    best = sorted(scored, key=lambda x: (-x[0], x[1]))[:most]
    if strict:
        return [parts[k] for sc, k in sorted(best, key=lambda x: x[1]) if sc >= 3.0]
    if not best or best[0][0] <= 0:
        return parts[:most]
    return [parts[k] for sc, k in sorted(best, key=lambda x: x[1]) if sc > 0] or parts[:most]
