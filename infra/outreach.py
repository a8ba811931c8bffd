"""Named queries for what customers do with our calls and campaigns: the keys pressed
during automated calls (call_choices), and the bind-a-new-card campaign's requests
(bind_card_requests) with the campaign's choice of policy."""

from __future__ import annotations

from datetime import date, datetime

import asyncpg

# --- keys pressed during calls -----------------------------------------------------------

_CALL_CHOICE = """
INSERT INTO call_choices (notification_id, call_sid, digits, choice) VALUES ($1, $2, $3, $4)
"""


async def record_call_choice(conn: asyncpg.Connection, notification_id: str, call_sid: str,
                             digits: str, choice: str) -> None:
    await conn.execute(_CALL_CHOICE, notification_id, call_sid, digits, choice)


# --- the bind-a-new-card campaign -----------------------------------------------------------

# $1: the customers the review listed; $2, $3: its window. The policy to talk about: the
# one whose debit failed last (a customer with several policies gets one message).
_POLICY_LAST_FAILED = """
SELECT DISTINCT ON (p.policyholder_id) p.policyholder_id AS customer_id, p.policy_number
FROM debit_attempts a
JOIN policies p ON p.policy_number = a.policy_number
WHERE p.policyholder_id = ANY($1::text[]) AND NOT a.succeeded
  AND a.attempted_at >= $2 AND a.attempted_at < $3
  AND p.status IN ('in_force', 'lapsed')
ORDER BY p.policyholder_id, a.attempted_at DESC
"""

_REQUEST_STATUS = """
SELECT status FROM bind_card_requests WHERE customer_id = $1 AND campaign_month = $2
"""

_MARK_QUIET = """
INSERT INTO bind_card_requests (customer_id, campaign_month, policy_number, card_last4, status)
VALUES ($1, $2, $3, $4, 'quiet')
ON CONFLICT (customer_id, campaign_month) DO UPDATE SET decided_at = now()
WHERE bind_card_requests.status = 'quiet'
"""

# Claimed once: a quiet customer may be asked by a later run; 'sending' is an attempt that
# was interrupted (its messages' own records say what went out).
_CLAIM_REQUEST = """
INSERT INTO bind_card_requests (customer_id, campaign_month, policy_number, card_last4, status)
VALUES ($1, $2, $3, $4, 'sending')
ON CONFLICT (customer_id, campaign_month) DO UPDATE
SET status = 'sending', decided_at = now(), policy_number = EXCLUDED.policy_number,
    card_last4 = EXCLUDED.card_last4
WHERE bind_card_requests.status = 'quiet'
RETURNING true
"""

_FINISH_REQUEST = """
UPDATE bind_card_requests SET status = $3, decided_at = now()
WHERE customer_id = $1 AND campaign_month = $2 AND status = 'sending'
"""

_MONTH_REQUESTS = """
SELECT status, count(*) AS count FROM bind_card_requests WHERE campaign_month = $1
GROUP BY status
"""


async def policy_last_failed(conn: asyncpg.Connection, customer_ids: list[str],
                             starts: datetime, ends: datetime) -> dict[str, str]:
    """Each customer's policy whose debit failed last in the window, by customer id."""
    rows = await conn.fetch(_POLICY_LAST_FAILED, customer_ids, starts, ends)
    return {r["customer_id"]: r["policy_number"] for r in rows}


async def request_status(conn: asyncpg.Connection, customer_id: str,
                         month: date) -> str | None:
    return await conn.fetchval(_REQUEST_STATUS, customer_id, month)


async def mark_quiet(conn: asyncpg.Connection, customer_id: str, month: date,
                     policy_number: str, card_last4: str | None) -> None:
    await conn.execute(_MARK_QUIET, customer_id, month, policy_number, card_last4)


async def claim_request(conn: asyncpg.Connection, customer_id: str, month: date,
                        policy_number: str, card_last4: str | None) -> bool:
    """False when another run claimed (or asked) the customer this month."""
    return bool(await conn.fetchval(_CLAIM_REQUEST, customer_id, month, policy_number,
                                    card_last4))


async def finish_request(conn: asyncpg.Connection, customer_id: str, month: date,
                         status: str) -> None:
    await conn.execute(_FINISH_REQUEST, customer_id, month, status)


async def month_counts(conn: asyncpg.Connection, month: date) -> dict[str, int]:
    """How many requests of the month ended in each status."""
    return {r["status"]: r["count"] for r in await conn.fetch(_MONTH_REQUESTS, month)}
