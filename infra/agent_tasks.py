"""Named queries over the agents' work queue (agent_tasks): every statement that opens,
reads, takes or closes a task. What an outcome tells the journey is infra/tasks.py's."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
from pydantic import BaseModel


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
_LIST = _SELECT + """
WHERE ($1::text IS NULL AND t.status IN ('open', 'taken') OR t.status = $1)
  AND ($2::text IS NULL OR t.kind = $2) AND ($3::text IS NULL OR t.policy_number = $3)
ORDER BY t.priority, t.due_at, t.task_id
"""
_ONE = _SELECT + "WHERE t.task_id = $1"

_TAKE = """
UPDATE agent_tasks SET status = 'taken', taken_by = $2, taken_at = now() WHERE task_id = $1
"""
_DONE = """
UPDATE agent_tasks SET status = 'done', outcome = $2, note = $3,
       taken_by = COALESCE(taken_by, $4), completed_at = now()
WHERE task_id = $1
"""

# One task per journey, kind and reason; asking again can only raise its priority.
_OPEN = """
INSERT INTO agent_tasks (task_id, policy_number, journey_id, kind, priority, due_at, rules,
                         branch_code)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (task_id) DO UPDATE SET priority = LEAST(agent_tasks.priority, EXCLUDED.priority)
"""
# A task about one notification (a call for an agent to make, a send to review, a visit a
# caller asked for): opened once, by its id.
_OPEN_FOR_NOTIFICATION = """
INSERT INTO agent_tasks (task_id, policy_number, journey_id, kind, priority, due_at, sla_at,
                         branch_code, notification_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (task_id) DO NOTHING
"""
# An elderly caller who asks for an agent may need a visit (the article: 必要时上门协助办理).
_HOME_VISIT = """
INSERT INTO agent_tasks (task_id, policy_number, journey_id, kind, priority, due_at,
                         branch_code, notification_id)
VALUES ($1, $2, $3, 'home_visit', 2, now() + interval '1 day', $4, $5)
ON CONFLICT (task_id) DO NOTHING
"""
_CLOSE_REVIEW = """
UPDATE agent_tasks SET status = 'done', outcome = $2, completed_at = now()
WHERE notification_id = $1 AND kind = 'delivery_review' AND status <> 'done'
"""
_DATA_VERIFIED = """
UPDATE agent_tasks SET status = 'done', outcome = 'proceed', closed_reason = 'data verified',
       completed_at = now()
WHERE journey_id = $1 AND kind = 'data_verification' AND status IN ('open', 'taken')
"""
_INQUIRY_ANSWERED = """
UPDATE agent_tasks SET status = 'done', outcome = 'handled', closed_reason = 'inquiry answered',
       completed_at = now()
WHERE task_id = $1 AND status IN ('open', 'taken')
"""
_CANCEL_OPEN = """
UPDATE agent_tasks SET status = 'cancelled', closed_reason = $2, completed_at = now()
WHERE journey_id = $1 AND status IN ('open', 'taken')
"""


async def list_tasks(conn: asyncpg.Connection, *, status: str | None = None,
                     kind: str | None = None, policy_number: str | None = None
                     ) -> list[TaskView]:
    """Open and taken tasks (or those of `status`), most urgent first."""
    rows = await conn.fetch(_LIST, status, kind, policy_number)
    return [TaskView(**dict(r)) for r in rows]


async def get_task(conn: asyncpg.Connection, task_id: str) -> TaskView:
    row = await conn.fetchrow(_ONE, task_id)
    if row is None:
        raise TaskError(f"no task {task_id}")
    return TaskView(**dict(row))


async def mark_taken(conn: asyncpg.Connection, task_id: str, agent: str) -> None:
    await conn.execute(_TAKE, task_id, agent)


async def mark_done(conn: asyncpg.Connection, task_id: str, outcome: str, note: str | None,
                    agent: str) -> None:
    await conn.execute(_DONE, task_id, outcome, note, agent)


async def open_task(conn: asyncpg.Connection, task_id: str, policy_number: str,
                    journey_id: str, kind: str, priority: int, due_at: datetime,
                    rules: list[str] | None, branch_code: str | None) -> None:
    """A journey's task (a data check, an escalation, a repair, a visit)."""
    await conn.execute(_OPEN, task_id, policy_number, journey_id, kind, priority, due_at,
                       rules, branch_code)


async def open_for_notification(conn: asyncpg.Connection, task_id: str, policy_number: str,
                                journey_id: str, kind: str, priority: int, due_at: datetime,
                                notification_id: str, *, sla: timedelta | None = None,
                                branch_code: str | None = None) -> None:
    await conn.execute(_OPEN_FOR_NOTIFICATION, task_id, policy_number, journey_id, kind,
                       priority, due_at, due_at + sla if sla is not None else None,
                       branch_code, notification_id)


async def open_home_visit(conn: asyncpg.Connection, journey_id: str, policy_number: str,
                          notification_id: str, branch_code: str) -> None:
    """One home-visit task per journey for a caller who asked for help."""
    await conn.execute(_HOME_VISIT, f"{journey_id}/home_visit/asked", policy_number,
                       journey_id, branch_code, notification_id)


async def close_review(conn: asyncpg.Connection, notification_id: str, outcome: str) -> None:
    """The notification's delivery review, if one was opened, is done."""
    await conn.execute(_CLOSE_REVIEW, notification_id, outcome)


async def data_verified(conn: asyncpg.Connection, journey_id: str) -> None:
    """A held journey goes ahead: its data check is answered."""
    await conn.execute(_DATA_VERIFIED, journey_id)


async def inquiry_answered(conn: asyncpg.Connection, task_id: str) -> None:
    await conn.execute(_INQUIRY_ANSWERED, task_id)


async def cancel_open(conn: asyncpg.Connection, journey_id: str, reason: str) -> None:
    """The journey closed: its open and taken tasks are settled with the reason."""
    await conn.execute(_CANCEL_OPEN, journey_id, reason)
