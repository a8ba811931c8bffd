"""The agent call channel: an outbound-call task in agent_tasks, with the call script
(the notification's text), when it may be called and by when (its SLA). Agents work the
queue with `lapse task`; the outcome goes back to the journey as a signal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from activities.channels import Outgoing
from domain.plan import TZ, SendWindow
from infra import agent_tasks


def next_allowed(now: datetime, window: SendWindow) -> datetime:
    """`now` if inside the window, else the window's next start."""
    now = now.astimezone(TZ)
    if window.start <= now.time() < window.end:
        return now
    start = datetime.combine(now.date(), window.start, TZ)
    return start if now < start else start + timedelta(days=1)


class AgentCallQueue:
    provider = "agent-queue"
    idempotent = True  # one task per notification id: sending again finds it

    def __init__(self, pool: asyncpg.Pool, window: SendWindow, sla: timedelta = timedelta(days=1),
                 clock: Callable[[], datetime] = lambda: datetime.now(TZ), priority: int = 2):
        self._pool = pool
        self._window = window
        self._sla = sla
        self._clock = clock
        self._priority = priority

    async def send(self, message: Outgoing) -> str:
        due = next_allowed(self._clock(), self._window)
        task_id = message.notification_id  # one call task per notification: a retry finds it
        async with self._pool.acquire() as conn:
            await agent_tasks.open_for_notification(
                conn, task_id, message.policy_number, message.journey_id, "outbound_call",
                self._priority, due, message.notification_id, sla=self._sla)
        return task_id
