"""Keep secrets out of logs: a redaction filter applied to every log record.

Libraries log URLs and errors that carry secrets (the Telegram bot token is part of every
Bot API URL, and python-telegram-bot even puts it in some exception messages), so
redaction happens once, when a record is made, for every handler: the ones configured
now and the ones added later (pytest's caplog, a handler a library installs).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import quote

REDACTED = "[REDACTED]"
_MIN_SECRET = 4  # a one-letter "secret" would redact every log line into noise
# Secrets nobody configures, so they are found by their shape: Discord interaction and
# webhook tokens (valid for a while, enough to post as the bot) in the URLs built from
# them, and any "token" field of a logged payload (discord.py logs gateway events).
_SHAPED = re.compile(
    r"(?P<url>/(?:interactions|webhooks)/\d+/)[^/?#\s'\"]+"
    r"|(?P<field>[\'\"]token[\'\"]\s*:\s*[\'\"])[^\'\"]+"
)


def _shaped(match: re.Match[str]) -> str:
    return (match["url"] or match["field"]) + REDACTED


_lock = threading.Lock()
_installed_factory = False


class RedactSecrets(logging.Filter):
    """Replace every known secret (and its URL-encoded form) in a record with [REDACTED].

    The record's message is formatted here and its arguments dropped, so a secret passed
    as an argument (`log.debug("url %s", url)`) is caught too; so are exception texts.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if secret and len(secret) >= _MIN_SECRET:
                self._secrets.add(secret)
                self._secrets.add(quote(secret, safe=""))
        if self._secrets:
            # Longest first, so a secret that contains another is replaced whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return _SHAPED.sub(_shaped, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_FILTER = RedactSecrets()


def redact(text: str) -> str:
    """`text` with every installed secret replaced: for error messages shown to people."""
    return _FILTER.redact(text)


def install_redaction(secrets: Iterable[str]) -> RedactSecrets:
    """Redact `secrets` from every log record from now on. Safe to call again with more."""
    global _installed_factory
    with _lock:
        _FILTER.add(secrets)
        for handler in logging.getLogger().handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
        if not _installed_factory:
            # Handlers added later (caplog, a library's own) get clean records too.
            previous = logging.getLogRecordFactory()

            def factory(*args: object, **kwargs: object) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                _FILTER.filter(record)
                return record

            logging.setLogRecordFactory(factory)
            _installed_factory = True
    return _FILTER


SQL_LOGGERS = ("aiosqlite", "asyncpg")


def quiet_sql_loggers() -> None:
    """The database libraries log every statement with its parameters at DEBUG (most of
    a DEBUG log, and chat data in it): off unless asked for (PAPERBOY_SQL_LOG=1)."""
    for name in SQL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_http_loggers() -> None:
    """httpx logs every request URL at INFO, and Telegram's URLs carry the bot token."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


# ------------------------------------------------------------------ JSON logs

# LogRecord attributes that are not "extra" fields passed by the caller.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _clean(value: object) -> object:
    """A JSON-safe copy of an extra field's value, secrets redacted."""
    if isinstance(value, str):
        return _FILTER.redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    return _FILTER.redact(repr(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (`PAPERBOY_LOG_FORMAT=json`), for log shippers.

    Fields: ts (UTC ISO 8601), level, logger, message, plus exc_info / stack_info and any
    `extra={...}` the caller passed. Everything is redacted once more here: extras do not
    go through the record filter's message formatting.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _FILTER.redact(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = _FILTER.redact(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = _FILTER.redact(self.formatStack(record.stack_info))
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and not name.startswith("_"):
                entry[name] = _clean(value)
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def make_formatter(kind: str | None) -> logging.Formatter:
    """`json` for JsonFormatter; anything else (or nothing) for the plain text format."""
    if (kind or "").strip().lower() == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def setup_logging(
    level: str, kind: str | None, secrets: Iterable[str], *, sql: bool = False
) -> None:
    """Root handler on stderr with the chosen format, http loggers quieted (and the SQL
    libraries' unless `sql`), secrets redacted."""
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(make_formatter(kind))
    quiet_http_loggers()
    if not sql:
        quiet_sql_loggers()
    install_redaction(secrets)
