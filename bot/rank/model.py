"""A chat's model: logistic regression on LSA vectors, fitted on the chat's votes.

Likes are positives; dislikes negatives; papers the chat received and ignored are weak
negatives. Recent votes weigh more (half-life `HALF_LIFE_DAYS`). A chat has at most a few
hundred votes and the vectors have 128 dimensions, so a few Newton steps fit it in a
millisecond: the model is refitted on every vote, and stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HALF_LIFE_DAYS = 90.0
IGNORED_WEIGHT = 0.15  # an unvoted paper says little: maybe it was just not read
# Ordinary background papers count as one dislike in all: with only likes, the model still
# learns what sets them apart from the rest of arXiv, not just "everything is liked".
BACKGROUND_WEIGHT = 1.0
L2 = 1.0  # keeps ten votes from overfitting


@dataclass(frozen=True, slots=True)
class Example:
    vector: np.ndarray  # unit LSA vector of the paper
    label: int  # 1 liked, 0 disliked or ignored
    weight: float  # vote weight times recency


def recency(age_days: float) -> float:
    return float(0.5 ** (max(age_days, 0.0) / HALF_LIFE_DAYS))


@dataclass(frozen=True, slots=True)
class Model:
    weights: np.ndarray  # k + 1 values, the last is the bias
    # The chat's latest likes (title, unit vector): "close to <a paper you liked>".
    liked: tuple[tuple[str, np.ndarray], ...] = ()

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self.weights[:-1] + self.weights[-1]

    def to_bytes(self) -> bytes:
        """A JSON header (dimensions, liked titles), then float32 weights and liked vectors."""
        header = json.dumps(
            {"dims": len(self.weights) - 1, "liked": [t for t, _ in self.liked]}
        ).encode()
        arrays = [self.weights, *(v for _, v in self.liked)]
        body = b"".join(np.asarray(a, "<f4").tobytes() for a in arrays)
        return len(header).to_bytes(4, "little") + header + body

    @classmethod
    def from_bytes(cls, blob: bytes, dimensions: int) -> Model | None:
        """None when the blob is unreadable or does not fit today's feature space."""
        try:
            size = int.from_bytes(blob[:4], "little")
            header = json.loads(blob[4 : 4 + size])
            values = np.frombuffer(blob[4 + size :], dtype="<f4").astype(np.float32)
            titles = [str(t) for t in header["liked"]]
        except (ValueError, KeyError, TypeError):
            return None
        if (
            header.get("dims") != dimensions
            or len(values) != (dimensions + 1) + len(titles) * dimensions
        ):
            return None
        liked = tuple(
            (t, values[dimensions + 1 + i * dimensions : dimensions + 1 + (i + 1) * dimensions])
            for i, t in enumerate(titles)
        )
        return cls(values[: dimensions + 1], liked)


def fit(
    examples: Sequence[Example], background: np.ndarray | None = None, steps: int = 8
) -> Model | None:
    """Weighted L2-regularized logistic regression by Newton's method, with `background`
    vectors as faint negatives; None without an example to learn from."""
    if not examples:
        return None
    if background is not None and len(background):
        share = BACKGROUND_WEIGHT / len(background)
        examples = [*examples, *(Example(v, 0, share) for v in background)]
    x = np.stack([e.vector for e in examples]).astype(np.float64)
    x = np.hstack([x, np.ones((len(x), 1))])
    y = np.array([e.label for e in examples], np.float64)
    s = np.array([e.weight for e in examples], np.float64)
    reg = np.full(x.shape[1], L2)
    reg[-1] = 1e-3  # the bias is barely held back
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (s * (p - y)) + reg * w
        hess = (x.T * (s * p * (1 - p))) @ x + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-6:
            break
    return Model(w.astype(np.float32))
