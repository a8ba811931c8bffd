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
