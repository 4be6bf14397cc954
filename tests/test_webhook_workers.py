"""Several workers, one Telegram bot, webhook mode (README, "Several workers"): two
Paperboy cores sharing one store, each running TelegramAdapter's webhook server on its
own port, behind a round-robin load balancer. Telegram (the fake) calls the one public
URL with the secret token; every worker registered that URL and checks that token."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from adapters.telegram import TelegramAdapter
from bot.doc import Button, Message, Paragraph, Reply, Text
from bot.models import ChatRef, Paper
from bot.runtime import open_service
from bot.service import Paperboy
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.hf import FakeHF
from tests.fakes.telegram import FakeTelegram, SentMessage

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HOOK_PATH = "/telegram/hook"
GROUP = -1001234567890
ADMIN = 3003
MEMBERS = (4001, 4002, 4003)
MEMBER_READS = MEMBERS[0]  # anyone may read a group's subscriptions
USERS = (1001, 1002, 1003, 1004, 1005)  # private chats


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all bound at once, so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Forwarded:
    update_id: int | None
    message: tuple[int, int] | None  # (chat id, message id) of the message it carries
    worker: int
    status: int


@dataclass
class RoundRobin:
    """A tiny load balancer: each request goes, as is, to the next worker in turn."""

    backends: list[int]  # the workers' ports
    log: list[Forwarded] = field(default_factory=list)
    port: int = 0
    _turn: itertools.cycle[int] = field(init=False)
    _runner: web.AppRunner | None = None
    _session: ClientSession | None = None

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(range(len(self.backends)))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._session = ClientSession()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HOOK_PATH}"

    def handled_by(self, message: dict[str, Any]) -> list[int]:
        """The workers that accepted (200) the update carrying this message."""
        key = (message["chat"]["id"], message["message_id"])
        return [f.worker for f in self.log if f.message == key and f.status == 200]

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        worker = next(self._turn)
        headers = {k: v for k, v in request.headers.items() if k.lower() in _PASSED_HEADERS}
        url = f"http://127.0.0.1:{self.backends[worker]}{request.path_qs}"
        async with self._session.request(request.method, url, data=body, headers=headers) as r:
            status, answer = r.status, await r.read()
        self.log.append(Forwarded(*_describe(body), worker, status))
        return web.Response(status=status, body=answer)


_PASSED_HEADERS = frozenset({"content-type", SECRET_HEADER.lower()})


def _describe(body: bytes) -> tuple[int | None, tuple[int, int] | None]:
    try:
        update = json.loads(body)
        update_id = int(update["update_id"])
    except (ValueError, KeyError, TypeError):
        return None, None
    message = update.get("message") or update.get("channel_post")
    if not isinstance(message, dict):
        return update_id, None
    return update_id, (int(message["chat"]["id"]), int(message["message_id"]))


@dataclass
class Cluster:
    tg: FakeTelegram
    lb: RoundRobin
    workers: list[TelegramAdapter]
    apps: list[Paperboy]


@pytest.fixture
async def cluster(
    arxiv_server: FakeArxiv, hf_server: FakeHF, telegram_server: FakeTelegram, tmp_path: Path
) -> AsyncIterator[Cluster]:
    tg = telegram_server
    tg.group(GROUP, "Reading group")
    tg.set_member(GROUP, ADMIN, "administrator")
    for member in MEMBERS:
        tg.set_member(GROUP, member, "member")
    for user in USERS:
        tg.private_chat(user, f"User {user}")
    ports = _free_ports(2)
    lb = RoundRobin(ports)
    await lb.start()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(lb.stop)
        workers: list[TelegramAdapter] = []
        apps: list[Paperboy] = []
        for index, port in enumerate(ports):
            settings = arxiv_server.settings(
                hf_api_url=hf_server.api_url,
                database_url=f"sqlite:///{tmp_path}/shared.db",  # one store for both
                telegram_bot_token=tg.token,
                telegram_api_base_url=tg.base_url,
                telegram_file_base_url=tg.file_base_url,
                telegram_webhook_url=lb.url,  # the same public URL for every worker
                telegram_webhook_port=port,  # each worker's own local port
                worker_count=2,
                worker_index=index,
            ).worker_share()
            app = await stack.enter_async_context(open_service(settings))
            adapter = TelegramAdapter(app, settings, webhook_listen="127.0.0.1")
            await adapter.start()
            stack.push_async_callback(adapter.stop)
            workers.append(adapter)
            apps.append(app)
        yield Cluster(tg, lb, workers, apps)


def replies_to(sent: list[SentMessage]) -> Counter[int | None]:
    return Counter(m.reply_to_message_id for m in sent)


async def test_every_worker_registers_the_same_url_and_secret(cluster: Cluster) -> None:
    tg = cluster.tg
    hooks = [params for method, params in tg.calls if method == "setwebhook"]
    assert len(hooks) == 2
    assert {h["url"] for h in hooks} == {cluster.lb.url}
    secrets = {str(h["secret_token"]) for h in hooks}
    assert secrets == {w.webhook_secret for w in cluster.workers}
    assert len(secrets) == 1 and tg.token not in secrets.pop()
    assert tg.webhook is not None and tg.webhook["url"] == cluster.lb.url


async def test_commands_from_many_users_reach_both_workers_and_are_answered_once(
    cluster: Cluster,
) -> None:
    tg = cluster.tg
    tg.rate_limits.per_chat_burst = 20  # limits stay on, roomy enough not to wait them out
    # In the group every answer quotes its command: that pairs answers with commands.
    commands: list[int] = []
    for round_ in range(2):
        for member in (ADMIN, *MEMBERS):
            text = "/help" if round_ else "/start"
            message = tg.send_text(GROUP, member, text)
            commands.append(message["message_id"])
    for user in USERS:
        tg.send_text(user, user, "/start")
        tg.send_text(user, user, "/subscriptions")
    # Answers in one chat go out a second apart (Telegram's pace, which we keep).
    await tg.wait_sent(GROUP, len(commands), within=30)
    for user in USERS:
        await tg.wait_sent(user, 2, within=10)
    # Every update went through the balancer once, and was accepted once.
    update_ids = [f.update_id for f in cluster.lb.log if f.update_id is not None]
    assert len(update_ids) == len(commands) + 2 * len(USERS) == len(set(update_ids))
    assert all(f.status == 200 for f in cluster.lb.log)
    per_worker = Counter(f.worker for f in cluster.lb.log)
    assert per_worker[0] > 0 and per_worker[1] > 0  # both workers answered people

    # Updates run concurrently, so answers may come in any order; a late sentinel, once
    # answered, leaves little room for a duplicate still on its way.
    sentinel = tg.send_text(GROUP, ADMIN, "/start")
    sent = await tg.wait_sent(GROUP, len(commands) + 1, within=10)
    assert replies_to(sent) == Counter([*commands, sentinel["message_id"]])
    for user in USERS:
        texts = sorted(m.text for m in tg.sent_to(user))
        assert len(texts) == 2
        assert texts[0].startswith("No subscriptions yet.")
        assert "Paperboy delivers research papers." in texts[1]


async def test_a_subscription_made_on_one_worker_is_seen_on_the_other(cluster: Cluster) -> None:
    tg = cluster.tg
    chat = ChatRef("telegram", str(GROUP))
    subscribe = tg.send_text(GROUP, ADMIN, "/subscribe arxiv:cs.LG")
    [ok] = await tg.wait_sent(GROUP, 1)
    assert "Subscribed" in ok.text and ok.reply_to_message_id == subscribe["message_id"]
    listing = tg.send_text(GROUP, MEMBER_READS, "/subscriptions")
    [_, listed] = await tg.wait_sent(GROUP, 2)
    assert listed.reply_to_message_id == listing["message_id"]
    assert "arxiv:cs.LG" in listed.text

    [first] = cluster.lb.handled_by(subscribe)
    [second] = cluster.lb.handled_by(listing)
    assert first != second  # written by one worker, read by the other
    for app in cluster.apps:  # and either core's store sees it
        assert [s.feed for s in await app.store.list_subscriptions(chat)] == ["arxiv:cs.LG"]


async def test_a_request_without_the_secret_token_is_refused_and_does_nothing(
    cluster: Cluster,
) -> None:
    tg = cluster.tg
    chat = ChatRef("telegram", str(GROUP))
    secret = cluster.workers[0].webhook_secret
    forged: dict[str, Any] = {
        "update_id": 999_999,
        "message": {
            "message_id": 999_999,
            "date": 1_700_000_000,
            "chat": tg.chats[GROUP],
            "from": tg.users[ADMIN],
            "text": "/subscribe hf:trending",
            "entities": [{"type": "bot_command", "offset": 0, "length": 10}],
        },
    }
    body = json.dumps(forged).encode()
    wrong = [
        {},  # no token at all
        {SECRET_HEADER: "not-the-secret"},
        {SECRET_HEADER: secret[:-1]},  # almost
        {SECRET_HEADER: tg.token.replace(":", "_")},  # the bot token is not the secret
    ]
    # Through the balancer (twice each, so both workers refuse each one) and straight
    # to each worker's own port: a worker trusts no network path, only the token.
    targets = [cluster.lb.url, cluster.lb.url] + [
        f"http://127.0.0.1:{port}{HOOK_PATH}" for port in cluster.lb.backends
    ]
    async with ClientSession() as session:
        for url in targets:
            for headers in wrong:
                async with session.post(
                    url, data=body, headers={**headers, "Content-Type": "application/json"}
                ) as response:
                    assert response.status in (401, 403), (url, headers, response.status)
        # The same request with the right token is accepted: only the token was wrong.
        # (Sent to a private chat nobody else uses, so it cannot disturb the checks below.)
        good: dict[str, Any] = {
            "update_id": 999_998,
            "message": {
                "message_id": 999_998,
                "date": 1_700_000_000,
                "chat": tg.chats[USERS[0]],
                "from": tg.users[USERS[0]],
                "text": "/start",
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
            },
        }
        async with session.post(
            cluster.lb.url,
            data=json.dumps(good).encode(),
            headers={SECRET_HEADER: secret, "Content-Type": "application/json"},
        ) as response:
            assert response.status == 200
    await tg.wait_sent(USERS[0], 1)
    refused = [f for f in cluster.lb.log if f.update_id == 999_999 and f.status != 200]
    assert {f.worker for f in refused} == {0, 1}

    # Nothing happened: the next real command in the group is the first one answered,
    # and the forged /subscribe changed nothing.
    real = tg.send_text(GROUP, MEMBER_READS, "/subscriptions")
    [answer] = await tg.wait_sent(GROUP, 1)
    assert answer.reply_to_message_id == real["message_id"]
    assert answer.text.startswith("No subscriptions yet.")
    for app in cluster.apps:
        assert await app.store.list_subscriptions(chat) == []
    assert tg.method_counts.get("getchatmember", 0) == 0  # not even an admin check ran


# ------------------------------------------- state every worker must share
# Which messages were explanations (for reply-to-ask follow-ups) and the data behind keys
# of callback data longer than 64 bytes live in the store: behind a round-robin balancer
# a reply or a button press works whichever worker it reaches.

PAPER = "1706.03762"


async def test_a_reply_to_an_explanation_is_a_question_on_any_worker(cluster: Cluster) -> None:
    tg, user = cluster.tg, USERS[0]
    chat = ChatRef("telegram", str(user))
    await cluster.apps[0].store.upsert_papers([Paper(PAPER, "Attention Is All You Need")])
    [sent] = await cluster.workers[0].reply(chat, Reply.text("An explanation."), paper=PAPER)
    for n in range(2):  # round robin: one reply reaches each worker
        tg.send_text(user, user, f"question {n}?", reply_to_message_id=int(sent))
    with contextlib.suppress(TimeoutError):
        await tg.wait_sent(user, 3, within=4.0)  # answers to one chat go a second apart
    answers = [m.text for m in tg.sent_to(user)[1:]]
    if not answers:  # not even the worker that sent the explanation answered: a real failure
        raise RuntimeError("no question was answered")
    assert len(answers) == 2, answers  # each question answered, whichever worker got it


async def test_a_long_button_works_on_any_worker(cluster: Cluster) -> None:
    tg, user = cluster.tg, USERS[0]
    chat = ChatRef("telegram", str(user))
    button = Button("Long", command="help", arg="ö" * 70)  # 140 bytes: goes through a key
    message = Message([Paragraph((Text("pick"),))], [[button]])
    [message_id] = await cluster.workers[0].send(chat, message)
    answers: list[str] = []
    for _ in range(2):  # round robin: one press reaches each worker
        query = tg.press_button(user, int(message_id), user, "Long")
        await tg.wait_for(lambda query=query: query in tg.callback_answers)  # type: ignore[misc]
        answers.append(tg.callback_answers[query]["text"])
    assert all("Too many arguments" in a for a in answers), answers  # /help got the arg
