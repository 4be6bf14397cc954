"""The conversation, written once: scenes of steps that every driver plays.

Actions are what a person (or the platform) does; expectations read what the person
sees afterwards, as plain visible text (markup rendered away), so one script holds on
every platform. Each scene's expectations read only what arrived since the scene's last
action began.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands import COMMANDS

# A paper the fake arXiv knows (tests/fixtures/arxiv_api), and a second one to vote on.
PAPER = "1605.08386"
TITLE = "Heat-bath random walks with Markov bases"
OTHER = "astro-ph/0601001"
QUESTION = "what is the mixing time?"
RETRY_AFTER = 1  # seconds: Telegram's retry_after is whole seconds, one at least

ACTIONS = frozenset(
    {"say", "press", "reply", "deliver", "chat_moves", "chat_gone", "chat_back", "rate_limited"}
)


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # an action (ACTIONS) or an expectation (expect, expect_file, ...)
    text: str = ""
    texts: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def is_action(self) -> bool:
        return self.kind in ACTIONS


@dataclass(frozen=True, slots=True)
class Scene:
    title: str
    steps: tuple[Step, ...]

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(step.kind for step in self.steps)


def scene(title: str, *steps: Step) -> Scene:
    return Scene(title, steps)


# ------------------------------------------------------------------ actions


def say(text: str) -> Step:
    """The user types `text` in the chat (a command, with its arguments)."""
    return Step("say", text)


def press(label: str) -> Step:
    """The user presses the button labelled `label` under the bot's latest message
    that has one."""
    return Step("press", label)


def reply_to_last(text: str) -> Step:
    """The user replies to the bot's latest message with `text`."""
    return Step("reply", text)


def deliver_digest() -> Step:
    """A delivery round runs (a day later each time): this chat's digest is due."""
    return Step("deliver")


def chat_moves() -> Step:
    """The chat gets a new id (a Telegram group upgraded to a supergroup); the user talks
    in the new chat from the next action on."""
    return Step("chat_moves")


def chat_gone() -> Step:
    """The platform refuses every message to the chat (the bot was blocked or kicked,
    the channel deleted or closed to it)."""
    return Step("chat_gone")


def chat_back() -> Step:
    """The platform accepts messages to the chat again (nobody tells the bot)."""
    return Step("chat_back")


def rate_limited_once(seconds: float = RETRY_AFTER) -> Step:
    """The bot's next message is refused once with a 429 and a retry_after of `seconds`."""
    return Step("rate_limited", seconds=seconds)


# ------------------------------------------------------------- expectations


def expect_contains(*texts: str) -> Step:
    """Everything the user saw since the last action contains each of `texts`."""
    return Step("expect", texts=texts)


def expect_file(name: str) -> Step:
    """The user got a file called `name` since the last action."""
    return Step("expect_file", name)


def expect_nothing() -> Step:
    """Nothing reached the user since the last action."""
    return Step("expect_nothing")


def expect_waited(seconds: float = RETRY_AFTER) -> Step:
    """The 429 was really answered, and the bot's answer came no sooner than `seconds`
    after the user asked: it sat the wait out rather than dropping the answer."""
    return Step("expect_waited", seconds=seconds)


# --------------------------------------------------------------- the script

EXPLAINED = f"Explaining {TITLE}"


def answer_to(question: str) -> str:
    """What the contract's explainer answers (tests/contract/conftest.py)."""
    return f"About {PAPER}: you asked “{question}”."


CONVERSATION: tuple[Scene, ...] = (
    scene("greeting", say("/start"), expect_contains("Paperboy delivers research papers.")),
    scene(
        "help lists every command",
        say("/help"),
        expect_contains("Commands", *(f"/{name}" for name in COMMANDS)),
    ),
    scene(
        "a paper, and its Explain button",
        say(f"/paper {PAPER}"),
        expect_contains(TITLE, "Caprice Stanley, Tobias Windisch"),
        press("Explain"),
        expect_contains(EXPLAINED, "a² + b² = c²"),
    ),
    scene(
        "a reply to the explanation asks about its paper",
        reply_to_last(QUESTION),
        expect_contains(answer_to(QUESTION)),
    ),
    scene(
        "explain and ask by command",
        say(f"/explain https://arxiv.org/abs/{PAPER}"),
        expect_contains(EXPLAINED),
        say(f"/ask {PAPER} what is a fiber?"),
        expect_contains(answer_to("what is a fiber?")),
    ),
    scene(
        "the lists",
        say("/trending 3"),
        expect_contains("Trending on Hugging Face", "1. ", "3. "),
        say("/today cs.AI"),
        expect_contains("New in cs.AI", "Chain-of-Agents"),
        say("/search heat-bath author:Windisch"),
        expect_contains("arXiv search: heat-bath author:Windisch", TITLE),
    ),
    scene(
        "subscriptions and settings",
        say("/subscribe arxiv:cs.AI -survey"),
        expect_contains("Subscribed: arxiv:cs.AI -survey.", "Your digest arrives daily at 09:00"),
        say("/subscriptions"),
        expect_contains("Subscriptions", "arxiv:cs.AI -survey"),
        say("/settings"),
        expect_contains("Settings", "Digest at 09:00 UTC", "Ranking: learned from 0 votes"),
        say("/settings time 08:30"),
        expect_contains("Saved.", "Digest at 08:30 UTC"),
    ),
    scene(
        "votes",
        say(f"/like {PAPER}"),
        expect_contains("👍", TITLE, "learned from 1 vote."),
        say(f"/dislike {OTHER}"),
        expect_contains("👎", "Hot Jupiters", "learned from 2 votes"),
    ),
    scene(
        "the library",
        say(f"/save {PAPER}"),
        expect_contains(f"Saved: {TITLE}."),
        say("/saved heat"),
        expect_contains("Saved papers matching “heat” (1)", TITLE),
        say("/export bibtex"),
        expect_contains("1 saved paper as BibTeX"),
        expect_file("paperboy-library.bib"),
        say(f"/unsave {PAPER}"),
        expect_contains(f"Removed {PAPER} from this chat's library."),
    ),
    scene(
        "training and the digest preview",
        say("/train"),
        expect_contains("Rate these", "Chain-of-Agents", "Each tap teaches this chat's digest."),
        say("/digest"),
        expect_contains("Your papers for", "Why: new in cs.AI"),
    ),
    scene(
        "a 429 is sat out, then answered",
        rate_limited_once(),
        say("/start"),
        expect_contains("Paperboy delivers research papers."),
        expect_waited(),
    ),
    scene("the daily digest arrives", deliver_digest(), expect_contains("Your papers for")),
    scene(
        "a moved chat keeps its subscriptions and gets its answer",
        chat_moves(),
        say("/subscriptions"),
        expect_contains("arxiv:cs.AI -survey", "Digest at 08:30 UTC"),
    ),
    scene(
        "a gone chat is paused until an admin is back",
        chat_gone(),
        deliver_digest(),
        expect_nothing(),
        chat_back(),
        deliver_digest(),
        expect_nothing(),  # paused: no digest until someone is there to read it
        say("/subscribe arxiv:cs.AI -survey"),
        expect_contains("Already subscribed", "paused after a delivery failed; they are back on"),
        # A new time: the schedule starts again from now. (Rounds run days ahead of the
        # chat's own changes, stamped now: at the old time, this run would be one that
        # was already sent, and skipped as such.)
        say("/settings time 09:15"),
        expect_contains("Digest at 09:15 UTC"),
        deliver_digest(),
        expect_contains("Your papers for"),
    ),
    scene(
        "unsubscribing",
        say("/unsubscribe arxiv:cs.AI"),
        expect_contains("Unsubscribed from arxiv:cs.AI."),
        say("/subscriptions"),
        expect_contains("No subscriptions yet."),
    ),
)


def commands_said(scenes: tuple[Scene, ...] = CONVERSATION) -> set[str]:
    """The command names the script types."""
    names = set()
    for each in scenes:
        for step in each.steps:
            if step.kind == "say" and step.text.startswith("/"):
                names.add(step.text[1:].split()[0])
    return names
