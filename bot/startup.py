"""Starting a platform as a service: retry while it is unreachable, stop clearly when the
operator must act.

A bot started by systemd or a container may come up before the network does: adapters
retry their first contact with exponential backoff (tenacity) instead of dying with a
traceback. What no retry can fix (a refused token, another instance polling with the same
token) is a `PlatformError`, which `paperboy` prints as one line and exits non-zero.
"""

from __future__ import annotations

import logging

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from bot.logs import redact

log = logging.getLogger(__name__)


class PlatformError(RuntimeError):
    """A platform cannot be used as configured; the message says what to do about it."""


def describe(error: BaseException | None) -> str:
    """One line about a network error, secrets redacted (PTB quotes URLs with the token)."""
    if error is None:
        return "unknown error"
    text = redact(str(error)).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text and text[0] else type(error).__name__


def retrying(
    platform: str,
    transient: tuple[type[BaseException], ...],
    *,
    permanent: tuple[type[BaseException], ...] = (),
    first: float,
    most: float,
    give_up_after: float,
) -> AsyncRetrying:
    """Attempts at first contact with `platform`: `transient` errors are retried after
    first, 2×first, … up to `most` seconds apart, for `give_up_after` seconds in all;
    then the last error is raised. `permanent` ones (subclasses of a transient one that
    no retry fixes) are raised at once. Each wait is one log line, without a traceback."""

    def worth_retrying(error: BaseException) -> bool:
        return isinstance(error, transient) and not isinstance(error, permanent)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%s is unreachable (%s); trying again in %.1fs", platform, describe(error), wait
        )

    return AsyncRetrying(
        retry=retry_if_exception(worth_retrying),
        wait=wait_exponential(multiplier=first, max=most) + wait_random(0, first),
        stop=stop_after_delay(give_up_after),
        before_sleep=before_sleep,
        reraise=True,
    )
