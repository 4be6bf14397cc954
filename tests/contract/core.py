"""The Paperboy core every driver talks to: the real one (store, sources, delivery) from
`bot.runtime.open_service`, against the fake arXiv and Hugging Face, with an explainer whose
answers are known, so the script can read them on every platform."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot.config import Settings
from bot.doc import Heading, MathBlock, Paragraph, Reply, Text
from bot.models import Paper
from bot.rank import features
from bot.runtime import open_service
from bot.service import Paperboy
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.hf import FakeHF

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class ContractExplainer:
    """Stands in for bot.explain: a fixed explanation with an equation (an image where the
    platform shows images), and an answer that names the paper asked about."""

    async def explain(self, paper: Paper, *, render_images: bool = True, **_: Any) -> Reply:
        return Reply.of(
            Heading((Text(f"Explaining {paper.title}"),)),
            Paragraph((Text("The idea, in short: a walk that mixes fast."),)),
            MathBlock(
                "a^2+b^2=c^2", "a² + b² = c²", label="1", image=PNG if render_images else None
            ),
            Paragraph((Text("Reply to this message to ask a question."),)),
        )

    async def follow_up(self, paper: Paper, question: str, **_: Any) -> Reply:
        return Reply.text(f"About {paper.id}: you asked “{question}”.")

    async def aclose(self) -> None:
        pass


def core_settings(arxiv: FakeArxiv, hf: FakeHF, **platform: Any) -> Settings:
    """Every upstream at the fakes, an in-memory database, and our own pacing off (the
    fakes' limits are off too: the one 429 of the script is scripted)."""
    settings = arxiv.settings(
        hf_api_url=hf.api_url,
        database_url="sqlite:///:memory:",
        delivery_chat_rate_per_second=0.0,
        delivery_group_rate_per_minute=0.0,
    )
    return dataclasses.replace(settings, **platform)


async def warm_ranking() -> None:
    """Build the ranking's feature space now (once per process, ~20 s of CPU on a busy
    machine): the first vote would otherwise wait for it, and every answer of the
    conversation can then be held to the same short deadline."""
    await features.space()


@asynccontextmanager
async def open_core(settings: Settings) -> AsyncIterator[Paperboy]:
    async with open_service(settings) as app:
        real, app.explainer = app.explainer, ContractExplainer()  # type: ignore[assignment]
        try:
            yield app
        finally:
            app.explainer = real  # closed with the core
