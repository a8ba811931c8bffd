"""Named queries for what customers do with our calls and campaigns: the keys pressed
during automated calls, and the bind-a-new-card campaign's records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

# --- keys pressed during calls -----------------------------------------------------------

NOTIFICATION_BY_REF = """
SELECT notification_id, journey_id, policy_number, template_id, recipient_role
FROM notifications WHERE provider_ref = $1
"""

# An elderly caller who asks for an agent may need a visit (the article: 必要时上门协助办理).
INSERT_HOME_VISIT = """
INSERT INTO agent_tasks (task_id, policy_number, journey_id, kind, priority, due_at,
                         branch_code, notification_id)
VALUES ($1, $2, $3, 'home_visit', 2, now() + interval '1 day', $4, $5)
ON CONFLICT (task_id) DO NOTHING
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
    journey_id: str
    policy_number: str
    template_id: str | None
    recipient_role: str | None = None


@dataclass(frozen=True)
class CallChoiceRecord:
    call_sid: str
    digits: str
    choice: str
    pressed_at: datetime


async def called_notification(conn: asyncpg.Connection, ref: str) -> CalledNotification | None:
    row = await conn.fetchrow(NOTIFICATION_BY_REF, ref)
    return CalledNotification(**dict(row)) if row else None


async def open_home_visit(conn: asyncpg.Connection, called: CalledNotification,
                          branch_code: str) -> None:
    """One home-visit task per journey for a caller who asked for help."""
    await conn.execute(INSERT_HOME_VISIT, f"{called.journey_id}/home_visit/asked",
                       called.policy_number, called.journey_id, branch_code,
                       called.notification_id)


async def record_call_choice(conn: asyncpg.Connection, notification_id: str, call_sid: str,
                             digits: str, choice: str) -> None:
    await conn.execute(INSERT_CALL_CHOICE, notification_id, call_sid, digits, choice)


async def call_choices(conn: asyncpg.Connection, notification_id: str) -> list[CallChoiceRecord]:
    """The keys pressed during the call of one notification, in order."""
    return [CallChoiceRecord(**dict(r)) for r in await conn.fetch(CALL_CHOICES, notification_id)]


# --- the bind-a-new-card campaign -----------------------------------------------------------

# $1: the customers the review listed; $2, $3: its window. The policy to talk about: the
# one whose debit failed last (a customer with several policies gets one message).
POLICY_LAST_FAILED = """
SELECT DISTINCT ON (p.policyholder_id) p.policyholder_id AS customer_id, p.policy_number
FROM debit_attempts a
JOIN policies p ON p.policy_number = a.policy_number
WHERE p.policyholder_id = ANY($1::text[]) AND NOT a.succeeded
  AND a.attempted_at >= $2 AND a.attempted_at < $3
  AND p.status IN ('in_force', 'lapsed')
ORDER BY p.policyholder_id, a.attempted_at DESC
"""

REQUEST_STATUS = """
SELECT status FROM bind_card_requests WHERE customer_id = $1 AND campaign_month = $2
"""

MARK_QUIET = """
INSERT INTO bind_card_requests (customer_id, campaign_month, policy_number, card_last4, status)
VALUES ($1, $2, $3, $4, 'quiet')
ON CONFLICT (customer_id, campaign_month) DO UPDATE SET decided_at = now()
WHERE bind_card_requests.status = 'quiet'
"""

# Claimed once: a quiet customer may be asked by a later run; 'sending' is an attempt that
# was interrupted (its messages' own records say what went out).
CLAIM_REQUEST = """
INSERT INTO bind_card_requests (customer_id, campaign_month, policy_number, card_last4, status)
VALUES ($1, $2, $3, $4, 'sending')
ON CONFLICT (customer_id, campaign_month) DO UPDATE
SET status = 'sending', decided_at = now(), policy_number = EXCLUDED.policy_number,
    card_last4 = EXCLUDED.card_last4
WHERE bind_card_requests.status = 'quiet'
RETURNING true
"""

FINISH_REQUEST = """
UPDATE bind_card_requests SET status = $3, decided_at = now()
WHERE customer_id = $1 AND campaign_month = $2 AND status = 'sending'
"""

# Journey messages (any journey, any policy) to the customer, sent after $2.
JOURNEY_MESSAGES_SINCE = """
SELECT created_at FROM notifications
WHERE recipient_id = $1 AND created_at > $2 AND milestone <> $3
  AND status NOT IN ('failed', 'bounced', 'skipped')
"""

CUSTOMER_POLICIES = """
SELECT policy_number FROM policies WHERE policyholder_id = $1 ORDER BY policy_number
"""

# A campaign message's record, like a journey's: written 'sending' before the provider
# call, by its deterministic id; a record still 'queued' (a transient refusal) is tried
# again, any other is left as it is.
START_MESSAGE = """
INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, channel,
                           recipient_id, recipient_role, template_id, template_version,
                           subject, body, status, attempts, provider_ref)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'sending', 1, $12)
ON CONFLICT (notification_id) DO UPDATE
SET status = 'sending', attempts = notifications.attempts + 1, updated_at = now()
WHERE notifications.status = 'queued'
RETURNING true
"""

MESSAGE_STATUS = "SELECT status FROM notifications WHERE notification_id = $1"

# A callback may have come first: never move a status back.
SETTLE_MESSAGE = """
UPDATE notifications
SET status = CASE WHEN status IN ('queued', 'sending') THEN $2 ELSE status END,
    error_code = CASE WHEN status IN ('queued', 'sending') THEN $3 ELSE error_code END,
    provider = COALESCE($4, provider), provider_message_id = COALESCE($5, provider_message_id),
    updated_at = now()
WHERE notification_id = $1
"""

MESSAGE_EVENT = """
INSERT INTO notification_events (notification_id, status, error_code, occurred_at)
VALUES ($1, $2, $3, now())
"""

MONTH_REQUESTS = """
SELECT status, count(*) AS count FROM bind_card_requests WHERE campaign_month = $1
GROUP BY status
"""
