"""Daily digests through an outbox.

enqueue.py  the scheduler tick: due chats, their digests, outbox rows (nothing is sent)
dispatch.py the Dispatcher: lease rows, send each chat in order under the limits its
            adapter declares, renew leases, retry, record
run.py      `paperboy run`'s background loop and `deliver --now`
"""

from bot.delivery.dispatch import Dispatcher, SendStats
from bot.delivery.enqueue import TickStats, schedule_new, scheduler_tick
from bot.delivery.run import deliver_once, run_delivery, senders_for

__all__ = [
    "Dispatcher",
    "SendStats",
    "TickStats",
    "deliver_once",
    "run_delivery",
    "schedule_new",
    "scheduler_tick",
    "senders_for",
]
