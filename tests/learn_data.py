"""Real papers for the learning tests: the cs.CV papers arXiv announced on 2026-05-06
(bench/data/daily-arxiv/, see bench/data/SOURCES.md), stored as today's arxiv:cs.CV feed."""

from __future__ import annotations

import json
import lzma
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bot.models import Paper
from bot.service import feed_day
from bot.store.base import Store

DAY = Path(__file__).resolve().parents[1] / "bench" / "data" / "daily-arxiv" / "2026-05-06.jsonl.xz"
FEED = "arxiv:cs.CV"
# Read off the file: the first three cs.CV papers, in listing order, are these.
FACE_3D = "2605.03996"  # 3D Human Face Reconstruction with 3DMM face model from RGB image
MEMORIZATION = "2605.02908"  # Memorization In Stable Diffusion Is Unexpectedly Driven by CLIP…
VIDEO_ANOMALY = "2605.02912"  # Reasoning-Guided Grounding: … Video Anomaly Detection …
MRI = "2605.03098"  # One Sequence to Segment Them All: … CT and MRI Cross-Domain …
PATHOLOGY = "2605.03544"  # DALPHIN: Benchmarking Digital Pathology AI Copilots …


def cs_cv_papers(limit: int = 40) -> list[Paper]:
    out = []
    for line in lzma.decompress(DAY.read_bytes()).decode("utf-8").splitlines():
        row = json.loads(line)
        if row["categories"][0] != "cs.CV":
            continue
        out.append(
            Paper(
                row["id"],
                row["title"],
                authors=row["authors"],
                abstract=row["abstract"],
                categories=row["categories"],
                version=1,
                published=datetime(2026, 5, 5, 17, tzinfo=UTC),
                announce_type="new",
            )
        )
        if len(out) >= limit:
            break
    return out


async def seed_feed(
    store: Store, papers: list[Paper], now: datetime | None = None, feed: str = FEED
) -> None:
    """Store `papers` as the feed's fetch for the day `now` falls in: no upstream asked."""
    now = now or datetime.now(UTC)
    await store.upsert_papers(papers)
    day = feed_day(feed, now)
    await store.save_feed(feed, day, day, [p.id for p in papers])


def days_before(now: datetime, n: int) -> datetime:
    return now - timedelta(days=n)


def announced(now: datetime) -> date:
    return feed_day(FEED, now)
