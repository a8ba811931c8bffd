"""The daily scan's queries: the at-risk set a page at a time, one query per page, and what
planning a page's journeys reads besides (`planning_facts`), one more.

A page is a keyset range of one of the two indexed ranges of migrations/0010_scan_report.sql
(rescissions, then overdue policies), read from the `scan_policies` view with everything the
scan's rule needs (dues, debit attempts, a served rescission), so no policy costs a round
trip of its own. The overdue query drops what is paid in full inside the database; the rule
in domain/scan.py decides the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import asyncpg

from domain.models import Policy
from domain.scan import ScanCursor, ScanRange

RESCISSIONS = """
SELECT * FROM scan_policies
WHERE status = 'in_force' AND rescission IS NOT NULL
  AND policy_number > $1
ORDER BY policy_number
LIMIT $2
"""

OVERDUE = """
SELECT * FROM scan_policies
WHERE status = 'in_force' AND rescission IS NULL AND due_date < $1
  AND (due_date, policy_number) > ($2, $3)
  AND outstanding > 0
ORDER BY due_date, policy_number
LIMIT $4
"""

# The policies named (the demo's cast, a re-run of the ones that failed): each is judged by
# the rule, at risk or not.
LISTED = """
SELECT * FROM scan_policies WHERE policy_number = ANY($1::text[]) ORDER BY policy_number
"""

_FIRST_KEY = ""  # sorts before every policy number
_FIRST_DUE = date.min


@dataclass(frozen=True)
class ScanRow:
    """One policy as the scan's rule reads it: no members, no customers (the rule needs
    neither; the journey reads them itself)."""

    policy: Policy
    rescission_served: bool


def scan_row(r: asyncpg.Record) -> ScanRow:
    """A page's record as the rule's values (ValidationError for a row that is not valid)."""
    policy = Policy(
        policy_number=r["policy_number"], product_code=r["product_code"],
        policyholder_id=r["policyholder_id"], effective_date=r["effective_date"],
        premium=r["premium"], currency=r["currency"], due_date=r["due_date"],
        status=r["status"], payment_method=r["payment_method"], rescission=r["rescission"],
        payment_period=r["payment_period"], dues=r["dues"],
        debit_attempts=r["debit_attempts"])
    return ScanRow(policy, r["rescission_served"])


@dataclass(frozen=True)
class Page:
    rows: list[asyncpg.Record]
    after: ScanCursor | None  # where the next page starts (None: a list of policies)
    last: bool  # nothing comes after this page


async def next_page(conn: asyncpg.Connection, as_of: date, cursor: ScanCursor,
                    size: int) -> Page:
    """The page of the at-risk set on `as_of` that starts after `cursor`."""
    if cursor.range is ScanRange.RESCISSION:
        rows = await conn.fetch(RESCISSIONS, cursor.policy_number or _FIRST_KEY, size)
        if len(rows) < size:
            return Page(rows, ScanCursor(range=ScanRange.OVERDUE), last=False)
        return Page(rows, ScanCursor(range=ScanRange.RESCISSION,
                                     policy_number=rows[-1]["policy_number"]), last=False)
    rows = await conn.fetch(OVERDUE, as_of, cursor.due_date or _FIRST_DUE,
                            cursor.policy_number or _FIRST_KEY, size)
    after = ScanCursor(range=ScanRange.OVERDUE, due_date=rows[-1]["due_date"],
                       policy_number=rows[-1]["policy_number"]) if rows else cursor
    return Page(rows, after, last=len(rows) < size)


async def at_risk_pages(pool: asyncpg.Pool, as_of: date, cursor: ScanCursor | None,
                        size: int, max_pages: int | None = None) -> AsyncIterator[Page]:
    """Pages from `cursor` (None: the beginning) until the set ends or `max_pages` are read.

    The next page is asked for only when the caller wants it, so the caller sets the pace.
    """
    cursor = cursor or ScanCursor()
    read = 0
    while max_pages is None or read < max_pages:
        async with pool.acquire() as conn:
            page = await next_page(conn, as_of, cursor, size)
        read += 1
        yield page
        if page.last:
            return
        cursor = page.after


async def listed_pages(pool: asyncpg.Pool, numbers: Sequence[str],
                       size: int) -> AsyncIterator[Page]:
    """The named policies, `size` at a time; the last page says the list is done."""
    unique = sorted(set(numbers))
    for start in range(0, len(unique), size):
        async with pool.acquire() as conn:
            rows = await conn.fetch(LISTED, unique[start:start + size])
        yield Page(rows, None, last=start + size >= len(unique))
    if not unique:
        yield Page([], None, last=True)



# What planning a page's journeys reads besides the page itself and the policyholders
# (store.load_customers): each policy's members, its open dues up to the trigger's due date
# (NULL: it has no dues at all, as `prepare_journey` counts them) and what was paid in the
# window before the start, for a page at once.
PLANNING = """
SELECT t.policy_number,
       ARRAY(SELECT i.customer_id FROM policy_insured i
             WHERE i.policy_number = t.policy_number AND i.role = 'member'
             ORDER BY i.customer_id) AS member_ids,
       CASE WHEN EXISTS (SELECT 1 FROM premium_dues d WHERE d.policy_number = t.policy_number)
            THEN (SELECT COALESCE(sum(d.amount - d.paid_amount), 0) FROM premium_dues d
                  WHERE d.policy_number = t.policy_number AND d.due_date <= t.due_date)
       END AS open_dues,
       (SELECT COALESCE(sum(y.amount), 0) FROM payments y
        WHERE y.policy_number = t.policy_number AND y.paid_at >= $3 AND y.paid_at <= $4)
           AS paid_recently
FROM unnest($1::text[], $2::date[]) AS t (policy_number, due_date)
"""


@dataclass(frozen=True)
class PlanningFacts:
    member_ids: list[str]
    open_dues: Decimal | None
    paid_recently: Decimal


async def planning_facts(conn: asyncpg.Connection, due: Sequence[tuple[str, date]],
                         paid_since: datetime, paid_until: datetime) -> dict[str, PlanningFacts]:
    """By policy number, for (policy number, trigger due date) pairs."""
    rows = await conn.fetch(PLANNING, [n for n, _ in due], [d for _, d in due], paid_since,
                            paid_until)
    return {r["policy_number"]: PlanningFacts(list(r["member_ids"]), r["open_dues"],
                                              r["paid_recently"]) for r in rows}
