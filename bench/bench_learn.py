"""Does the per-chat ranking learn? (issue 14) On REAL arXiv announcement days, printing:

1. precision@10 of the next days' digests after 10 votes, personalized vs unpersonalized;
2. precision@10 of a plain-words topic subscription alone;
3. CPU time to rank a 500-paper day for 10,000 chats.

Data: bench/data/daily-arxiv/, 22 announcement days (cs.CV, cs.CL, cs.AI and more) from a
public daily-arXiv archive; bench/data/SOURCES.md names it. The background corpus the
features are built on (bot/data) holds other days, so no test paper shaped the features.

Simulated readers: each has two tastes, and each taste is judged by a regular expression
written here by hand over title and abstract (`TASTES`), never by the model's features.
A reader votes on what it is shown: 👍 if the judge says relevant, 👎 otherwise.
Topic subscriptions use the reader's own plain words (`TOPIC_WORDS`), not the judge's.
"""

from __future__ import annotations

import json
import lzma
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from bot.digest import candidates, rank
from bot.models import ChatRef, Paper, Subscription
from bot.rank.features import Space, default_space
from bot.rank.model import Example, Model, fit
from bot.rank.ranker import Day, Profile, topic
from bot.sources.base import FeedFetch

DATA = Path(__file__).resolve().parent / "data" / "daily-arxiv"
FEEDS = ("arxiv:cs.CV", "arxiv:cs.CL", "arxiv:cs.AI")
VOTES = 10
TOP = 10

# The judges: what each taste means, as hand-written patterns over title + abstract.
TASTES: dict[str, str] = {
    "3d": r"\b(3d|three-dimensional|point clouds?|gaussian splatting|nerf|radiance fields?|"
    r"novel view|meshes|depth estimation|stereo matching|slam)\b",
    "medical": r"\b(medical|clinical|patients?|radiolog\w*|patholog\w*|mri|ct scans?|x-rays?|"
    r"diagnos\w*|surgical|ultrasound)\b",
    "robots": r"\b(robots?|robotic|embodied|manipulation|grasping|vision-language-action|"
    r"locomotion|autonomous driving)\b",
    "safety": r"\b(jailbreaks?|jailbreaking|red[- ]teaming|harmful|unsafe|guardrails?|"
    r"backdoors?|safety alignment)\b",
    "speech": r"\b(speech|audio|spoken|asr|text-to-speech|speakers?|acoustic|voice)\b",
    "translation": r"\b(machine translation|multilingual|low-resource languages?|cross-lingual|"
    r"translation)\b",
    "video": r"\b(video generation|text-to-video|video diffusion|video synthesis|"
    r"image-to-video|video editing)\b",
    "retrieval": r"\b(retrieval-augmented|rag|retrievers?|dense retrieval|knowledge graphs?)\b",
    "agents": r"\b(llm agents?|agentic|tool use|tool-use|web agents?|multi-agent)\b",
    "remote": r"\b(remote sensing|satellite|aerial|hyperspectral|earth observation)\b",
    "math": r"\b(mathematical reasoning|math problems?|theorem proving|olympiad|"
    r"chain-of-thought)\b",
    "fairness": r"\b(bias(es)?|fairness|stereotypes?|gender|demographic)\b",
}
# What a reader would type after topic: — their own words, not the judge's pattern.
TOPIC_WORDS: dict[str, str] = {
    "3d": "reconstructing 3D scenes and shapes from images",
    "medical": "deep learning on medical images for clinical diagnosis",
    "robots": "robots learning to manipulate objects",
    "safety": "attacks that make language models produce harmful output",
    "speech": "speech recognition and audio understanding",
    "translation": "translating text between languages",
    "video": "generating videos with diffusion models",
    "retrieval": "retrieval augmented generation over external documents",
    "agents": "autonomous LLM agents that call tools",
    "remote": "satellite and aerial imagery",
    "math": "language models solving math problems",
    "fairness": "social bias and fairness in AI systems",
}
READERS: tuple[tuple[str, str], ...] = (
    ("3d", "robots"),
    ("medical", "remote"),
    ("safety", "fairness"),
    ("speech", "translation"),
    ("video", "3d"),
    ("retrieval", "agents"),
    ("math", "agents"),
    ("robots", "medical"),
    ("translation", "fairness"),
    ("remote", "video"),
)


@dataclass(slots=True)
class Judge:
    patterns: list[re.Pattern[str]]

    def __call__(self, paper: Paper) -> bool:
        text = f"{paper.title}\n{paper.abstract}"
        return any(p.search(text) for p in self.patterns)


def judge(tastes: Sequence[str]) -> Judge:
    return Judge([re.compile(TASTES[t], re.IGNORECASE) for t in tastes])


def load_days() -> list[tuple[date, dict[str, FeedFetch]]]:
    """Each day as the arXiv feeds would give it: papers in id order, cross-lists marked."""
    days = []
    for path in sorted(DATA.glob("*.jsonl.xz")):
        day = date.fromisoformat(path.name[:10])
        papers = []
        for line in lzma.decompress(path.read_bytes()).decode("utf-8").splitlines():
            row = json.loads(line)
            papers.append(
                Paper(
                    row["id"],
                    row["title"],
                    authors=row["authors"],
                    abstract=row["abstract"],
                    categories=row["categories"],
                )
            )
        papers.sort(key=lambda p: p.id)
        fetches = {}
        for feed in FEEDS:
            cat = feed.removeprefix("arxiv:")
            listed = []
            for p in papers:
                if cat in p.categories:
                    copy = Paper(p.id, p.title, p.authors, p.abstract, p.categories)
                    copy.announce_type = "new" if p.categories[0] == cat else "cross"
                    listed.append(copy)
            fetches[feed] = FeedFetch(listed, day)
        days.append((day, fetches))
    return days


def shared(fetches: dict[str, FeedFetch]) -> tuple[list[tuple[str, Paper]], dict[str, list[str]]]:
    """The unpersonalized ranking (bot.digest's own) and which feeds brought each paper."""
    subs = [Subscription(ChatRef("bench", "reader"), f) for f in FEEDS]
    found = candidates(dict(fetches), subs) or {}
    return rank(found), {k: c.feeds for k, c in found.items()}


def precision(papers: Sequence[Paper], relevant: Judge) -> tuple[float, float]:
    """(precision of what was sent, precision@10 counting empty slots as misses)."""
    hits = sum(relevant(p) for p in papers[:TOP])
    return (hits / len(papers[:TOP]) if papers else 0.0), hits / TOP


def run(space: Space) -> None:
    days = load_days()
    prepared = []
    for day, fetches in days:
        ranked, feeds = shared(fetches)
        prepared.append((day, ranked, Day(space, ranked, feeds)))
    print(
        f"data: {len(days)} days {days[0][0]}..{days[-1][0]}, "
        f"{sum(len(r) for _, r, _ in prepared)} digest candidates, feeds {', '.join(FEEDS)}"
    )
    base_p: list[float] = []
    learned_p: list[float] = []
    topic_sent: list[float] = []
    topic_p10: list[float] = []
    topic_n: list[int] = []
    base_rates: list[float] = []
    likes_seen: list[int] = []
    for tastes in READERS:
        relevant = judge(tastes)
        # Day 0: /train, twice; the reader votes on all VOTES papers shown.
        _, _, first = prepared[0]
        shown = first.explore(VOTES // 2)  # two /train rounds of five
        shown += first.explore(VOTES // 2, skip={k for k, _ in shown})
        _, vectors = space.papers([p for _, p in shown])
        examples = [
            Example(v, int(relevant(p)), 1.0) for (_, p), v in zip(shown, vectors, strict=True)
        ]
        likes_seen.append(sum(e.label for e in examples))
        learned = Profile(model=fit(examples, space.background), quality="all")
        words = Profile(
            topics={f: [topic(space, TOPIC_WORDS[t]) for t in tastes] for f in FEEDS},
            quality="all",
        )
        b, lp, ts, tp, tn, br = [], [], [], [], [], []
        for _, ranked, today in prepared[1:]:
            b.append(precision([p for _, p in ranked[:TOP]], relevant)[1])
            lp.append(precision([r.paper for r in today.rank(learned, TOP)], relevant)[1])
            sent = [r.paper for r in today.rank(words, TOP)]
            s, p10 = precision(sent, relevant)
            ts.append(s)
            tp.append(p10)
            tn.append(len(sent))
            br.append(sum(relevant(p) for _, p in ranked) / max(len(ranked), 1))
        print(
            f"  reader {'+'.join(tastes):<22} liked {likes_seen[-1]:>2}/{VOTES} on day 0 | "
            f"p@10 unpersonalized {statistics.mean(b):.2f}, after {VOTES} votes "
            f"{statistics.mean(lp):.2f}, topic words {statistics.mean(ts):.2f}"
            f" ({statistics.mean(tn):.1f} sent) | base rate {statistics.mean(br):.2f}"
        )
        base_p += b
        learned_p += lp
        topic_sent += ts
        topic_p10 += tp
        topic_n += tn
        base_rates += br
    base, learned_mean = statistics.mean(base_p), statistics.mean(learned_p)
    print(f"precision@10, unpersonalized ranking:      {base:.3f}")
    print(
        f"precision@10 after {VOTES} votes (/train):      {learned_mean:.3f}"
        f"  ({learned_mean / base:.1f}x; target 2x)"
    )
    print(
        f"precision of a topic subscription alone:   {statistics.mean(topic_sent):.3f}"
        f" (target 0.6), {statistics.mean(topic_n):.1f} papers sent a day;"
        f" precision@10 with empty slots as misses {statistics.mean(topic_p10):.3f}"
    )


def speed(space: Space) -> None:
    """10,000 chats with their own models (3 in 10 with a topic too) rank one 500-paper day."""
    day, fetches = load_days()[6]
    ranked, feeds = shared(fetches)
    ranked = ranked[:500]
    rng = np.random.default_rng(3)
    dims = space.basis.shape[1]
    words = list(TOPIC_WORDS.values())
    profiles = []
    for i in range(10_000):
        weights = rng.standard_normal(dims + 1).astype(np.float32)
        profile = Profile(model=Model(weights), quality="normal")
        if i % 10 < 3:
            profile.topics = {FEEDS[i % 3]: [topic(space, words[i % len(words)])]}
        profiles.append(profile)
    started = time.process_time()
    today = Day(space, ranked, feeds)
    for profile in profiles:
        today.rank(profile, TOP)
    spent = time.process_time() - started
    print(
        f"CPU to rank a {len(ranked)}-paper day ({day}) for {len(profiles):,} chats: {spent:.2f} s"
    )


def main() -> None:
    started = time.process_time()
    space = default_space()
    print(
        f"feature space: {len(space.vocab):,} terms, {space.basis.shape[1]} LSA dimensions, "
        f"built in {time.process_time() - started:.1f} s CPU"
    )
    run(space)
    speed(space)


if __name__ == "__main__":
    main()
