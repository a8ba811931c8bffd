"""The demo's queries: the record operations correct for a held journey, and what the demo's
journeys left on record, counted for its closing summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

# What operations do for a held journey: set the birth date the ID number carries (its
# digits 7-14), as they would after checking with the customer.
CORRECT_BIRTH_DATE = """
UPDATE customers SET birth_date = to_date(substr(id_number, 7, 8), 'YYYYMMDD')
WHERE customer_id = (SELECT policyholder_id FROM policies WHERE policy_number = $1)
  AND id_number IS NOT NULL
"""

BY_CHANNEL = """
SELECT channel, status, count(*) AS n FROM notifications
WHERE policy_number = ANY($1::text[]) GROUP BY channel, status ORDER BY channel, status
"""

FAILED_BECAUSE = """
SELECT channel, error_code, count(*) AS n FROM notifications
WHERE policy_number = ANY($1::text[]) AND status IN ('failed', 'bounced')
  AND error_code IS NOT NULL
GROUP BY channel, error_code ORDER BY n DESC, channel, error_code LIMIT 4
"""

TASKS = """
SELECT kind, count(*) AS n FROM agent_tasks WHERE policy_number = ANY($1::text[])
GROUP BY kind ORDER BY kind
"""

LISTED = """
SELECT count(*) FROM public_notices WHERE policy_number = ANY($1::text[])
"""


async def correct_birth_date(pool: asyncpg.Pool, policy_number: str) -> None:
    """Set the policyholder's birth date to the one their ID number carries."""
    await pool.execute(CORRECT_BIRTH_DATE, policy_number)


@dataclass(frozen=True)
class DemoRecords:
    """What the demo's journeys left on record, as plain rows."""

    messages: list[tuple[str, str, int]]  # (channel, status, count), by channel and status
    failures: list[tuple[str, str, int]]  # (channel, error code, count): the 4 commonest
    tasks: list[tuple[str, int]]  # (kind, count), by kind
    listed: int  # policies on the public notice


async def demo_records(pool: asyncpg.Pool, policy_numbers: Sequence[str]) -> DemoRecords:
    numbers = list(policy_numbers)
    messages = await pool.fetch(BY_CHANNEL, numbers)
    failures = await pool.fetch(FAILED_BECAUSE, numbers)
    tasks = await pool.fetch(TASKS, numbers)
    return DemoRecords(
        messages=[(r["channel"], r["status"], r["n"]) for r in messages],
        failures=[(r["channel"], r["error_code"], r["n"]) for r in failures],
        tasks=[(r["kind"], r["n"]) for r in tasks],
        listed=await pool.fetchval(LISTED, numbers))
