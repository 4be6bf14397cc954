"""Settings from the environment (a `.env` file in the working directory is read too).

Every remote endpoint has a base-URL setting so tests and self-hosters can point it elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace

from dotenv import find_dotenv, load_dotenv

USER_AGENT = "Paperboy/0.1 (research paper chat bot; https://github.com/paperboy-bot/paperboy)"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


class ConfigError(ValueError):
    """A setting with a bad value; the message is one line naming it and what is wrong."""


DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql")
# Settings that must be positive (a zero or negative deadline or cap makes no sense).
_POSITIVE = frozenset(
    {
        "http_timeout_seconds",
        "upstream_deadline_seconds",
        "retry_after_cap_seconds",
        "interactive_deadline_seconds",
        "delivery_lease_seconds",  # renewed every third of it: 0 would spin
    }
)


def _number(name: str, raw: str, kind: type[int] | type[float]) -> int | float:
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}={raw[:40]!r} is not {what}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}={raw[:40]!r} is not a finite number")
    return value


def check_database_url(url: str) -> None:
    """A database URL we can open: sqlite:///path or postgresql://..."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigError(
            "PAPERBOY_DATABASE_URL is not a database URL "
            "(use sqlite:///path/to/file.db or postgresql://user@host/db)"
        )
    if scheme.lower().split("+")[0] not in DATABASE_SCHEMES:
        raise ConfigError(
            f"PAPERBOY_DATABASE_URL uses {scheme[:20]!r}, which Paperboy does not support "
            "(use sqlite:///path/to/file.db or postgresql://user@host/db)"
        )


@dataclass(slots=True)
class Settings:
    database_url: str = "sqlite:///paperboy.db"
    telegram_bot_token: str = field(default="", repr=False)
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_file_base_url: str = "https://api.telegram.org/file/bot"
    telegram_webhook_url: str = ""
    telegram_webhook_port: int = 8443
    # Where the webhook server listens: loopback behind a local reverse proxy by default;
    # the container image sets 0.0.0.0 so the published port reaches it.
    telegram_webhook_listen: str = "127.0.0.1"
    discord_bot_token: str = field(default="", repr=False)
    discord_api_base_url: str = "https://discord.com/api/v10"
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_listing_url: str = "https://rss.arxiv.org/atom"
    arxiv_eprint_url: str = "https://arxiv.org/e-print"
    arxiv_html_url: str = "https://arxiv.org/html"
    arxiv_delay_seconds: float = 3.0
    hf_api_url: str = "https://huggingface.co/api"
    llm_provider: str = ""
    llm_base_url: str = ""
    llm_api_key: str = field(default="", repr=False)
    llm_model: str = ""
    # The whole LLM call for one explanation, retries included (below 60 s); the offline
    # explanation is sent at once and edited into the LLM's when it arrives.
    llm_budget_seconds: float = 45.0
    # /explain limits (bot/explain/limits.py); explanations and follow-ups both count.
    explain_user_per_minute: int = 6
    explain_chat_per_minute: int = 20
    llm_daily_tokens: int = 500_000  # in + out, per UTC day; 0 = unlimited
    # Digest math lines (/settings explain on): new paper sources a round fetches at most,
    # and how long it waits for them (a line not ready is left out, fetched for next time).
    digest_explain_per_round: int = 8
    digest_explain_wait_seconds: float = 20.0
    http_timeout_seconds: float = 30.0  # connect/read/write/pool, each
    # Upstreams (arXiv, Hugging Face): one attempt, body included, never takes longer than
    # this; a Retry-After longer than the cap is not waited for (the user is told when to
    # come back); a chat command waits this long at most, then answers from the last good
    # copy (marked stale) while the fetch goes on in the background.
    upstream_deadline_seconds: float = 30.0
    retry_after_cap_seconds: float = 60.0
    interactive_deadline_seconds: float = 6.0
    # Start-up as a service (bot/startup.py): keep trying an unreachable platform this long
    # (backoff up to a minute), and stop when another instance polls with the same
    # Telegram token for this long (409 Conflict).
    platform_start_retry_seconds: float = 600.0
    telegram_conflict_grace_seconds: float = 20.0
    metrics_port: int = 0  # /metrics and /healthz; 0 = off
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, so Prometheus can scrape it
    # Several processes sharing one PostgreSQL outbox: each sends its share of the
    # platform-wide rates (rate / worker_count); worker_index is this process's number.
    worker_count: int = 1
    worker_index: int = 0
    # Discord gateway shards, split across workers (shard i runs on worker i % worker_count);
    # 0 = the count Discord recommends.
    discord_shard_count: int = 0
    # Delivery (bot/delivery/). A rate of 0 turns that limit off.
    # Our pace, in rolling windows, with headroom under the platforms' own limits
    # (bot/pacing.py): Telegram allows 30/s, Discord 50/s, a Telegram group 20/min.
    telegram_rate_per_second: float = 28.0
    discord_rate_per_second: float = 45.0
    # Digests with allow_paid_broadcast (paid Telegram Stars): up to 1000/s overall.
    telegram_paid_broadcast: bool = False
    delivery_chat_rate_per_second: float = 0.95  # about one a second, and never faster
    delivery_group_rate_per_minute: float = 19.0  # Telegram groups and channels
    # Rows claimed at once, one per chat: after a crash, these wait for their lease (or
    # for a restart on the same machine, see bot/delivery/workers.py).
    delivery_in_flight: int = 64
    # Requests on the wire at once, across all chats: the pacer sets the rate; this only
    # has to cover the round trip (28/s at 150 ms each needs 5 or more).
    delivery_concurrency: int = 16
    # Renewed while the row is being sent, so short: a crash is recovered in seconds.
    delivery_lease_seconds: float = 8.0
    delivery_max_attempts: int = 8
    delivery_backoff_seconds: float = 5.0
    delivery_backoff_max_seconds: float = 3600.0
    delivery_tick_seconds: float = 30.0
    delivery_drain_seconds: float = 900.0  # `deliver --now` waits this long at most

    @classmethod
    def from_env(cls, read_dotenv: bool = True) -> Settings:
        if read_dotenv:
            # From the working directory up (a service's WorkingDirectory, a container's
            # workdir), not from where the package is installed.
            path = find_dotenv(usecwd=True)
            if path:
                load_dotenv(path, override=False)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = _env("PAPERBOY_DATABASE_URL" if f.name == "database_url" else f.name.upper())
            if not raw:
                continue
            env_name = "PAPERBOY_DATABASE_URL" if f.name == "database_url" else f.name.upper()
            if f.type in ("bool", bool):
                values[f.name] = raw.lower() in ("1", "true", "yes", "on")
            elif f.type in ("int", int):
                values[f.name] = _number(env_name, raw, int)
            elif f.type in ("float", float):
                values[f.name] = _number(env_name, raw, float)
            else:
                values[f.name] = raw
            if f.name in _POSITIVE and float(values[f.name]) <= 0:  # type: ignore[arg-type]
                raise ConfigError(f"{env_name}={raw[:40]!r} must be more than 0")
        settings = cls(**values)  # type: ignore[arg-type]
        check_database_url(settings.database_url)
        return settings

    def worker_share(self) -> Settings:
        """These settings for one of `worker_count` senders: the platform-wide rates split
        evenly, so together the workers stay under each platform's global limit."""
        if self.worker_count < 1 or not 0 <= self.worker_index < self.worker_count:
            raise ValueError("need WORKER_COUNT >= 1 and 0 <= WORKER_INDEX < WORKER_COUNT")
        if self.worker_count == 1:
            return self
        n = self.worker_count
        return replace(
            self,
            telegram_rate_per_second=self.telegram_rate_per_second / n,
            discord_rate_per_second=self.discord_rate_per_second / n,
        )

    def secrets(self) -> list[str]:
        """Every secret value that is set, for log redaction."""
        return [s for s in (self.telegram_bot_token, self.discord_bot_token, self.llm_api_key) if s]
