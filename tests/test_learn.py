"""The parts of issue 14 below the chat: topics in plain words, /train picks, the model's
storage form, BibTeX from stored metadata, and the topic filter end to end in the terminal."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import bibtexparser
import numpy as np
import pytest

from adapters.console import ConsoleChat, render_reply
from bot.commands import UsageError
from bot.commands.parse import split_topics
from bot.library import bibtex, cite_key, year
from bot.models import Paper
from bot.rank.features import default_space
from bot.rank.model import Example, Model, fit
from bot.rank.ranker import Day, Profile, topic
from bot.service import Paperboy
from tests.learn_data import FEED, cs_cv_papers, seed_feed

# Read off the titles of the first 40 cs.CV papers of 2026-05-06 (tests/learn_data.py):
# the ones about segmenting images.
SEGMENTATION = {
    "2605.03053",  # … automated organoid image segmentation
    "2605.03059",  # Learning to Segment using Summary Statistics and Weak Supervision
    "2605.03098",  # One Sequence to Segment Them All: … CT and MRI Cross-Domain Segmentation
    "2605.03144",  # NucEval: … Nuclear Instance Segmentation
    "2605.03175",  # DINO Soars: … Open-Vocabulary Semantic Segmentation of Remote Sensing …
    "2605.03405",  # TsallisPGD: … Adversarial Attacks on Semantic Segmentation
}


def test_topics_split_off_the_keyword_filters() -> None:
    assert split_topics('topic:"non-rigid shape  correspondence" diffusion -survey') == (
        ["non-rigid shape correspondence"],
        "diffusion -survey",
    )
    assert split_topics("topic:'robot grasping' TOPIC:agents") == (["robot grasping", "agents"], "")
    assert split_topics("plain words") == ([], "plain words")
    with pytest.raises(UsageError):
        split_topics(" ".join(f"topic:t{i}" for i in range(6)))


def test_a_topic_matches_by_meaning_on_real_papers() -> None:
    space = default_space()
    papers = cs_cv_papers()
    day = Day(space, [(p.id, p) for p in papers], {p.id: [FEED] for p in papers})
    profile = Profile(
        topics={FEED: [topic(space, "segmenting images into regions")]}, quality="all"
    )
    chosen = day.rank(profile, 5)
    # The papers say "segmentation", "segment", "semantic segmentation"; the topic does not.
    assert len(SEGMENTATION & {r.key for r in chosen}) >= 3
    assert all(r.why.startswith("matches your topic") for r in chosen)
    strict = Profile(topics=profile.topics, topic_threshold=0.9, quality="all")
    assert day.rank(strict, 5) == []  # a tighter threshold lets fewer papers through


def test_train_picks_spread_over_subjects() -> None:
    space = default_space()
    papers = cs_cv_papers()
    day = Day(space, [(p.id, p) for p in papers])
    picks = day.explore(8)
    assert len({k for k, _ in picks}) == 8
    _, vectors = space.papers([p for _, p in picks])
    spread = vectors @ vectors.T
    top = [p for _, p in day.ranked[:8]]
    _, near = space.papers(top)
    # Farther apart from each other than the first eight of the listing.
    assert spread[np.triu_indices(8, 1)].mean() < (near @ near.T)[np.triu_indices(8, 1)].mean()
    assert day.explore(8, skip={k for k, _ in picks}) != picks


def test_model_round_trips_and_refuses_a_foreign_space() -> None:
    space = default_space()
    papers = cs_cv_papers(6)
    _, vectors = space.papers(papers)
    model = fit([Example(v, int(i < 3), 1.0) for i, v in enumerate(vectors)], space.background)
    assert model is not None
    blob = Model(model.weights, (("A liked paper", vectors[0]),)).to_bytes()
    back = Model.from_bytes(blob, space.basis.shape[1])
    assert back is not None and np.allclose(back.weights, model.weights)
    assert back.liked[0][0] == "A liked paper"
    assert Model.from_bytes(blob, 64) is None
    assert Model.from_bytes(b"\x00garbage", 128) is None
    assert fit([]) is None


def test_bibtex_survives_hostile_metadata() -> None:
    papers = [
        Paper(
            "2401.00001",
            "Unbalanced {braces and 100% of #tags & under_scores",
            ["Ada Lovelace", "Lovelace, Ada", "Plato"],
            categories=["cs.LG"],
        ),
        Paper("2401.00002", "The $k$-means {Revisited}", ["Émile Borel"], categories=["math.PR"]),
        Paper("hep-th/9901001", "An old one", ["Ada Lovelace"], categories=["hep-th"]),
        Paper("2401.00003", "Unbalanced again", ["Ada Lovelace"]),
    ]
    text = bibtex(papers)
    entries = {e["eprint"]: e for e in bibtexparser.loads(text).entries}
    assert set(entries) == {p.id for p in papers}
    first = entries["2401.00001"]
    assert first["title"] == r"Unbalanced braces and 100\% of \#tags \& under\_scores"
    assert first["author"] == "Lovelace, Ada and Lovelace, Ada and Plato"
    assert entries["2401.00002"]["title"] == "The $k$-means {Revisited}"
    assert entries["2401.00002"]["ID"] == "borel2024means"
    assert entries["hep-th/9901001"]["year"] == "1999"
    assert entries["hep-th/9901001"]["doi"] == "10.48550/arXiv.hep-th/9901001"
    assert len({e["ID"] for e in bibtexparser.loads(text).entries}) == 4
    taken: set[str] = set()
    assert [cite_key(papers[3], taken), cite_key(papers[3], taken)] == [
        "lovelace2024unbalanced",
        "lovelace2024unbalanceda",
    ]
    dated = Paper("2401.00009", "T", published=datetime(2023, 12, 31, tzinfo=UTC))
    assert year(dated) == 2023


async def test_a_topic_subscription_in_the_terminal(paperboy_app: Paperboy) -> None:
    chat = ConsoleChat(paperboy_app, out=io.StringIO())
    await seed_feed(paperboy_app.store, cs_cv_papers())
    reply = await chat.handle('/subscribe arxiv:cs.CV topic:"segmenting images into regions"')
    assert reply is not None and "Topics: “segmenting images into regions”" in render_reply(reply)
    digest = await chat.handle("/digest")
    assert digest is not None
    text = render_reply(digest)
    shown = {p for p in SEGMENTATION if p in text}
    assert len(shown) >= 3
    assert "Why: matches your topic “segmenting images into regions”" in text
    assert "3D Human Face Reconstruction" not in text  # first in the listing, off-topic
    await chat.handle("/unsubscribe arxiv:cs.CV")
    assert await paperboy_app.store.chat_topics(chat.context().chat) == {}
