"""The monthly review's queries: named, parameterised counts over the records.

Each monthly query counts one calendar month: $1 and $2 are its bounds (timestamptz, the
end excluded), so it needs no time-zone arithmetic per row and its plan stays a range
scan; the window's months are asked one by one. The definitions they implement are in
domain/report.py; report_milestone() and the indexes are in migrations/0003_report.sql.
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg

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

NOTIFICATIONS = """
SELECT channel, report_milestone(milestone, recipient_role) AS milestone, status, error_code,
       count(*) AS count
FROM notifications
WHERE created_at >= $1 AND created_at < $2
GROUP BY 1, 2, 3, 4
"""

# Per journey, the facts of its first reminders that the formal-demand rule reads
# (domain/evidence.py), grouped: a month's journeys fall into a few dozen kinds.
FIRST_REMINDERS = """
SELECT records, count(*) AS journeys
FROM (
    SELECT journey_id, jsonb_agg(DISTINCT fact ORDER BY fact) AS records
    FROM (
        SELECT n.journey_id,
               jsonb_build_object('channel', n.channel, 'status', n.status,
                                  'receipt', receipt.source,
                                  'tracked', q.tracking_number IS NOT NULL) AS fact
        FROM notifications n
        LEFT JOIN LATERAL (
            SELECT CASE WHEN e.provider_event_id IS NULL THEN 'own' ELSE 'provider' END
                   AS source
            FROM notification_events e
            WHERE e.notification_id = n.notification_id AND e.status = 'delivered'
            ORDER BY e.event_id DESC
            LIMIT 1
        ) receipt ON n.status = 'delivered'
        LEFT JOIN print_queue q ON q.letter_id = n.notification_id
        WHERE n.created_at >= $1 AND n.created_at < $2
          AND report_milestone(n.milestone, n.recipient_role) = 'first_reminder'
          AND n.recipient_role IN ('policyholder', 'group_employer')
    ) facts
    GROUP BY journey_id
) per_journey
GROUP BY records
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
# the refusal message of this application (its key names the application) was sent.
APPLICATIONS = """
SELECT count(*) AS received,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM journeys j
           WHERE j.policy_number = i.policy_number AND j.outcome = 'reinstated'
             AND j.closed_at >= i.received_at)) AS approved,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM notifications n
           WHERE n.policy_number = i.policy_number AND n.created_at >= i.received_at
             AND n.milestone = 'reinstatement_refused-' || i.inquiry_id)) AS refused
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
# last milestone reached before the payment (journeys.last_milestone, when set, wins).
PAID_IN_GRACE = """
SELECT COALESCE(report_milestone(j.last_milestone, NULL), last.milestone) AS milestone,
       count(*) AS count
FROM journeys j
LEFT JOIN LATERAL (
    SELECT report_milestone(n.milestone, n.recipient_role) AS milestone
    FROM notifications n
    WHERE n.journey_id = j.journey_id
      AND report_milestone(n.milestone, n.recipient_role)
          IN ('first_reminder', 'second_reminder')
    ORDER BY n.created_at DESC
    LIMIT 1
) last ON true
WHERE j.closed_at >= $1 AND j.closed_at < $2 AND j.outcome = 'paid'
GROUP BY 1
"""

LAPSES = """
SELECT j.trigger, debit.reason_code AS debit_reason,
       COALESCE((pr.rules ->> 'reinstatable')::boolean, true) AND pr.kind = 'long_term'
           AS reinstatable,
       j.outcome IS NOT DISTINCT FROM 'reinstated' AS reinstated,
       count(*) AS count
FROM journeys j
JOIN policies p ON p.policy_number = j.policy_number
JOIN products pr ON pr.code = p.product_code
LEFT JOIN LATERAL (
    SELECT a.reason_code
    FROM debit_attempts a
    WHERE a.policy_number = j.policy_number AND NOT a.succeeded
      AND a.attempted_at <= j.lapsed_at
    ORDER BY a.attempted_at DESC
    LIMIT 1
) debit ON j.trigger = 'debit_failed'
WHERE j.lapsed_at >= $1 AND j.lapsed_at < $2
GROUP BY 1, 2, 3, 4
UNION ALL
SELECT trigger, NULL, false, false, count(*)
FROM journeys
WHERE trigger = 'rescission' AND started_at >= $1 AND started_at < $2
GROUP BY trigger
"""

REINSTATED = """
SELECT count(*) AS count
FROM journeys
WHERE closed_at >= $1 AND closed_at < $2 AND outcome = 'reinstated'
"""

FUNNEL = """
SELECT count(*) AS first_reminded,
       count(*) FILTER (WHERE j.outcome = 'paid') AS paid_in_grace,
       count(*) FILTER (WHERE j.lapsed_at IS NOT NULL) AS lapsed,
       count(*) FILTER (WHERE j.outcome = 'reinstated') AS reinstated,
       count(*) FILTER (WHERE j.lapsed_at IS NULL AND j.outcome IS NOT NULL
                          AND j.outcome <> 'paid') AS ended_otherwise
FROM journeys j
WHERE j.started_at >= $1 AND j.started_at < $2
  AND EXISTS (
      SELECT 1 FROM notifications n
      WHERE n.journey_id = j.journey_id
        AND report_milestone(n.milestone, n.recipient_role) = 'first_reminder'
        AND n.recipient_role IN ('policyholder', 'group_employer'))
"""

# $1, $2: the whole window; $3: the least number of failures that puts a customer on it.
REPEATED_DEBIT_FAILURES = """
SELECT c.customer_id, c.name, c.gender, c.is_organisation,
       p.payment_method ->> 'card_last4' AS card_last4,
       count(*) AS failures, max(a.attempted_at) AS last_failed_at,
       (array_agg(a.reason_code ORDER BY a.attempted_at DESC))[1] AS last_reason
FROM debit_attempts a
JOIN policies p ON p.policy_number = a.policy_number
JOIN customers c ON c.customer_id = p.policyholder_id
WHERE NOT a.succeeded AND a.attempted_at >= $1 AND a.attempted_at < $2
GROUP BY c.customer_id, c.name, c.gender, c.is_organisation, card_last4
HAVING count(*) >= $3
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
    "funnel": (FUNNEL, FunnelCount),
    "bind_card": (BIND_CARD, BindCardRequestRow),
}


async def fetch_monthly(conn: asyncpg.Connection, name: str, month: date) -> list:
    """One monthly query's rows for `month`, as the models of domain/report.py."""
    sql, model = MONTHLY[name]
    rows = await conn.fetch(sql, *window(month, 1))
    return [model(month=month, **dict(r)) for r in rows]


async def fetch_debit_failures(conn: asyncpg.Connection, starts_at: datetime, ends_at: datetime,
                               at_least: int) -> list[DebitFailureCount]:
    rows = await conn.fetch(REPEATED_DEBIT_FAILURES, starts_at, ends_at, at_least)
    return [DebitFailureCount(**dict(r)) for r in rows]


async def fetch_records(pool: asyncpg.Pool, month: date,
                        rules: ReportRules = DEFAULT_RULES) -> ReportRecords:
    """Everything the review of `month` counts, over the window that ends with it.

    One snapshot: every query reads the same committed state.
    """
    months = months_ending(month, rules.window_months)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):
        found = {name: [row for m in months for row in await fetch_monthly(conn, name, m)]
                 for name in MONTHLY}
        failures = await fetch_debit_failures(conn, *window(month, rules.window_months),
                                              rules.repeat_failures)
    return ReportRecords(**found, debit_failures=failures)
