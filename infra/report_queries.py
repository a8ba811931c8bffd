"""The monthly review's queries: named, parameterised counts over the records.

Each monthly query counts one calendar month: $1 and $2 are its bounds (timestamptz, the
end excluded), so it needs no time-zone arithmetic per row and its plan stays a range
scan; the window's months are asked one by one. The definitions they implement are in
domain/report.py. A record's milestone is its `kind` column, written with the record
(domain/report.py `record_kind`, migrations/0019_notification_kind.sql, which also holds
the indexes on it); the receipts per record are in 0013_review_receipts.sql.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import date, datetime

import asyncpg
from pydantic import TypeAdapter

from domain.report import (
    DEFAULT_RULES,
    ApplicationCount,
    BindCardRequestRow,
    DebitFailureCount,
    FirstReminderCount,
    FunnelCount,
    InquiryCount,
    LapseCount,
    NotificationCount,
    PaidInGraceCount,
    ReinstatedCount,
    ReportRecords,
    ReportRules,
    StartCount,
    months_ending,
    window,
)

# The record's kind is its milestone (written with it): one index-only range of the month.
NOTIFICATIONS = """
SELECT channel, kind AS milestone, status, error_code, count(*)::integer AS count
FROM notifications
WHERE created_at >= $1 AND created_at < $2
GROUP BY 1, 2, 3, 4
"""
# The trends read a month's delivery rates over every milestone: no milestone to work out.
NOTIFICATIONS_COUNT = """
SELECT channel, NULL::text AS milestone, status, error_code, count(*)::integer AS count
FROM notifications
WHERE created_at >= $1 AND created_at < $2
GROUP BY 1, 3, 4
"""

# The month's journeys by the facts of their first reminders (domain/evidence.py judges each
# kind): a journey's facts, "channel status receipt tracked" joined by ',', are kept per
# journey and month by triggers as records, receipts and tracking numbers are written
# (report_first_reminders, migrations/0018_review_summaries.sql), so a month is one range of
# that table grouped by the facts; the kinds become records at the end.
FIRST_REMINDERS = """
SELECT (SELECT jsonb_agg(jsonb_build_object(
                   'channel', split_part(f, ' ', 1), 'status', split_part(f, ' ', 2),
                   'receipt', NULLIF(split_part(f, ' ', 3), '-'),
                   'tracked', split_part(f, ' ', 4) = 'true') ORDER BY f)
        FROM unnest(string_to_array(kinds.facts, ',')) f) AS records,
       kinds.journeys
FROM (
    SELECT facts, count(*) AS journeys
    FROM report_first_reminders
    WHERE month_start >= $1 AND month_start < $2
    GROUP BY facts
) kinds
"""

INQUIRIES = """
SELECT kind, count(*) AS received,
       count(*) FILTER (WHERE handled_at <= respond_by) AS on_time,
       count(*) FILTER (WHERE handled_at > respond_by) AS late,
       count(*) FILTER (WHERE handled_at IS NULL) AS unanswered,
       count(*) FILTER (WHERE escalated_at IS NOT NULL) AS escalated
FROM inquiries
WHERE received_at >= $1 AND received_at < $2
GROUP BY kind
"""

# A decision on record: the policy's journey closed `reinstated` after the application, or
# the refusal message of this application was sent: its milestone key names the
# application (MilestoneKey reinstatement_refused-application:ID, tests/domain/test_vocabulary.py).
APPLICATIONS = """
SELECT count(*) AS received,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM journeys j
           WHERE j.policy_number = i.policy_number AND j.outcome = 'reinstated'
             AND j.closed_at >= i.received_at)) AS approved,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM notifications n
           WHERE n.policy_number = i.policy_number AND n.created_at >= i.received_at
             AND n.milestone = 'reinstatement_refused-application:' || i.inquiry_id))
           AS refused
FROM inquiries i
WHERE i.kind = 'reinstatement' AND i.received_at >= $1 AND i.received_at < $2
"""

STARTS = """
SELECT trigger, count(*) AS count
FROM journeys
WHERE started_at >= $1 AND started_at < $2
GROUP BY trigger
"""

# Reminders stop when the premium is paid, so the journey's latest reminder record is the
# last milestone reached before the payment (a message to an emergency contact is of its
# own kind, not a reminder).
PAID_IN_GRACE = """
SELECT last.kind AS milestone, count(*) AS count
FROM journeys j
LEFT JOIN LATERAL (
    SELECT n.kind
    FROM notifications n
    WHERE n.journey_id = j.journey_id AND n.kind IN ('first_reminder', 'second_reminder')
    ORDER BY n.created_at DESC
    LIMIT 1
) last ON true
WHERE j.closed_at >= $1 AND j.closed_at < $2 AND j.outcome = 'paid'
GROUP BY 1
"""

# The months before the report month are read for the trends only, which need counts, not
# the last reminder before each payment.
PAID_IN_GRACE_COUNT = """
SELECT NULL::text AS milestone, count(*) AS count
FROM journeys
WHERE closed_at >= $1 AND closed_at < $2 AND outcome = 'paid'
"""

# The month's lapses by their index; each one's product through its policy (a key look-up
# a lapse, of policies_product_idx alone: LIMIT keeps the planner from reading the policies
# whole), products joined last.
# LAPSES adds the reason of each failed-debit lapse's last failed debit before it (one more
# look-up a failed-debit lapse: the condition inside the look-up skips the other lapses); the
# trends count lapses without their reasons (LAPSES_COUNT), so the
# months before the report month skip it.
_LAPSES = """
SELECT l.trigger, l.debit_reason,
       COALESCE((pr.rules ->> 'reinstatable')::boolean, true) AND pr.kind = 'long_term'
           AS reinstatable,
       l.reinstated, sum(l.count)::integer AS count
FROM (
    SELECT j.trigger, {debit_reason} AS debit_reason, p.product_code,
           j.outcome IS NOT DISTINCT FROM 'reinstated' AS reinstated, count(*) AS count
    FROM journeys j
    CROSS JOIN LATERAL (
        SELECT product_code FROM policies WHERE policy_number = j.policy_number LIMIT 1
    ) p{debit}
    WHERE j.lapsed_at >= $1 AND j.lapsed_at < $2
    GROUP BY 1, 2, 3, 4
) l
JOIN products pr ON pr.code = l.product_code
GROUP BY 1, 2, 3, 4
UNION ALL
SELECT trigger, NULL, false, false, count(*)
FROM journeys
WHERE trigger = 'rescission' AND started_at >= $1 AND started_at < $2
GROUP BY trigger
"""
LAPSES = _LAPSES.format(debit_reason="debit.reason_code", debit="""
    LEFT JOIN LATERAL (
        SELECT a.reason_code
        FROM debit_attempts a
        WHERE a.policy_number = j.policy_number AND NOT a.succeeded
          AND a.attempted_at <= j.lapsed_at AND j.trigger = 'debit_failed'
        ORDER BY a.attempted_at DESC
        LIMIT 1
    ) debit ON true""")
LAPSES_COUNT = _LAPSES.format(debit_reason="NULL::text", debit="")

REINSTATED = """
SELECT count(*) AS count
FROM journeys
WHERE closed_at >= $1 AND closed_at < $2 AND outcome = 'reinstated'
"""

# Over the whole window at once ($1, $2: its bounds): the journeys started in it, and the
# journeys with a first reminder on record since it began (a journey's first reminder follows
# its start), both ranges of the window.
FUNNEL = """
SELECT count(*) AS first_reminded,
       count(*) FILTER (WHERE j.outcome = 'paid') AS paid_in_grace,
       count(*) FILTER (WHERE j.lapsed_at IS NOT NULL) AS lapsed,
       count(*) FILTER (WHERE j.outcome = 'reinstated') AS reinstated,
       count(*) FILTER (WHERE j.lapsed_at IS NULL AND j.outcome IS NOT NULL
                          AND j.outcome <> 'paid') AS ended_otherwise
FROM journeys j
WHERE j.started_at >= $1 AND j.started_at < $2
  AND j.journey_id IN (
      SELECT s.journey_id FROM report_first_reminders s WHERE s.month_start >= $1)
"""

# $1, $2: the whole window; $3: the least number of failures that puts a customer on it.
# The window's failed debits are one range of debit_attempts_failed_report_idx, grouped by
# policy in byte order (COLLATE "C": the same groups, but no index's order, so the plan
# never reads the whole table in the order of its primary key instead); their policies, and
# then the customers on the list, are read by key in one sorted pass over each primary key
# (`= ANY` of the keys), not by one look-up each.
REPEATED_DEBIT_FAILURES = """
WITH f AS MATERIALIZED (
    SELECT a.policy_number COLLATE "C" AS policy_number, count(*) AS failures,
           max(a.attempted_at) AS last_failed_at,
           (array_agg(a.reason_code ORDER BY a.attempted_at DESC))[1] AS last_reason
    FROM debit_attempts a
    WHERE NOT a.succeeded AND a.attempted_at >= $1 AND a.attempted_at < $2
    GROUP BY 1
), p AS MATERIALIZED (
    SELECT policy_number, policyholder_id, payment_method ->> 'card_last4' AS card_last4
    FROM policies
    WHERE policy_number = ANY (ARRAY(SELECT policy_number COLLATE "default" FROM f))
), h AS MATERIALIZED (
    SELECT p.policyholder_id COLLATE "C" AS policyholder_id, p.card_last4 COLLATE "C" AS card_last4,
           sum(f.failures)::integer AS failures, max(f.last_failed_at) AS last_failed_at,
           (array_agg(f.last_reason ORDER BY f.last_failed_at DESC))[1] AS last_reason
    FROM f JOIN p ON p.policy_number = f.policy_number COLLATE "default"
    GROUP BY 1, 2
    HAVING sum(f.failures) >= $3
)
SELECT c.customer_id, c.name, c.gender, c.is_organisation, h.card_last4, h.failures,
       h.last_failed_at, h.last_reason
FROM h JOIN customers c ON c.customer_id = h.policyholder_id COLLATE "default"
WHERE c.customer_id = ANY (ARRAY(SELECT policyholder_id COLLATE "default" FROM h))
"""

# The bind-a-new-card campaign's requests sent in the month, with the card then and now.
BIND_CARD = """
SELECT r.card_last4 AS card_then, p.payment_method ->> 'card_last4' AS card_now,
       EXISTS (SELECT 1 FROM debit_attempts a
               WHERE a.policy_number = r.policy_number AND a.succeeded
                 AND a.attempted_at > r.decided_at) AS debit_succeeded_since
FROM bind_card_requests r
JOIN policies p ON p.policy_number = r.policy_number
WHERE r.status = 'sent' AND r.decided_at >= $1 AND r.decided_at < $2
"""

# The monthly queries in the order the review reads them, with the model of their rows.
MONTHLY = {
    "notifications": (NOTIFICATIONS, NotificationCount),
    "first_reminders": (FIRST_REMINDERS, FirstReminderCount),
    "inquiries": (INQUIRIES, InquiryCount),
    "applications": (APPLICATIONS, ApplicationCount),
    "starts": (STARTS, StartCount),
    "paid_in_grace": (PAID_IN_GRACE, PaidInGraceCount),
    "lapses": (LAPSES, LapseCount),
    "reinstated": (REINSTATED, ReinstatedCount),
    "bind_card": (BIND_CARD, BindCardRequestRow),
}
# For the trends' months: a lighter query where the trends need less than the month's
# review, none where they need nothing (domain/report.py `_trend` says what they read).
TREND = {"notifications": NOTIFICATIONS_COUNT, "paid_in_grace": PAID_IN_GRACE_COUNT,
         "lapses": LAPSES_COUNT, "applications": None, "bind_card": None}
# The queries run side by side on this many connections of one snapshot (the review is
# bound by the database's CPU: one connection uses one core).
CONNECTIONS = 2
# For the review's transactions only: sorts and hashes in memory (the default 4 MB spills a
# window's repeated failures to disk); and the planner told that index pages are as cheap to
# reach as the table's (the records a review reads are in memory), so that a range that is
# half of a young database (the bench's one year of records against a six-month window) is
# still read as a range of its index, not as the whole table, as it is on a database with
# years of records.
REVIEW_SETTINGS = ("SET LOCAL work_mem = '32MB'", "SET LOCAL random_page_cost = 1.1")
_DEBIT_FAILURES = TypeAdapter(list[DebitFailureCount])
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


async def fetch_monthly(conn: asyncpg.Connection, name: str, month: date,
                        trend: bool = False) -> list:
    """One monthly query's rows for `month`, as the models of domain/report.py; `trend`:
    only what the trends read of a month before the report month."""
    sql, model = MONTHLY[name]
    if trend and name in TREND:
        sql = TREND[name]
        if sql is None:
            return []
    rows = await conn.fetch(sql, *window(month, 1))
    return [model(month=month, **dict(r)) for r in rows]


async def fetch_funnel(conn: asyncpg.Connection, month: date, months: int) -> FunnelCount:
    """The funnel of the journeys started in the `months` ending with `month`."""
    row = await conn.fetchrow(FUNNEL, *window(month, months))
    return FunnelCount(month=month, **dict(row))


async def fetch_debit_failures(conn: asyncpg.Connection, starts_at: datetime, ends_at: datetime,
                               at_least: int) -> list[DebitFailureCount]:
    rows = await conn.fetch(REPEATED_DEBIT_FAILURES, starts_at, ends_at, at_least)
    return _DEBIT_FAILURES.validate_python([dict(r) for r in rows])  # thousands: one call


async def fetch_records(pool: asyncpg.Pool, month: date,
                        rules: ReportRules = DEFAULT_RULES) -> ReportRecords:
    """Everything the review of `month` counts, over the window that ends with it.

    One snapshot: every query reads the same committed state, also on the second
    connection, which imports the first one's snapshot.
    """
    months = months_ending(month, rules.window_months)
    found: dict[str, list] = {name: [] for name in MONTHLY}
    extra: dict[str, object] = {}
    # The costliest first, so that the connections finish together.
    costliest = ("lapses", "notifications", "paid_in_grace")
    work: list = [("debit_failures", None), ("funnel", None)]
    work += [(name, m) for name in costliest for m in reversed(months)]
    work += [(name, m) for name in MONTHLY if name not in costliest
             for m in reversed(months)]
    queue = iter(work)

    async def drain(conn: asyncpg.Connection) -> None:
        for name, m in queue:  # shared: each item is taken by one connection
            if name == "funnel":
                extra[name] = [await fetch_funnel(conn, month, rules.window_months)]
            elif name == "debit_failures":
                extra[name] = await fetch_debit_failures(
                    conn, *window(month, rules.window_months), rules.repeat_failures)
            else:
                found[name] += await fetch_monthly(conn, name, m, trend=m != month)

    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(pool.acquire()) for _ in range(CONNECTIONS)]
        lead = conns[0]
        await stack.enter_async_context(lead.transaction(isolation="repeatable_read",
                                                         readonly=True))
        for setting in REVIEW_SETTINGS:
            await lead.execute(setting)
        snapshot = await lead.fetchval("SELECT pg_export_snapshot()")
        if not _SNAPSHOT_ID.match(snapshot):
            raise RuntimeError("PostgreSQL exported a snapshot id of an unknown form")
        for conn in conns[1:]:
            await stack.enter_async_context(conn.transaction(isolation="repeatable_read",
                                                             readonly=True))
            # A statement, not a query: the id cannot be a parameter (checked above).
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            for setting in REVIEW_SETTINGS:
                await conn.execute(setting)
        await asyncio.gather(*(drain(c) for c in conns))
    for rows in found.values():
        rows.sort(key=lambda r: r.month)
    return ReportRecords(**found, **extra)
