"""Operations: /healthz and /metrics over real HTTP, JSON logs without secrets, deploy files.

The deploy checks keep the docs honest: deploy/.env.example must list every setting in
bot/config.py, and the compose file, Dockerfile and systemd unit must say what the README
says they do. Docker itself is not needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml

from bot import metrics
from bot.config import Settings
from bot.doc import Message
from bot.health import Health, MetricsServer
from bot.logs import JsonFormatter, install_redaction
from bot.models import ChatRef
from bot.sending import ChatGone, RetryAfter
from bot.store.sql import SQLStore

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SECRET = "7012345678:AAHsEcReT-tOkEn_NeverLogged-0123456789"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLStore]:
    async with SQLStore(sqlite_path=str(tmp_path / "paperboy.db")) as s:
        yield s


def _value(text: str, name: str, labels: str = "") -> float:
    """A sample's value from Prometheus text output (0 when absent)."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# ---------------------------------------------------------------- HTTP endpoints


async def test_healthz_and_metrics_end_to_end(store: SQLStore) -> None:
    health = Health()
    health.set_adapter("telegram", "running")
    health.set_adapter("discord", "starting")
    async with MetricsServer(store, health) as server:
        assert server.port > 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            response = await client.get("/healthz")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/json")
            body = response.json()
            assert body["status"] == "ok"
            assert body["store"] == {"reachable": True}
            assert body["adapters"] == {"telegram": "running", "discord": "starting"}

            metrics.MESSAGES_SENT.labels(platform="test").inc(3)
            metrics.SEND_FAILURES.labels(platform="test", kind="transient").inc()
            with metrics.upstream_timer("test-upstream"):
                pass
            metrics.record_tokens("test-llm", prompt=10, completion=4)
            response = await client.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            text = response.text
    assert _value(text, "messages_sent_total", 'platform="test"') >= 3
    assert _value(text, "send_failures_total", 'kind="transient",platform="test"') >= 1
    assert _value(text, "upstream_request_seconds_count", 'upstream="test-upstream"') >= 1
    assert _value(text, "llm_tokens_total", 'kind="prompt",provider="test-llm"') >= 10
    assert _value(text, "llm_tokens_total", 'kind="completion",provider="test-llm"') >= 4
    assert "# TYPE outbox_queue_depth gauge" in text
    assert _value(text, "outbox_queue_depth") == 0


async def test_metrics_reports_outbox_depth(store: SQLStore) -> None:
    class Counts:
        async def schema_version(self) -> int:
            return 2

        async def outbox_counts(self) -> dict[str, int]:
            return {"pending": 5, "sending": 2, "sent": 100, "dead": 1}

    server = MetricsServer(Counts())  # type: ignore[arg-type]
    async with server, httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{server.port}/metrics")).text
    assert _value(text, "outbox_queue_depth") == 7


async def test_healthz_is_503_when_the_store_is_unreachable(tmp_path: Path) -> None:
    class Broken:
        async def schema_version(self) -> int:
            raise OSError(f"could not connect to postgresql://paperboy:{SECRET}@db/paperboy")

        async def outbox_counts(self) -> dict[str, int]:
            raise OSError("down")

    server = MetricsServer(Broken())  # type: ignore[arg-type]
    async with server, httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/healthz")
        assert response.status_code == 503
        assert response.json()["store"] == {"reachable": False, "error": "OSError"}
        assert SECRET not in response.text
        # /metrics still answers: a scrape must not fail because the database is down.
        assert (await client.get(f"http://127.0.0.1:{server.port}/metrics")).status_code == 200

    # A real store that went away (closed) reads as unreachable too.
    closed = SQLStore(sqlite_path=str(tmp_path / "gone.db"))
    await closed.open()
    await closed.close()
    async with MetricsServer(closed) as server, httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/healthz")
    assert response.status_code == 503


async def test_healthz_times_out_a_hanging_store() -> None:
    class Hanging:
        async def schema_version(self) -> int:
            await asyncio.sleep(30)
            return 0

    server = MetricsServer(Hanging(), check_timeout=0.2)  # type: ignore[arg-type]
    async with server, httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/healthz")
    assert response.status_code == 503
    assert response.json()["store"]["error"] == "TimeoutError"


async def test_serve_starts_the_endpoint_and_reports_adapters(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.runtime

    async def no_background(*args: Any) -> list[asyncio.Task[None]]:
        return []

    monkeypatch.setattr(bot.runtime, "start_background", no_background)

    class Adapter:
        platform = "telegram"

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def send(self, chat: ChatRef, message: Message) -> list[str]:
            return []

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(metrics_port=port, metrics_host="127.0.0.1")
    app = SimpleNamespace(store=store)
    task = asyncio.create_task(bot.runtime.serve(app, settings, [Adapter()]))  # type: ignore[arg-type, list-item]
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                with contextlib.suppress(httpx.TransportError):
                    response = await client.get(f"http://127.0.0.1:{port}/healthz")
                    if response.json()["adapters"].get("telegram") == "running":
                        break
                await asyncio.sleep(0.05)
            assert response.status_code == 200
            assert response.json()["adapters"] == {"telegram": "running"}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Stopped with the app: the port is free again.
    with pytest.raises(httpx.TransportError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/healthz")


async def test_serve_does_not_outlive_its_delivery_loop(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead delivery loop means no more digests: serve ends (and the service manager
    restarts the bot) instead of answering commands as if all were well."""
    import bot.runtime

    async def dies() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("delivery broke")

    async def failing_background(*args: Any) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(dies())]

    monkeypatch.setattr(bot.runtime, "start_background", failing_background)
    stopped: list[str] = []

    class Adapter:
        platform = "telegram"

        async def start(self) -> None: ...

        async def stop(self) -> None:
            stopped.append(self.platform)

    app = SimpleNamespace(store=store)
    with pytest.raises(RuntimeError, match="delivery broke"):
        await asyncio.wait_for(bot.runtime.serve(app, Settings(), [Adapter()]), 5)  # type: ignore[arg-type, list-item]
    assert stopped == ["telegram"]


async def test_counting_sender_counts_sends_and_failures() -> None:
    class Flaky:
        platform = "countertest"

        def __init__(self) -> None:
            self.errors: list[Exception] = [RetryAfter(3), ChatGone("blocked")]

        async def send(self, chat: ChatRef, message: Message) -> list[str]:
            if self.errors:
                raise self.errors.pop(0)
            return ["1"]

    [sender] = metrics.counting([Flaky()])
    assert metrics.counting([sender]) == [sender]  # never wrapped twice
    chat = ChatRef("countertest", "1")
    message: Any = None
    for _ in range(2):
        with pytest.raises(Exception):  # noqa: B017 - both kinds are checked below
            await sender.send(chat, message)
    assert await sender.send(chat, message) == ["1"]
    samples = metrics.REGISTRY.get_sample_value
    assert samples("messages_sent_total", {"platform": "countertest"}) == 1
    kinds = ("rate_limited", "chat_gone")
    for kind in kinds:
        labels = {"platform": "countertest", "kind": kind}
        assert samples("send_failures_total", labels) == 1


def test_worker_share_splits_the_platform_rates() -> None:
    settings = Settings(telegram_rate_per_second=30, discord_rate_per_second=50)
    assert settings.worker_share() is settings
    two = Settings(telegram_rate_per_second=30, discord_rate_per_second=50, worker_count=2)
    share = two.worker_share()
    assert share.telegram_rate_per_second == 15
    assert share.discord_rate_per_second == 25
    assert share.delivery_chat_rate_per_second == two.delivery_chat_rate_per_second
    with pytest.raises(ValueError):
        Settings(worker_count=2, worker_index=2).worker_share()


# ---------------------------------------------------------------- JSON logs


def test_json_logs_never_contain_secrets() -> None:
    install_redaction([SECRET])
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("paperboy.test.json")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        log.info("GET https://api.telegram.org/bot%s/getMe", SECRET)
        log.warning("plain %s", "text", extra={"url": f"/bot{SECRET}/x", "n": 3, "tags": [SECRET]})
        try:
            raise RuntimeError(f"bad token {SECRET}")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    assert all(SECRET not in line for line in lines)
    assert entries[0]["level"] == "INFO"
    assert entries[0]["logger"] == "paperboy.test.json"
    assert entries[0]["message"] == "GET https://api.telegram.org/bot[REDACTED]/getMe"
    assert entries[1]["url"] == "/bot[REDACTED]/x"
    assert entries[1]["n"] == 3
    assert entries[1]["tags"] == ["[REDACTED]"]
    assert "RuntimeError: bad token [REDACTED]" in entries[2]["exc_info"]
    assert entries[0]["ts"].endswith("+00:00")


def test_cli_logging_json_format_from_environment() -> None:
    """`PAPERBOY_LOG_FORMAT=json` end to end, through the CLI's own logging setup."""
    script = (
        "import logging\n"
        "from bot.cli import _setup_logging\n"
        "from bot.config import Settings\n"
        "settings = Settings.from_env(read_dotenv=False)\n"
        "_setup_logging(settings, 'INFO')\n"
        "token = settings.telegram_bot_token\n"
        "logging.getLogger('paperboy.x').info('calling /bot%s/getMe', token)\n"
        "logging.getLogger('httpx').info('hidden %s', token)\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PAPERBOY_", "TELEGRAM_", "DISCORD_", "LLM_"))
    }
    env.update(TELEGRAM_BOT_TOKEN=SECRET, PAPERBOY_LOG_FORMAT="json")
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    entry = json.loads(lines[0])
    assert entry["message"] == "calling /bot[REDACTED]/getMe"
    assert SECRET not in done.stderr


# ---------------------------------------------------------------- deploy files


def _env_name(field_name: str) -> str:
    return "PAPERBOY_DATABASE_URL" if field_name == "database_url" else field_name.upper()


def test_env_example_documents_every_setting() -> None:
    text = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    missing = sorted(
        _env_name(f.name) for f in fields(Settings) if _env_name(f.name) not in documented
    )
    assert not missing, f"deploy/.env.example does not document: {missing}"
    assert {"PAPERBOY_LOG_LEVEL", "PAPERBOY_LOG_FORMAT", "POSTGRES_PASSWORD"} <= documented
    # Documented defaults are the real ones, so the file can be trusted as reference.
    defaults = Settings()
    for name, value in re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=(.*)$", text, re.MULTILINE):
        field = next((f.name for f in fields(Settings) if _env_name(f.name) == name), None)
        if field is None or not value or name in ("TELEGRAM_WEBHOOK_URL",):
            continue
        assert str(getattr(defaults, field)) == value, f"{name}: example says {value!r}"


def test_compose_file() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    postgres, bot = services["postgres"], services["bot"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]
    assert bot["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / bot["build"]["context"] / bot["build"]["dockerfile"]).is_file()
    assert bot["env_file"] == [".env"] or bot["env_file"] == ".env"
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bot["environment"]["PAPERBOY_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in bot["environment"]["PAPERBOY_DATABASE_URL"]


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(stages) >= 2 and all(s == "python:3.11-slim" for s in stages)
    assert "COPY --from=build" in text
    user = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    joined = text.replace("\\\n", " ")  # continuation lines
    healthcheck = re.search(r"^HEALTHCHECK .*$", joined, re.MULTILINE)
    assert healthcheck and "/healthz" in healthcheck.group(0)
    assert re.search(r'^ENTRYPOINT \["paperboy"\]', text, re.MULTILINE)
    assert re.search(r'^CMD \["run"\]', text, re.MULTILINE)
    # The files the build copies exist.
    for source in re.findall(r"^COPY (?!--)(.+) \S+$", text, re.MULTILINE):
        for name in source.split():
            assert (ROOT / name).exists(), name
    # The HEALTHCHECK's port is the one the image enables.
    assert "METRICS_PORT=9090" in text


def test_systemd_unit() -> None:
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for raw in (DEPLOY / "paperboy.service").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {raw!r}"
        sections[current].setdefault(key, []).append(value)
    service = sections["Service"]
    assert set(sections) == {"Unit", "Service", "Install"}
    assert service["Restart"] == ["on-failure"]
    assert service["DynamicUser"] == ["yes"] or "User" in service
    assert service["EnvironmentFile"]
    assert service["ExecStart"][0].endswith("paperboy run")
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert service[hardening][0] in ("yes", "strict"), hardening
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def _sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_upstream_latency_and_llm_tokens_are_measured(
    paperboy_app: Any, llm: Any, tmp_path: Path
) -> None:
    from bot.explain import Explainer
    from bot.models import Paper

    before = _sample("upstream_request_seconds_count", {"upstream": "arXiv"})
    await paperboy_app.paper("1605.08386")
    assert _sample("upstream_request_seconds_count", {"upstream": "arXiv"}) == before + 1

    settings = Settings(
        llm_provider="openai", llm_base_url=f"{llm.url}/v1", llm_api_key=llm.api_key,
        llm_model="m", arxiv_eprint_url=f"{llm.url}/nothing", arxiv_html_url=f"{llm.url}/no",
        arxiv_delay_seconds=0,
    )  # fmt: skip
    prompt = _sample("llm_tokens_total", {"provider": "openai", "kind": "prompt"})
    explainer = Explainer(settings)
    try:
        reply = await explainer.explain(
            Paper("2501.00001", "T", abstract="We do x."), user="u", chat="c"
        )
        assert reply.update is not None  # the LLM's explanation follows the offline one
        await reply.update()
    finally:
        await explainer.aclose()
    assert _sample("llm_tokens_total", {"provider": "openai", "kind": "prompt"}) == (
        prompt + llm.prompt_tokens
    )
