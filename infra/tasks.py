"""The agents' work queue (agent_tasks): list, take, complete, and what a completed task
tells the journey, through the contract's existing signals."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from contract import (
    CONTACT_UPDATED,
    DATA_VERIFIED,
    DELIVERY_FAILED,
    INQUIRY_HANDLED,
    INQUIRY_RECEIVED,
)
from domain.journey import (
    ContactUpdated,
    DataVerified,
    DeliveryFailed,
    InquiryHandled,
    InquiryKind,
    InquiryReceived,
    VerificationOutcome,
)
from domain.models import Channel
from domain.plan import TZ
from infra.deliveries import set_status
from infra.journeys import JourneyNotRunning, Journeys

# What an agent may report per kind of task.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "outbound_call": ("reached", "promised_to_pay", "hardship", "refused", "no_answer",
                      "wrong_number"),
    "contact_repair": ("contact_updated", "not_found"),
    "delivery_review": ("delivered", "not_delivered"),
    "inquiry_escalation": ("handled",),
    "home_visit": ("visited", "not_home"),
    # A held journey: the data is right (or was corrected) or the journey must not run.
    "data_verification": ("proceed", "cancel"),
    # A formal notice that reached the policyholder on no provable channel.
    "notice_failed": ("delivered_by_hand", "not_delivered"),
}
_NOT_REACHED = frozenset({"no_answer", "wrong_number", "not_delivered"})
_REACHED = frozenset({"reached", "promised_to_pay", "hardship", "refused", "delivered"})


class TaskError(ValueError):
    """A task that does not exist or cannot change that way; the message says why."""


class TaskView(BaseModel):
    task_id: str
    policy_number: str
    kind: str
    priority: int
    status: str
    due_at: datetime
    sla_at: datetime | None
    overdue: bool
    taken_by: str | None
    outcome: str | None
    notification_id: str | None
    script: str | None  # the call script (an outbound call's notification text)
    rules: list[str] = []  # a data check's failed rules (names, never values)
    closed_reason: str | None = None  # why a task was cancelled (its journey closed)
    # The task's journey, once it closed: its task asks nothing of an agent any more.
    journey_closed_at: datetime | None = None
    journey_outcome: str | None = None


# A closed journey's call script is never read out: it asks for a premium nobody owes now.
_SELECT = """
SELECT t.task_id, t.policy_number, t.kind, t.priority, t.status, t.due_at, t.sla_at,
       t.taken_by, t.outcome, t.notification_id, COALESCE(t.rules, '{}') AS rules,
       t.closed_reason,
       (t.status IN ('open', 'taken') AND COALESCE(t.sla_at, t.due_at) < now()) AS overdue,
       CASE WHEN t.kind = 'outbound_call' AND j.closed_at IS NULL THEN n.body END AS script,
       j.closed_at AS journey_closed_at, j.outcome AS journey_outcome
FROM agent_tasks t LEFT JOIN notifications n ON n.notification_id = t.notification_id
     LEFT JOIN journeys j ON j.journey_id = t.journey_id
"""


async def list_tasks(conn: asyncpg.Connection, *, status: str | None = None,
                     kind: str | None = None, policy_number: str | None = None
                     ) -> list[TaskView]:
    rows = await conn.fetch(
        _SELECT + "WHERE ($1::text IS NULL AND t.status IN ('open', 'taken') "
        "OR t.status = $1) "
        "AND ($2::text IS NULL OR t.kind = $2) AND ($3::text IS NULL OR t.policy_number = $3) "
        "ORDER BY t.priority, t.due_at, t.task_id", status, kind, policy_number)
    return [TaskView(**dict(r)) for r in rows]


async def get_task(conn: asyncpg.Connection, task_id: str) -> TaskView:
    row = await conn.fetchrow(_SELECT + "WHERE t.task_id = $1", task_id)
    if row is None:
        raise TaskError(f"no task {task_id}")
    return TaskView(**dict(row))


def closed_journey(task: TaskView) -> str | None:
    """Why a task of a closed journey is not worked: its journey closed (how, and when)."""
    if task.journey_closed_at is None:
        return None
    how = f" as {task.journey_outcome}" if task.journey_outcome else ""
    return (f"its journey closed{how} on {task.journey_closed_at.astimezone(TZ):%Y-%m-%d}: "
            "nothing is asked of the customer any more")


async def take_task(conn: asyncpg.Connection, task_id: str, agent: str) -> TaskView:
    task = await get_task(conn, task_id)
    if task.status == "done":
        raise TaskError(f"task {task_id} is already done")
    if task.status == "cancelled":
        raise TaskError(f"task {task_id} was cancelled: "
                        f"{task.closed_reason or 'its journey closed'}")
    closed = closed_journey(task)
    if closed:
        raise TaskError(f"task {task_id} is not offered: {closed}")
    if task.status == "taken" and task.taken_by != agent:
        raise TaskError(f"task {task_id} is taken by {task.taken_by}")
    await conn.execute("UPDATE agent_tasks SET status = 'taken', taken_by = $2, "
                       "taken_at = now() WHERE task_id = $1", task_id, agent)
    return await get_task(conn, task_id)


@dataclass(frozen=True)
class Completion:
    task: TaskView
    signal: str | None  # the signal sent to the journey, if any
    journey_running: bool


async def complete_task(pool: asyncpg.Pool, journeys: Journeys, task_id: str,
                        outcome: str, agent: str, note: str = "",
                        now: datetime | None = None) -> Completion:
    """Close the task, settle its notification, and tell the journey what it needs to know.

    The signal goes out inside the transaction: if it fails, nothing is stored and the
    agent can simply complete the task again.
    """
    now = now or datetime.now(TZ)
    async with pool.acquire() as conn, conn.transaction():
        task = await get_task(conn, task_id)
        if task.status == "done":
            raise TaskError(f"task {task_id} is already done ({task.outcome})")
        if task.status == "cancelled":
            raise TaskError(f"task {task_id} was cancelled: "
                            f"{task.closed_reason or 'its journey closed'}")
        if task.taken_by not in (None, agent):
            raise TaskError(f"task {task_id} is taken by {task.taken_by}")
        allowed = OUTCOMES[task.kind]
        if outcome not in allowed:
            raise TaskError(f"outcome must be one of {', '.join(allowed)} for a {task.kind} "
                            f"task (got {outcome!r})")
        await conn.execute(
            "UPDATE agent_tasks SET status = 'done', outcome = $2, note = $3, "
            "taken_by = COALESCE(taken_by, $4), completed_at = now() WHERE task_id = $1",
            task_id, outcome, note or None, agent)
        signal, payload = None, None
        if task.notification_id and outcome in _REACHED | _NOT_REACHED:
            failed = outcome in _NOT_REACHED
            record = await set_status(conn, task.notification_id,
                                      "failed" if failed else "delivered",
                                      outcome if failed else None, f"{task.kind}: {outcome}")
            if failed and record is not None:
                signal, payload = DELIVERY_FAILED, DeliveryFailed(
                    notification_id=record.notification_id, channel=Channel(record.channel),
                    error_code=outcome, permanent=True)
        if outcome == "hardship":
            signal, payload = INQUIRY_RECEIVED, InquiryReceived(
                inquiry_id=_inquiry_id(task_id), kind=InquiryKind.HARDSHIP, received_at=now)
        elif outcome == "contact_updated":
            signal, payload = CONTACT_UPDATED, ContactUpdated(updated_at=now)
        elif task.kind == "inquiry_escalation":
            # Task ids are "{journey}/{kind}/{reference}"; the reference is the inquiry id.
            # The note stays on the task row; the journey only learns that it is handled.
            signal, payload = INQUIRY_HANDLED, InquiryHandled(
                inquiry_id=task_id.split("/", 2)[-1], handled_at=now)
        elif task.kind == "data_verification":
            signal, payload = DATA_VERIFIED, DataVerified(
                verified_by=agent, verified_at=now, outcome=VerificationOutcome(outcome))
        running = True
        if signal is not None:
            try:
                await journeys.signal(task.policy_number, signal, payload)
            except JourneyNotRunning:
                running = False
        return Completion(await get_task(conn, task_id), signal if running else None, running)


def _inquiry_id(task_id: str) -> str:
    return "call-" + hashlib.sha256(task_id.encode()).hexdigest()[:16]
