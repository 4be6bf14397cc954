"""Rows a dead process on this host held come back when the next process starts, not when
their leases run out; anything that may still run keeps its lease."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.delivery import Dispatcher
from bot.delivery.workers import gone, worker_name
from bot.doc import Message, Paragraph, Text
from bot.models import ChatRef
from bot.serialize import message_to_json
from bot.service import Paperboy
from bot.store.base import Enqueue
from tests.test_delivery import FAST, RecordingSender, add_chat, app  # noqa: F401 - fixture


def _digest(chat: ChatRef, due: datetime) -> Enqueue:
    """Two messages, "1" and "2", for the chat's run at `due`."""
    bodies = [message_to_json(Message([Paragraph((Text(str(n)),))])) for n in (1, 2)]
    keys = [f"{chat.key}:{due:%Y%m%dT%H%M%S}:{n}" for n in (1, 2)]
    return Enqueue(chat, due, due + timedelta(days=1), list(zip(keys, bodies, strict=True)), [])


def _ended_pid() -> int:
    """The process id of a process that has run and been reaped."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


def _as(pid: int, me: str) -> str:
    place = me.partition(":")[0]
    return f"{place}:{pid}:abc123"


def test_a_reaped_process_on_this_host_is_gone() -> None:
    me = worker_name()
    assert gone(_as(_ended_pid(), me), me)


def test_a_running_process_is_not_gone() -> None:
    me = worker_name()
    assert not gone(_as(os.getppid(), me), me)
    assert not gone(me, me)  # ourselves
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            assert not gone(_as(proc.pid, me), me)
        finally:
            proc.kill()


def test_a_killed_process_not_reaped_yet_is_gone() -> None:
    me = worker_name()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        proc.kill()
        for _ in range(500):  # the kill lands soon; a zombie until we wait for it
            with open(f"/proc/{proc.pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        else:
            pytest.fail("the killed process never became a zombie")
        assert gone(_as(proc.pid, me), me)
    finally:
        proc.wait()


def test_another_dispatcher_of_this_process_is_not_gone() -> None:
    me, sibling = worker_name(), worker_name()
    assert not gone(sibling, me) and not gone(me, sibling)


def test_an_earlier_process_with_our_own_pid_is_gone() -> None:
    # A container restarted: the bot has the same process id (often 1) as the one before.
    me = worker_name()
    place, _, rest = me.partition(":")
    pid = rest.partition(":")[0]
    assert gone(f"{place}:{pid}:000000", me)


def test_what_may_still_run_elsewhere_is_never_gone() -> None:
    me = worker_name()
    host, _, rest = me.partition("|")
    namespace = rest.partition(":")[0]
    dead = _ended_pid()
    assert not gone(f"another-host|{namespace}:{dead}:abc123", me)
    # The same host name, another PID namespace: a container on the host's network.
    assert not gone(f"{host}|1:{dead}:abc123", me)
    for odd in ("", "w1", "dead-worker", f"{host}|{namespace}:x:abc", f"{host}:{dead}:abc"):
        assert not gone(odd, me)


async def test_a_restart_sends_the_rows_a_dead_process_held_at_once(app: Paperboy) -> None:  # noqa: F811
    store = app.store
    chats = [await add_chat(app, str(n)) for n in (1, 2, 3)]
    now = datetime.now(UTC)
    await store.set_next_runs([(c, now) for c in chats])
    await store.enqueue_digests([_digest(c, now) for c in chats], now)
    me = worker_name()
    dead, elsewhere = _as(_ended_pid(), me), f"other-host|1:{os.getpid()}:abc123"
    lease = 300.0  # far longer than this test: only taking them back can send them
    held = await store.claim_outbox(now, 2, lease, dead, ["telegram"])
    held += await store.claim_outbox(now, 1, lease, elsewhere, ["telegram"])
    assert len(held) == 3
    sender = RecordingSender()
    dispatcher = Dispatcher(store, {"telegram": sender}, FAST, worker=me)
    task = asyncio.create_task(dispatcher.run())
    try:
        for _ in range(500):
            if len(sender.sent) >= 4:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # The dead process's two chats get both their rows, in order; the third chat waits
    # for the lease of a process that may still be sending it.
    for item in held[:2]:
        assert [m.blocks for m in sender.to(item.chat.chat_id)] == [
            [Paragraph((Text(n),))] for n in ("1", "2")
        ]
    assert sender.to(held[2].chat.chat_id) == []
    assert await store.outbox_lease_holders() == [elsewhere]
    assert (await store.outbox_counts())["sent"] == 4
