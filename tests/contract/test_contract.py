"""The contract: the same conversation on Telegram, Discord and the terminal.

Every command of the command table is typed at least once (a new command without a
step fails `test_every_command_has_a_step`), a button is pressed, an explanation is
replied to, the chat moves, goes and comes back, and one answer meets a 429. What a
platform has no counterpart for is listed by `test_not_applicable`, with the reason.
"""

from __future__ import annotations

import pytest

from bot.commands import COMMANDS
from tests.contract.conftest import DRIVERS
from tests.contract.drivers.base import Driver, not_applicable, play
from tests.contract.script import ACTIONS, CONVERSATION, commands_said


def test_every_command_has_a_step() -> None:
    missing = sorted(set(COMMANDS) - commands_said())
    assert not missing, f"commands the contract conversation never types: {missing}"


def test_not_applicable_names_real_actions_with_reasons() -> None:
    for driver in DRIVERS:
        assert set(driver.not_applicable) <= ACTIONS, driver.name
        assert all(len(reason) > 20 for reason in driver.not_applicable.values())


@pytest.mark.parametrize(
    ("platform", "title", "reason"),
    [
        (d.name, scene.title, reason)
        for d in DRIVERS
        for scene in CONVERSATION
        if (reason := not_applicable(d, scene))
    ],
)
def test_not_applicable(platform: str, title: str, reason: str) -> None:
    pytest.skip(f"not applicable on {platform}: {title!r}: {reason}")


async def test_the_conversation(driver: Driver) -> None:
    await play(driver, CONVERSATION)
    # Every command really ran on this platform (none only in a skipped scene).
    assert set(COMMANDS) <= driver.commands, sorted(set(COMMANDS) - driver.commands)


def test_discord_visible_text_reads_markdown_as_a_user_does() -> None:
    from tests.fakes.discord import visible_text

    message = {
        "content": r"**Subscribed:** `arxiv:cs.AI -survey`\. 1\. a\_b [x\_y](<https://e.x/a_b>)",
        "embeds": [{"title": "*Digest*", "description": "```\nk_1 = 2\n```"}],
        "attachments": [{"filename": "paperboy-library.bib"}],
    }
    assert visible_text(message) == (
        "Subscribed: arxiv:cs.AI -survey. 1. a_b x_y\nDigest\nk_1 = 2\npaperboy-library.bib"
    )
