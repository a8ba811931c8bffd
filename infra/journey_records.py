"""Named queries over a journey's own rows: the journey (journeys: its stage and outcome for
the review), the inquiries and applications it answers (inquiries), and the public notice
of holders it cannot reach (public_notices)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

# --- the journey ---------------------------------------------------------------------------

_START = """
INSERT INTO journeys (journey_id, policy_number, trigger, started_at, stage)
VALUES ($1, $2, $3, $4, 'at_risk') ON CONFLICT (journey_id) DO NOTHING
"""
_STARTS = """
INSERT INTO journeys (journey_id, policy_number, trigger, started_at, stage)
SELECT j, p, t, s, 'at_risk' FROM unnest($1::text[], $2::text[], $3::text[],
                                          $4::timestamptz[]) AS x (j, p, t, s)
ON CONFLICT (journey_id) DO NOTHING
"""
_STAGE = """
UPDATE journeys SET stage = $2, outcome = COALESCE($3, outcome),
       lapsed_at = CASE WHEN $2 = 'lapsed' AND lapsed_at IS NULL THEN $4 ELSE lapsed_at END,
       closed_at = CASE WHEN $2 = 'closed' THEN $4 ELSE closed_at END
WHERE journey_id = $1
"""


async def start_journey(conn: asyncpg.Connection, journey_id: str, policy_number: str,
                        trigger: str, started_at: datetime) -> None:
    """The journey's row, once (a retried plan finds it)."""
    await conn.execute(_START, journey_id, policy_number, trigger, started_at)


@dataclass(frozen=True)
class JourneyStart:
    journey_id: str
    policy_number: str
    trigger: str
    started_at: datetime


async def start_journeys(conn: asyncpg.Connection, starts: list[JourneyStart]) -> None:
    """Journeys' rows in one statement (the scan's page), each once."""
    await conn.execute(_STARTS, [s.journey_id for s in starts],
                       [s.policy_number for s in starts], [s.trigger for s in starts],
                       [s.started_at for s in starts])


async def set_stage(conn: asyncpg.Connection, journey_id: str, stage: str,
                    outcome: str | None, at: datetime) -> None:
    """The stage the journey moved to at `at`; lapsed and closed also keep when."""
    await conn.execute(_STAGE, journey_id, stage, outcome, at)


# --- inquiries and applications ------------------------------------------------------------

_OPEN_INQUIRY = """
INSERT INTO inquiries (inquiry_id, policy_number, kind, received_at, respond_by)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (inquiry_id) DO NOTHING
"""
# Each once: the evidence chain forbids changing them.
_ESCALATED = """
UPDATE inquiries SET escalated_at = $3
WHERE inquiry_id = $1 AND policy_number = $2 AND escalated_at IS NULL
"""
_HANDLED = """
UPDATE inquiries SET handled_at = $3
WHERE inquiry_id = $1 AND policy_number = $2 AND handled_at IS NULL
"""


async def open_inquiry(conn: asyncpg.Connection, inquiry_id: str, policy_number: str,
                       kind: str, received_at: datetime, respond_by: datetime) -> None:
    await conn.execute(_OPEN_INQUIRY, inquiry_id, policy_number, kind, received_at,
                       respond_by)


async def inquiry_escalated(conn: asyncpg.Connection, inquiry_id: str, policy_number: str,
                            at: datetime) -> None:
    """The record says the inquiry was escalated, and when (the review counts it)."""
    await conn.execute(_ESCALATED, inquiry_id, policy_number, at)


async def inquiry_handled(conn: asyncpg.Connection, inquiry_id: str, policy_number: str,
                          at: datetime) -> None:
    await conn.execute(_HANDLED, inquiry_id, policy_number, at)


# --- the public notice -----------------------------------------------------------------------

_LIST = """
INSERT INTO public_notices (policy_number) VALUES ($1)
ON CONFLICT (policy_number) DO UPDATE SET listed_at = now(), removed_at = NULL
"""
_UNLIST = "UPDATE public_notices SET removed_at = now() WHERE policy_number = $1"
_LISTED = """
SELECT n.policy_number, n.listed_at, c.name, c.gender, c.is_organisation
FROM public_notices n
JOIN policies p ON p.policy_number = n.policy_number
JOIN customers c ON c.customer_id = p.policyholder_id
WHERE n.removed_at IS NULL
ORDER BY n.listed_at, n.policy_number
"""


@dataclass(frozen=True)
class Listed:
    """A policy on the notice with its holder, unmasked: web/notice.py masks it."""

    policy_number: str
    listed_at: datetime
    name: str
    gender: str | None
    is_organisation: bool


async def set_public_notice(conn: asyncpg.Connection, policy_number: str,
                            listed: bool) -> None:
    """On the notice (again from now), or off it."""
    await conn.execute(_LIST if listed else _UNLIST, policy_number)


async def listed(conn: asyncpg.Connection) -> list[Listed]:
    """The policies on the notice now, in the order they were listed."""
    return [Listed(**dict(r)) for r in await conn.fetch(_LISTED)]
