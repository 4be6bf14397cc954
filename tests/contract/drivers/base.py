"""What a driver does for the script, and the player that runs the script through one.

A driver turns each action into its platform's wire traffic (through the fakes) and
reads back what the user sees. Expectations are checked here, the same way for all.
"""

from __future__ import annotations

import asyncio
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from bot.config import Settings
from bot.delivery import deliver_once
from bot.sending import Sender
from bot.service import Paperboy
from tests.contract.script import Scene, Step

ANSWER_WITHIN = 15.0  # seconds for the first answer to an action
EXPECT_WITHIN = 5.0  # seconds for the rest of it to arrive
SETTLE = 0.15  # an answer is complete once nothing more came for this long


def normalize(text: str) -> str:
    """Whitespace as one space: renderers wrap and break lines differently."""
    return " ".join(text.split())


async def deliver_digests(app: Paperboy, settings: Settings, sender: Sender, day: int) -> None:
    """One delivery round (`paperboy deliver --now`) as if `day` days had passed, so the
    chat's digest is due (unless it is paused); returns once the outbox is drained."""
    moment = datetime.now(UTC) + timedelta(days=day, minutes=1)
    await deliver_once(app, settings, [sender], clock=lambda: moment)


async def quiet(count: Callable[[], int]) -> None:
    """Until `count()` has not changed for SETTLE seconds."""
    last, quiet_since = count(), time.monotonic()
    while time.monotonic() - quiet_since < SETTLE:
        await asyncio.sleep(0.02)
        if count() != last:
            last, quiet_since = count(), time.monotonic()


async def settle(count: Callable[[], int], within: float = ANSWER_WITHIN) -> float:
    """Until `count()` has grown from now, and then stopped changing for SETTLE seconds;
    returns when (monotonic) it first grew."""
    start = count()
    deadline = time.monotonic() + within
    while count() == start:
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer within {within:.0f} s")
        await asyncio.sleep(0.01)
    first = time.monotonic()
    await quiet(count)
    return first


class Driver(ABC):
    """One platform, one chat, one user who administers it."""

    name: ClassVar[str]
    # Actions this platform has no counterpart for -> why. A scene with one is skipped,
    # and the skip is reported (test_contract.py), never silent.
    not_applicable: ClassVar[Mapping[str, str]] = {}

    def __init__(self) -> None:
        self.commands: set[str] = set()  # command names the user typed
        self.answer_delay = 0.0  # seconds from the last `say` to its first answer
        self.answered_at = 0.0  # when (monotonic) the last action's answer began to arrive
        self.rounds = 0  # delivery rounds run so far: each one a day later

    # -- the window: what arrived since the last action began

    @abstractmethod
    def begin(self) -> None:
        """Start a new window: what the user sees from now on."""

    @abstractmethod
    def visible(self) -> str:
        """The visible text of everything that reached the user in this window."""

    @abstractmethod
    def files(self) -> list[str]:
        """Names of the files that reached the user in this window."""

    # -- actions

    @abstractmethod
    async def say(self, text: str) -> None:
        """Type `text`; return once the answer is in (`answered_at`: when it began)."""

    @abstractmethod
    async def press(self, label: str) -> None: ...

    async def reply(self, text: str) -> None:
        raise NotImplementedError

    async def deliver(self) -> None:
        self.rounds += 1
        await deliver_digests(self.app, self.settings, self.sender, self.rounds)

    async def chat_moves(self) -> None:
        raise NotImplementedError

    async def chat_gone(self) -> None:
        raise NotImplementedError

    async def chat_back(self) -> None:
        raise NotImplementedError

    async def rate_limited(self, seconds: float) -> None:
        raise NotImplementedError

    def rate_limit_served(self) -> bool:
        """Whether the platform really answered the scripted 429."""
        raise NotImplementedError

    # What `deliver` needs: set by each driver.
    app: Paperboy
    settings: Settings
    sender: Sender


def _command_name(text: str) -> str | None:
    match = re.match(r"/([a-z0-9_]+)", text)
    return match[1] if match else None


async def act(driver: Driver, step: Step) -> None:
    driver.begin()
    if step.kind == "say":
        name = _command_name(step.text)
        if name:
            driver.commands.add(name)
        start = time.monotonic()
        await driver.say(step.text)
        driver.answer_delay = driver.answered_at - start
        return
    actions: dict[str, Callable[[], Awaitable[None]]] = {
        "press": lambda: driver.press(step.text),
        "reply": lambda: driver.reply(step.text),
        "deliver": driver.deliver,
        "chat_moves": driver.chat_moves,
        "chat_gone": driver.chat_gone,
        "chat_back": driver.chat_back,
        "rate_limited": lambda: driver.rate_limited(step.seconds),
    }
    await actions[step.kind]()


async def check(driver: Driver, step: Step) -> None:
    deadline = time.monotonic() + EXPECT_WITHIN
    if step.kind == "expect":
        while True:
            seen = normalize(driver.visible())
            missing = [t for t in step.texts if normalize(t) not in seen]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not shown: {missing!r}\n--- the user saw:\n{seen[:3000]}")
            await asyncio.sleep(0.02)
    elif step.kind == "expect_file":
        while step.text not in driver.files():
            if time.monotonic() > deadline:
                raise AssertionError(f"no file {step.text!r}; files: {driver.files()!r}")
            await asyncio.sleep(0.02)
    elif step.kind == "expect_nothing":
        await asyncio.sleep(SETTLE)
        assert not driver.visible().strip(), f"the user saw: {driver.visible()[:300]!r}…"
    elif step.kind == "expect_waited":
        assert driver.rate_limit_served(), "the scripted 429 was never answered to the bot"
        assert driver.answer_delay >= step.seconds * 0.95, (
            f"answered {driver.answer_delay:.2f} s after asking, within the "
            f"{step.seconds} s retry_after"
        )
    else:
        raise ValueError(f"unknown step {step.kind!r}")


def not_applicable(driver: type[Driver] | Driver, scene: Scene) -> str | None:
    """Why `driver` cannot play `scene`, or None when it can."""
    reasons = [driver.not_applicable[k] for k in sorted(scene.kinds) if k in driver.not_applicable]
    return reasons[0] if reasons else None


async def play(driver: Driver, scenes: Sequence[Scene]) -> None:
    """Play every scene this driver can; an assertion names the scene and the step."""
    for scene in scenes:
        if not_applicable(driver, scene):
            continue
        for step in scene.steps:
            try:
                await (act(driver, step) if step.is_action else check(driver, step))
            except AssertionError as e:
                raise AssertionError(
                    f"[{driver.name}] scene {scene.title!r}, {step.kind} {step.text or ''}"
                    f"{step.texts or ''}: {e}"
                ) from e
