"""The agents' work queue: what an agent may report, taking and completing a task, and what
a completed task tells the journey, through the contract's existing signals. The queue's
statements are infra/agent_tasks.py's."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg

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
from infra.agent_tasks import TaskError, TaskView, get_task, mark_done, mark_taken
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


def closed_journey(task: TaskView) -> str | None:
    """Why a task of a closed journey is not worked: its journey closed (how, and when)."""
    if task.journey_closed_at is None:
        return None
    how = f" as {task.journey_outcome}" if task.journey_outcome else ""
    return (f"its journey closed{how} on {task.journey_closed_at.astimezone(TZ):%Y-%m-%d}: "
            "nothing is asked of the customer any more")


def _still_open(task: TaskView) -> None:
    """Raise TaskError when `task` is done or cancelled: nothing is left to work on it."""
    if task.status == "done":
        raise TaskError(f"task {task.task_id} is already done ({task.outcome})")
    if task.status == "cancelled":
        raise TaskError(f"task {task.task_id} was cancelled: "
                        f"{task.closed_reason or 'its journey closed'}")


async def take_task(conn: asyncpg.Connection, task_id: str, agent: str) -> TaskView:
    task = await get_task(conn, task_id)
    _still_open(task)
    closed = closed_journey(task)
    if closed:
        raise TaskError(f"task {task_id} is not offered: {closed}")
    if task.status == "taken" and task.taken_by != agent:
        raise TaskError(f"task {task_id} is taken by {task.taken_by}")
    await mark_taken(conn, task_id, agent)
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
        _still_open(task)
        if task.taken_by not in (None, agent):
            raise TaskError(f"task {task_id} is taken by {task.taken_by}")
        allowed = OUTCOMES[task.kind]
        if outcome not in allowed:
            raise TaskError(f"outcome must be one of {', '.join(allowed)} for a {task.kind} "
                            f"task (got {outcome!r})")
        await mark_done(conn, task_id, outcome, note or None, agent)
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
