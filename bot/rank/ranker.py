"""A chat's digest order: its model, its topics and the day's signals, with a reason each.

The shared ranking of a round (bot/digest.py: HF upvotes, subscriptions matched, new before
cross-list) is what an untrained chat gets. A chat with votes or topics gets it re-ranked
here: `score = model logit + topic similarity + day signals`, papers under the chat's
quality floor dropped, and a short "why this paper" for each one kept.

The work that does not depend on the chat (vectors of the day's papers, an inverted index
for topic words) is done once per candidate list (`Day`); per chat it is a matrix-vector
product and a sort, so a 500-paper day ranks for 10,000 chats in about a second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bot.models import Paper
from bot.rank.features import Lexical, Space
from bot.rank.model import Model
from bot.store.learning import Quality

TOPIC_THRESHOLD = 0.30  # default: a topic match needs this similarity; /settings topic tightens
_LEXICAL_SHARE = 0.5  # topic similarity = half exact words, half LSA meaning
# Quality floors on a paper's relevance (0..1): strict sends only what looks relevant.
FLOORS: dict[str, float] = {"strict": 0.5, "normal": 0.15, "all": 0.0}
_CLOSE = 0.55  # "close to <a paper you liked>" from this cosine on


@dataclass(slots=True)
class Topic:
    text: str
    lexical: Lexical
    vector: np.ndarray


@dataclass(slots=True)
class Profile:
    """What ranking knows about one chat."""

    model: Model | None = None
    topics: dict[str, list[Topic]] = field(default_factory=dict)  # by feed
    topic_threshold: float = TOPIC_THRESHOLD
    quality: Quality = "normal"

    @property
    def personal(self) -> bool:
        return self.model is not None or bool(self.topics)


def topic(space: Space, text: str) -> Topic:
    lexical, vector = space.text(text)
    return Topic(text, lexical, vector)


@dataclass(slots=True)
class Ranked:
    key: str
    paper: Paper
    why: str
    relevance: float | None


class Day:
    """One candidate list (shared ranking order) with its vectors, for every chat."""

    def __init__(
        self,
        space: Space,
        ranked: Sequence[tuple[str, Paper]],
        feeds: Mapping[str, Sequence[str]] | None = None,
        vectors: Mapping[str, tuple[Lexical, np.ndarray]] | None = None,
    ) -> None:
        self.space = space
        self.ranked = list(ranked)
        self.feeds = feeds or {}  # base id -> feeds that brought it
        known = vectors or {}
        missing = [p for k, p in self.ranked if k not in known]
        lex_new, z_new = space.papers(missing)
        fresh = dict(zip((p.id for p in missing), zip(lex_new, z_new, strict=True), strict=True))
        self.lexical: list[Lexical] = []
        rows: list[np.ndarray] = []
        for key, paper in self.ranked:
            lex, z = known[key] if key in known else fresh[paper.id]
            self.lexical.append(lex)
            rows.append(z)
        dims = space.basis.shape[1]
        self.vectors = np.stack(rows) if rows else np.zeros((0, dims), np.float32)
        self.signals = np.array([_signal(p, i) for i, (_, p) in enumerate(self.ranked)])
        self._columns: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
        self._topic_cache: dict[str, np.ndarray] = {}

    def _inverted(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        if self._columns is None:
            postings: dict[int, tuple[list[int], list[float]]] = {}
            for row, lex in enumerate(self.lexical):
                for term, weight in zip(lex.index.tolist(), lex.weight.tolist(), strict=True):
                    entry = postings.setdefault(term, ([], []))
                    entry[0].append(row)
                    entry[1].append(weight)
            self._columns = {
                t: (np.array(r), np.array(w, np.float32)) for t, (r, w) in postings.items()
            }
        return self._columns

    def topic_scores(self, t: Topic) -> np.ndarray:
        """Similarity of every paper to a topic: exact words and LSA meaning, 0..1."""
        cached = self._topic_cache.get(t.text)
        if cached is not None:
            return cached
        lexical = np.zeros(len(self.ranked), np.float32)
        columns = self._inverted()
        for term, weight in zip(t.lexical.index.tolist(), t.lexical.weight.tolist(), strict=True):
            hit = columns.get(term)
            if hit is not None:
                lexical[hit[0]] += weight * hit[1]
        meaning = np.clip(self.vectors @ t.vector, 0.0, 1.0)
        scores = _LEXICAL_SHARE * np.sqrt(lexical) + (1 - _LEXICAL_SHARE) * meaning
        self._topic_cache[t.text] = scores
        return scores

    def rank(self, profile: Profile, count: int, skip: set[str] | None = None) -> list[Ranked]:
        """The chat's best `count` papers (not in `skip`), best first, each with a reason."""
        n = len(self.ranked)
        if n == 0:
            return []
        score = self.signals.copy()
        relevance: np.ndarray | None = None
        best_topic = np.full(n, -1)
        if profile.topics:
            keep = np.zeros(n, bool)
            topic_sim = np.zeros(n, np.float32)
            all_topics = texts_of(profile)
            sims = np.stack([self.topic_scores(t) for t in all_topics])
            index = {id(t): i for i, t in enumerate(all_topics)}
            for row, (key, _) in enumerate(self.ranked):
                for feed in self.feeds.get(key, ()):
                    mine = profile.topics.get(feed)
                    if not mine:
                        keep[row] = True  # this feed has no topic: its keyword filters ruled
                        continue
                    for t in mine:
                        s = sims[index[id(t)], row]
                        if s >= profile.topic_threshold:
                            keep[row] = True
                            if s > topic_sim[row]:
                                topic_sim[row], best_topic[row] = s, index[id(t)]
            if not self.feeds:
                keep[:] = True
            score += 3.0 * topic_sim
            score[~keep] = -np.inf
            relevance = np.where(best_topic >= 0, np.minimum(1.0, topic_sim * 2), 0.0)
        if profile.model is not None:
            logits = profile.model.logits(self.vectors)
            score += logits
            likely = 1.0 / (1.0 + np.exp(-logits))
            relevance = likely if relevance is None else np.maximum(relevance, likely)
        floor = FLOORS[profile.quality]
        texts = texts_of(profile)
        order = np.argsort(-score, kind="stable")
        out: list[Ranked] = []
        for row in order.tolist():
            if len(out) >= count or score[row] == -np.inf:
                break
            key, paper = self.ranked[row]
            if skip and key in skip:
                continue
            rel = None if relevance is None else float(relevance[row])
            if rel is not None and profile.personal and rel < floor:
                continue
            out.append(Ranked(key, paper, self._why(profile, row, best_topic, texts), rel))
        return out

    def explore(self, count: int, skip: set[str] | None = None) -> list[tuple[str, Paper]]:
        """Papers to rate for a cold start (/train): spread over the day's subjects, so a
        few taps tell the model most about the chat (farthest-point sampling on the
        vectors, from the top of the shared ranking; papers in `skip`, already rated,
        count as picked, so a second /train goes on where the first stopped)."""
        skip = skip or set()
        rows = [i for i, (k, _) in enumerate(self.ranked) if k not in skip]
        if not rows:
            return []
        seeds = [i for i, (k, _) in enumerate(self.ranked) if k in skip]
        pool = self.vectors[rows]
        chosen: list[int] = []
        if seeds:
            nearest = (pool @ self.vectors[seeds].T).max(axis=1)
        else:
            chosen.append(rows[0])
            nearest = pool @ self.vectors[rows[0]]
        while len(chosen) < min(count, len(rows)):
            pick = int(np.argmin(nearest))
            chosen.append(rows[pick])
            nearest = np.maximum(nearest, pool @ self.vectors[rows[pick]])
        return [self.ranked[i] for i in chosen]

    def _why(self, profile: Profile, row: int, best_topic: np.ndarray, texts: list[Topic]) -> str:
        if best_topic[row] >= 0:
            return f"matches your topic “{texts[int(best_topic[row])].text}”"
        liked = profile.model.liked if profile.model is not None else ()
        if liked:
            z = self.vectors[row]
            sims = [float(z @ v) for _, v in liked]
            best = int(np.argmax(sims))
            if sims[best] >= _CLOSE:
                return f"close to “{_short(liked[best][0])}” you liked"
        return plain_reason(self.ranked[row][1], self.feeds.get(self.ranked[row][0], ()))


def texts_of(profile: Profile) -> list[Topic]:
    return [t for ts in profile.topics.values() for t in ts]


def plain_reason(paper: Paper, feeds: Sequence[str] = ()) -> str:
    """Why a paper is here without any learning: where it is new, and its upvotes."""
    parts: list[str] = []
    arxiv = [f.removeprefix("arxiv:") for f in feeds if f.startswith("arxiv:")]
    if arxiv:
        parts.append(f"new in {', '.join(arxiv)}")
    elif "hf:trending" in feeds or (not feeds and paper.announce_type is None and paper.upvotes):
        parts.append("trending on Hugging Face")
    elif "hf:daily" in feeds:
        parts.append("in Hugging Face daily papers")
    elif paper.primary_category:
        parts.append(f"new in {paper.primary_category}")
    if paper.upvotes:
        parts.append(f"{paper.upvotes} upvote{'s' if paper.upvotes != 1 else ''}")
    return ", ".join(parts)


def _short(title: str, limit: int = 60) -> str:
    title = " ".join(title.split())
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def _signal(paper: Paper, position: int) -> float:
    """Today's signals, small next to a trained model: upvotes, then the shared order."""
    upvotes = math.log1p(paper.upvotes or 0) / math.log1p(500)
    return 0.5 * upvotes - 0.0005 * position
