"""How papers look as documents."""

from __future__ import annotations

from bot import cards
from bot.doc import Button, block_text
from bot.models import Paper


def test_authors_are_shortened_and_tex_accents_become_letters() -> None:
    paper = Paper(
        "2508.13177", "T", authors=["Nikola Pi\\v{z}urica", "Nikola Milovi\\'c", *"ABCDE"]
    )
    assert cards.authors_line(paper, 3) == "Nikola Pižurica, Nikola Milović, A and 4 more"


def test_compact_list_numbers_papers_and_gives_each_an_explain_button() -> None:
    papers = [Paper(f"2401.0000{i}", f"Paper {i}", abstract="x " * 500) for i in range(1, 8)]
    reply = cards.paper_list("Digest", papers, limit=6, feed="hf:daily")
    message = reply.messages[0]
    text = "\n".join(block_text(b) for b in message.blocks)
    assert "6. Paper 6" in text and "Paper 7" not in text and "…and 1 more." in text
    explain = [b for row in message.buttons for b in row if b.command == "explain"]
    assert [b.arg for b in explain] == [p.id for p in papers[:6]]
    assert message.buttons[-1] == [
        Button("Unsubscribe hf:daily", command="unsubscribe", arg="hf:daily")
    ]


def test_paper_card_has_links_and_tldr() -> None:
    paper = Paper(
        "1706.03762",
        "Attention Is All You Need",
        version=7,
        ai_summary="Transformers.",
        github_repo="https://github.com/x/y",
    )
    message = cards.paper_message(paper, detail=True)
    text = "\n".join(block_text(b) for b in message.blocks)
    assert "TL;DR Transformers." in text
    assert [b.label for b in message.buttons[0]] == ["Explain", "PDF", "HF page"]
    assert message.buttons[0][1].url == "https://arxiv.org/pdf/1706.03762v7"
