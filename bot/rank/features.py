"""Text -> vectors: TF-IDF over a fixed vocabulary, folded into an LSA space.

The vocabulary, IDF weights and the LSA basis come from a background corpus of real arXiv
abstracts shipped with the package (bot/data/background.jsonl.xz, see bot/data/SOURCES.md),
computed once per process (about a second of CPU, in a thread): nothing is downloaded.
LSA puts words that occur in the same abstracts near each other, so "shape matching"
finds "correspondence" papers that never say "matching".
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import lzma
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from bot.models import Paper

DIMENSIONS = 128  # LSA dimensions: enough for topics, small enough for 10,000 chats a round
BACKGROUND_SAMPLE = 64
_WORD = re.compile(r"[a-z][a-z0-9]*")
_MATH = re.compile(r"\$[^$]*\$")
# Function words and the boilerplate of abstracts: they say nothing about a topic.
_STOP = frozenset(
    """a about above across after again against all also although among an and another any
    are as at be been before being below between both but by can could did do does doing
    done due during each either et etc even ever every few for from further had has have
    having here how however i if in into is it its itself just less many may might more
    most much must my near neither no nor not now of off often on once one only or other
    our ours out over own per rather same several shall she should since so some such than
    that the their them then there these they this those though three through thus to too
    two under until up upon us very via was we were what when where whether which while
    who whom whose why will with within without would yet you your al ii iii new use used
    using uses based approach approaches propose proposed proposes present presents paper
    method methods result results show shows shown demonstrate demonstrates novel work
    study studies introduce introduces existing effective effectively significantly
    significant experiment experiments experimental achieve achieves achieving state art
    performance framework task tasks model models data code available extensive outperform
    outperforms improve improves improved improvement first well make makes enable
    enables furthermore moreover finally specifically""".split()  # noqa: SIM905
)


_SUFFIXES = ("ations", "ation", "ings", "ing", "ed")


def stem(word: str) -> str:
    """A light suffix folding, so the forms of a word meet: 'segmenting', 'segmented',
    'segmentation' -> 'segment'; 'labelling' -> 'label'; 'models' -> 'model'."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            base = word[: -len(suffix)]
            if base[-1] == base[-2] and base[-1] not in "sz":  # 'labell' -> 'label'
                base = base[:-1]
            return base
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Content words of a text, casefolded and folded, in order (math dropped)."""
    text = _MATH.sub(" ", text.casefold())
    return [stem(w) for w in _WORD.findall(text) if w not in _STOP and len(w) > 1]


def terms(text: str) -> Counter[str]:
    """Words and adjacent word pairs: 'shape correspondence' is one more clue than each word."""
    found = words(text)
    counts = Counter(found)
    counts.update(f"{a} {b}" for a, b in itertools.pairwise(found))
    return counts


def paper_terms(paper: Paper) -> Counter[str]:
    counts = terms(f"{paper.title}. {paper.title}. {paper.abstract}")  # the title counts twice
    counts.update(f"cat:{c.casefold()}" for c in paper.categories[:3])
    return counts


@dataclass(frozen=True, slots=True)
class Lexical:
    """A unit-length TF-IDF vector: vocabulary indices (sorted) and weights."""

    index: np.ndarray
    weight: np.ndarray

    def dot(self, other: Lexical) -> float:
        common, mine, theirs = np.intersect1d(
            self.index, other.index, assume_unique=True, return_indices=True
        )
        return float(self.weight[mine] @ other.weight[theirs]) if len(common) else 0.0


class Space:
    """The vocabulary, IDF and LSA basis of the background corpus."""

    def __init__(self, docs: Sequence[Counter[str]], dimensions: int = DIMENSIONS) -> None:
        df: Counter[str] = Counter()
        for doc in docs:
            df.update(doc.keys())
        # Pairs must recur to mean something; single words twice.
        vocab = sorted(t for t, n in df.items() if n >= (3 if " " in t else 2))
        self.vocab = {t: i for i, t in enumerate(vocab)}
        n = len(docs)
        self.idf = np.array([math.log((n + 1) / (df[t] + 1)) + 1.0 for t in vocab], np.float32)
        rows = [self.lexical(d) for d in docs]
        self.basis = self._lsa(rows, dimensions)
        # A spread of ordinary papers: the model's prior that a paper is of no interest.
        step = max(1, len(rows) // BACKGROUND_SAMPLE)
        self.background = np.stack([self.embed(r) for r in rows[::step][:BACKGROUND_SAMPLE]])

    def lexical(self, counts: Counter[str]) -> Lexical:
        pairs = sorted((self.vocab[t], c) for t, c in counts.items() if t in self.vocab)
        if not pairs:
            return Lexical(np.zeros(0, np.int64), np.zeros(0, np.float32))
        index = np.fromiter((i for i, _ in pairs), np.int64, len(pairs))
        tf = np.fromiter((1.0 + math.log(c) for _, c in pairs), np.float32, len(pairs))
        weight = tf * self.idf[index]
        return Lexical(index, weight / np.linalg.norm(weight))

    def _lsa(self, rows: Sequence[Lexical], k: int) -> np.ndarray:
        """Right singular vectors of the document-term matrix (randomized SVD, Halko et al.),
        with the matrix kept sparse: row-wise sums by `np.add.reduceat`."""
        rows = [r for r in rows if len(r.index)]
        vocab = len(self.vocab)
        chunks = [rows[i : i + 256] for i in range(0, len(rows), 256)]  # temporaries stay small
        parts = []
        for chunk in chunks:
            nnz = np.array([len(r.index) for r in chunk])
            cols = np.concatenate([r.index for r in chunk])
            vals = np.concatenate([r.weight for r in chunk])
            rows_of = np.repeat(np.arange(len(chunk)), nnz)
            order = np.argsort(cols, kind="stable")
            by_col = cols[order]
            col_starts = np.flatnonzero(np.r_[True, by_col[1:] != by_col[:-1]])
            parts.append(
                (
                    (cols, vals, np.concatenate([[0], np.cumsum(nnz)[:-1]])),
                    (by_col[col_starts], vals[order], rows_of[order], col_starts),
                )
            )

        def x_dot(m: np.ndarray) -> np.ndarray:  # X @ m
            m = m.astype(np.float32)
            return np.concatenate([np.add.reduceat(v[:, None] * m[c], s) for (c, v, s), _ in parts])

        def xt_dot(m: np.ndarray) -> np.ndarray:  # X.T @ m
            m = m.astype(np.float32)
            out = np.zeros((vocab, m.shape[1]), np.float32)
            offset = 0
            for (_, (present, v, r, s)), chunk in zip(parts, chunks, strict=True):
                out[present] += np.add.reduceat(v[:, None] * m[offset + r], s)
                offset += len(chunk)
            return out

        rng = np.random.default_rng(14)
        y = x_dot(rng.standard_normal((vocab, k + 12)))
        for _ in range(1):  # a power iteration sharpens the spectrum
            q, _ = np.linalg.qr(y)
            q, _ = np.linalg.qr(xt_dot(q))
            y = x_dot(q)
        q, _ = np.linalg.qr(y)
        b = xt_dot(q).T  # (k + 12) x vocab
        _, _, vt = np.linalg.svd(b, full_matrices=False)
        return np.ascontiguousarray(vt[:k].T, dtype=np.float32)  # vocab x k

    def embed(self, lexical: Lexical) -> np.ndarray:
        """The unit LSA vector of a TF-IDF vector (zeros if it has no known term)."""
        if not len(lexical.index):
            return np.zeros(self.basis.shape[1], np.float32)
        z = lexical.weight @ self.basis[lexical.index]
        norm = float(np.linalg.norm(z))
        return z / norm if norm > 0 else z

    def papers(self, papers: Iterable[Paper]) -> tuple[list[Lexical], np.ndarray]:
        """TF-IDF vectors and an (n x k) matrix of unit LSA vectors."""
        lex = [self.lexical(paper_terms(p)) for p in papers]
        if not lex:
            return [], np.zeros((0, self.basis.shape[1]), np.float32)
        return lex, np.stack([self.embed(x) for x in lex])

    def text(self, text: str) -> tuple[Lexical, np.ndarray]:
        lex = self.lexical(terms(text))
        return lex, self.embed(lex)


def background_docs() -> list[Counter[str]]:
    """The shipped corpus as term counts (blocking: file read and parsing)."""
    blob = resources.files("bot").joinpath("data", "background.jsonl.xz").read_bytes()
    docs: list[Counter[str]] = []
    for line in lzma.decompress(blob).decode("utf-8").splitlines():
        row = json.loads(line)
        paper = Paper(row["id"], row["title"], abstract=row["abstract"])
        paper.categories = list(row.get("categories", []))
        docs.append(paper_terms(paper))
    return docs


@functools.cache
def default_space() -> Space:
    """The process's space, built on first use (blocking: call through `space()`)."""
    return Space(background_docs())


_lock = asyncio.Lock()


async def space() -> Space:
    """The process's space; the first caller builds it in a thread, others wait for it."""
    if default_space.cache_info().currsize:
        return default_space()
    async with _lock:
        return await asyncio.to_thread(default_space)
