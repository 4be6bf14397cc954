"""Which equations and theorem-like statements are the paper's own result: scores
from how the paper points at them, where they sit and what they look like."""

from __future__ import annotations

import re

from bot.explain.claims import CONTRIB_CUE, LIST_ENV, list_items
from bot.explain.equations import AFTER_START, Equation
from bot.explain.prose import REF
from bot.explain.sections import section_text
from bot.explain.textutil import sentences
from bot.explain.theorems import RESULT_KINDS, Statement

_OBJECTIVE_MATH = re.compile(
    r"\\mathcal\s*\{?\s*L|\\(?:arg)?min|\\(?:arg)?max|\\operatorname\*?\s*\{\s*arg|"
    r"\\mathbb\s*\{?\s*E|\\log\s*p|\\ell\b|\\text\s*\{\s*loss|\\mathrm\s*\{\s*loss|ELBO",
)
_OBJECTIVE_WORDS = re.compile(
    r"\b(loss|objective|minimi[sz]e|maximi[sz]e|optimi[sz]|training|likelihood|ELBO|reward|"
    r"cost function|regulari[sz])",
    re.I,
)
_DEFINITION_WORDS = re.compile(
    r"\b(defined?|given by|computed as|formulated|we (?:model|write|obtain|use|compute|get)|"
    r"update|follows|as follows|is:|are:)",
    re.I,
)
_METHOD_SECTION = re.compile(
    r"method|approach|model|framework|formulation|objective|training|our|propos|algorithm|"
    r"architecture|learning|technique|design",
    re.I,
)
_WEAK_SECTION = re.compile(
    r"related|background|preliminar|notation|experiment|evaluation|prior|review|known results|"
    r"setup|set-up|recap",
    re.I,
)


# ------------------------------------------------------------------- scoring


_POINTER_WORDS = re.compile(
    r"\bmain (?:result|theorem|contribution|equation|formula|finding)s?\b"
    r"|\bour (?:main |key |central )?(?:objective|loss|result|formula|estimator|bound|method)\b"
    r"|\bwe propose\b|\bkey (?:result|"
    r"equation)\b|\bcentral (?:result|equation)\b|\bthe result of this (?:work|paper)\b",
    re.I,
)
_RECALL_WORDS = re.compile(
    r"\b(?:we|let us) (?:first )?recall\b|\brecall that\b|\bwell[- ]known\b|\bclassical(?:ly)?\b|"
    r"\bit is known\b|\bstandard\b|\bas (?:shown|proved|derived|introduced) (?:in|by)\b|"
    r"\b(?:introduced|proposed|derived|obtained|proved|shown) (?:in|by)\s*(?:\\cite|\[|[A-Z])|"
    r"\bfollowing\s+(?:\\cite|[A-Z][a-z]+ et al)|\bprevious(?:ly)? (?:work|result)|\bprior work\b",
    re.I,
)


_DERIVED = re.compile(
    r"\b(?:it follows that|we (?:obtain|find|arrive at|get|conclude)|which (?:gives|yields)|"
    r"this (?:gives|yields)|is then (?:just|simply|given by)|(?:by )?(?:plugging|substituting|"
    r"combining|inserting))\b",
    re.I,
)
_PROVES = re.compile(
    r"\b(?:which|this) (?:proves|establishes|completes the proof of) (?:our|the)\b|"
    r"\bour (?:main )?(?:result|proposition|claim)\b",
    re.I,
)
_HYPOTHETICAL = re.compile(r"\bwould (?:be|have|give|yield)\b|\bif instead\b", re.I)
_STOP = frozenset(
    re.findall(
        r"\w+",
        "about above after again along also among another based being below between both could "
        "during each every first from further given having here into itself many more most much "
        "other over same several should since some such than that their them then there these "
        "they this those through thus under using very where which while with within without "
        "would paper method approach results result show shows shown propose proposed present "
        "equation equations following",
    )
)


def content_words(text: str) -> set[str]:
    words = re.findall(r"[A-Za-z][a-z]{4,}", re.sub(r"\$[^$]*\$|\\[A-Za-z]+", " ", text))
    return {w.lower() for w in words} - _STOP


def score_equation(
    eq: Equation,
    refs: int,
    intro: str,
    after: str,
    appendix_at: int,
    *,
    pointed: int = 0,
    in_main: bool = False,
    claim_words: set[str] | None = None,
) -> float:
    score = 0.0
    # An author who boxes an equation is pointing at it.
    if eq.boxed:
        score += 4.0
    if _DERIVED.search(intro):
        score += 1.0
        if len(REF.findall(intro)) >= 2:
            score += 1.0  # it brings several earlier equations together: a culmination
    if _PROVES.search(after[:200]):
        score += 2.0
    if _HYPOTHETICAL.search(intro):
        score -= 1.5
    if claim_words:
        # The sentence introducing it talks about what the abstract claims.
        score += min(3, len(content_words(intro) & claim_words)) * 0.75
    if eq.number:
        score += 1.0
    score += min(refs, 4) * 1.0
    words = intro + " " + after[:200]
    if _OBJECTIVE_MATH.search(eq.latex) or _OBJECTIVE_WORDS.search(intro):
        eq.kind = "objective"
        score += 3.0 if _OBJECTIVE_WORDS.search(words) else 1.5
    elif _DEFINITION_WORDS.search(intro):
        eq.kind = "definition"
        score += 1.0
    if AFTER_START.match(after or ""):
        score += 1.0
    # What the paper itself points at as its result, and what it only quotes.
    if pointed:  # 2: by the abstract, contributions or a "main result" sentence; 1: conclusion
        score += 4.0 if pointed == 2 else 2.5
    if _POINTER_WORDS.search(intro):
        score += 2.5
    if in_main:
        score += 3.0
    elif eq.statement:
        score += 1.0
    if _RECALL_WORDS.search(intro) or "\\cite" in intro or "\\cite" in after[:150]:
        score -= 3.0
    if _METHOD_SECTION.search(eq.section) and not _WEAK_SECTION.search(eq.section):
        score += 1.0
    elif _WEAK_SECTION.search(eq.section):
        score -= 2.0
    if appendix_at >= 0 and eq.position > appendix_at:
        score -= 3.0
    size = len(eq.latex)
    if size < 10:
        score -= 3.0
    elif size > 400:
        score -= 1.5
    if len(eq.lines) > 4:
        score -= 1.0
    return score


def choose(equations: list[Equation], most: int = 4, least: int = 2) -> list[Equation]:
    """The 2-4 equations worth showing, in document order."""
    if not equations:
        return []
    ranked = sorted(equations, key=lambda e: (-e.score, e.position))
    best = ranked[0].score
    floor = max(1.0, min(best * 0.4, 3.0))
    chosen = [e for e in ranked[:most] if e.score >= floor]
    for e in ranked:
        if len(chosen) >= min(least, len(ranked)):
            break
        if e not in chosen and e.score > -2:
            chosen.append(e)
    chosen.sort(key=lambda e: e.position)
    for i, e in enumerate(chosen, 1):
        e.eid = f"E{i}"
    return chosen


_CONCLUSION = re.compile(r"conclu|discussion|summary|outlook|final remarks|closing", re.I)
_INTRO = re.compile(r"intro|overview|motivation", re.I)


def pointed_labels(
    body: str, raw_abstract: str, secs: list[tuple[int, int, bool, str]]
) -> tuple[set[str], set[str]]:
    """Labels the paper points at as its result: (strongly) referenced from the abstract,
    from the introduction's contribution list or from a sentence that says "main result",
    "our objective", "we propose"; and (weakly) referenced from the conclusion."""
    places = [raw_abstract]
    intro = section_text(body, secs, _INTRO)
    if not intro:
        tops = [p for p, lvl, _s, _t in secs if lvl == 1]
        intro = body[: tops[1]] if len(tops) > 1 else ""
    for cue in CONTRIB_CUE.finditer(intro):
        lm = LIST_ENV.search(intro, cue.end())
        if lm and lm.start() - cue.end() < 900:
            places.append("\n".join(list_items(intro, cue.end())))
    for sentence in sentences(re.sub(r"\s+", " ", body)):
        if _POINTER_WORDS.search(sentence) and REF.search(sentence):
            places.append(sentence)

    def labels(texts: list[str]) -> set[str]:
        found: set[str] = set()
        for place in texts:
            for m in REF.finditer(place):
                found.update(k.strip() for k in m.group(2).split(",") if k.strip())
        return found

    strong = labels(places)
    return strong, labels([section_text(body, secs, _CONCLUSION)]) - strong


_MAIN_CUE = re.compile(r"\bmain\b|\bcentral\b|\bprincipal\b|\bkey\b", re.I)


def _title_terms(title: str) -> set[str]:
    """What a paper's title is about: its acronyms and longer words."""
    words = re.findall(r"[A-Za-z][A-Za-z-]+", title)
    return {w.lower() for w in words if (w.isupper() and len(w) >= 2) or len(w) >= 6} - _STOP


def _score_statement(
    st: Statement,
    pointed: tuple[set[str], set[str]],
    body: str,
    intro_end: int,
    appendix_at: int,
    title_terms: set[str] | None = None,
) -> float:
    score = {"theorem": 3.0, "proposition": 2.0, "corollary": 1.0, "claim": 0.5}.get(st.kind, 0.0)
    if _MAIN_CUE.search(st.name + " " + st.title + " " + (st.label or "")):
        score += 5.0
    if title_terms and st.title:
        # "Theorem (PFR)" in a paper titled "PFR Blueprint": named after what the paper is about.
        note = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z-]+", st.title)}
        shared = note & title_terms
        if shared:
            score += 4.0 if note <= title_terms | _STOP | {"of", "the", "a"} else 2.0
    if st.label and st.label in pointed[0]:
        score += 3.0
    elif st.label and st.label in pointed[1]:
        score += 1.0
    lead = body[max(0, st.position - 300) : st.position]
    if _POINTER_WORDS.search(lead.split("\n\n")[-1]):
        score += 3.0
    if st.position < intro_end:
        score += 2.0  # math papers state their main theorem in the introduction
    if (
        "\\cite" in st.title
        or _RECALL_WORDS.search(lead[-200:])
        or _WEAK_SECTION.search(st.section)
    ):
        score -= 4.0  # a quoted, known result
    if appendix_at >= 0 and st.position > appendix_at:
        score -= 3.0
    return score


def main_results(
    stmts: list[Statement],
    pointed: tuple[set[str], set[str]],
    body: str,
    secs: list[tuple[int, int, bool, str]],
    title: str = "",
) -> list[Statement]:
    tops = [p for p, lvl, _s, _t in secs if lvl == 1]
    terms = _title_terms(title)
    intro_end = tops[1] if len(tops) > 1 else len(body) // 4
    appendix_at = body.find("\\appendix")
    ranked = []
    for st in stmts:
        if st.kind not in RESULT_KINDS:
            continue
        st.score = _score_statement(st, pointed, body, intro_end, appendix_at, terms)
        ranked.append(st)
    ranked.sort(key=lambda st: (-st.score, st.position))
    # A statement is the paper's result when it is named so, stated in the introduction or
    # pointed at; a technical lemma deep in the body is not, however often it is used.
    floor = 4.0
    if not ranked or ranked[0].score < floor:
        return []
    best = ranked[0].score
    return [st for st in ranked[:3] if st.score >= max(floor, best - 3.0)]
