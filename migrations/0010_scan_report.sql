-- The daily scan and the monthly review at an insurer's scale (issue 14): the scan reads
-- only the policies at risk, a page at a time; every query of the review is a range scan
-- on the month.

-- --- the scan -------------------------------------------------------------------------------
-- Keyset pages over the at-risk set, in two ranges: rescissions by policy number, then
-- in-force policies past their due date by (due date, policy number). A policy paid in full
-- and not yet moved to its next due date is in the range but dropped by the page query.
CREATE INDEX policies_overdue_idx ON policies (due_date, policy_number)
    WHERE status = 'in_force' AND rescission IS NULL;
CREATE INDEX policies_rescission_idx ON policies (policy_number)
    WHERE status = 'in_force' AND rescission IS NOT NULL;

-- What the scan's rule (domain/scan.py) reads of a policy, one row per policy: the dues up
-- to its due date (what is outstanding) and the debit attempts from its due date on
-- (Shanghai), amounts as text so that they stay exact decimals; and whether a rescission
-- journey already served the notice (the policy stays in force in our records: the insurer's
-- system records the rescission itself).
CREATE VIEW scan_policies AS
SELECT p.policy_number, p.product_code, p.policyholder_id, p.effective_date, p.premium,
       p.currency, p.due_date, p.status, p.payment_method, p.rescission, p.payment_period,
       COALESCE(dues.owed, p.premium) AS outstanding,
       COALESCE(dues.list, '[]'::jsonb) AS dues,
       COALESCE(debits.list, '[]'::jsonb) AS debit_attempts,
       p.rescission IS NOT NULL AND EXISTS (
           SELECT 1 FROM journeys j
           WHERE j.policy_number = p.policy_number AND j.trigger = 'rescission'
             AND j.outcome = 'rescinded') AS rescission_served
FROM policies p
LEFT JOIN LATERAL (
    SELECT sum(d.amount - d.paid_amount) AS owed,
           jsonb_agg(jsonb_build_object('due_date', d.due_date, 'amount', d.amount::text,
                                        'paid_amount', d.paid_amount::text)) AS list
    FROM premium_dues d
    WHERE d.policy_number = p.policy_number AND d.due_date <= p.due_date
) dues ON true
LEFT JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_object('attempted_at', a.attempted_at,
                                        'amount', a.amount::text, 'succeeded', a.succeeded,
                                        'reason_code', a.reason_code,
                                        'reason_text', a.reason_text)) AS list
    FROM debit_attempts a
    WHERE a.policy_number = p.policy_number
      AND a.attempted_at >= p.due_date::timestamp AT TIME ZONE 'Asia/Shanghai'
) debits ON true;

-- --- the monthly review -------------------------------------------------------------------
-- Each of the review's queries reads a range of one month (or of its window) from an index
-- that holds what it counts, and looks up the few rows it joins by key: none reads a table
-- whole, so its cost follows the month, not the years of records behind it.

-- The formal-demand facts of a month's first reminders, without a visit to the table.
CREATE INDEX notifications_first_reminder_facts_idx ON notifications (created_at)
    INCLUDE (journey_id, channel, status, notification_id)
    WHERE report_milestone(milestone, recipient_role) = 'first_reminder'
      AND recipient_role IN ('policyholder', 'group_employer');
DROP INDEX notifications_first_reminder_idx;  -- the index above holds all it held

-- A record's latest delivery event and where it came from (a provider's receipt or ours).
CREATE INDEX notification_events_delivered_idx ON notification_events (notification_id, event_id DESC)
    INCLUDE (provider_event_id) WHERE status = 'delivered';

-- Journeys by start (the month's starts and rescissions, the window's funnel), by close
-- (payments in grace, reinstatements) and by lapse, each with what the review reads.
CREATE INDEX journeys_started_report_idx ON journeys (started_at)
    INCLUDE (trigger, journey_id, outcome, lapsed_at);
DROP INDEX journeys_started_idx;
CREATE INDEX journeys_closed_report_idx ON journeys (closed_at, outcome)
    INCLUDE (journey_id, last_milestone) WHERE closed_at IS NOT NULL;
DROP INDEX journeys_closed_idx;
CREATE INDEX journeys_lapsed_report_idx ON journeys (lapsed_at)
    INCLUDE (policy_number, trigger, outcome) WHERE lapsed_at IS NOT NULL;
DROP INDEX journeys_lapsed_idx;

-- Failed debits of a window with the policy they belong to (0001's index has neither).
CREATE INDEX debit_attempts_failed_report_idx ON debit_attempts (attempted_at)
    INCLUDE (policy_number, reason_code) WHERE NOT succeeded;
DROP INDEX debit_attempts_failed_idx;
