"""Named queries for what customers do with our calls and campaigns: the keys pressed
during automated calls, and the bind-a-new-card campaign's records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

# --- keys pressed during calls -----------------------------------------------------------

NOTIFICATION_BY_REF = """
SELECT notification_id, policy_number, template_id FROM notifications WHERE provider_ref = $1
"""

INSERT_CALL_CHOICE = """
INSERT INTO call_choices (notification_id, call_sid, digits, choice) VALUES ($1, $2, $3, $4)
"""

CALL_CHOICES = """
SELECT call_sid, digits, choice, pressed_at FROM call_choices
WHERE notification_id = $1 ORDER BY pressed_at, choice_id
"""


@dataclass(frozen=True)
class CalledNotification:
    notification_id: str
    policy_number: str
    template_id: str | None


@dataclass(frozen=True)
class CallChoiceRecord:
    call_sid: str
    digits: str
    choice: str
    pressed_at: datetime


async def called_notification(conn: asyncpg.Connection, ref: str) -> CalledNotification | None:
    row = await conn.fetchrow(NOTIFICATION_BY_REF, ref)
    return CalledNotification(**dict(row)) if row else None


async def record_call_choice(conn: asyncpg.Connection, notification_id: str, call_sid: str,
                             digits: str, choice: str) -> None:
    await conn.execute(INSERT_CALL_CHOICE, notification_id, call_sid, digits, choice)


async def call_choices(conn: asyncpg.Connection, notification_id: str) -> list[CallChoiceRecord]:
    """The keys pressed during the call of one notification, in order."""
    return [CallChoiceRecord(**dict(r)) for r in await conn.fetch(CALL_CHOICES, notification_id)]
