-- A record's message kind in a column of its own (issue 11 point 5): the kind the monthly
-- review counts it under, worked out once in Python from its typed milestone key when the
-- record is written (domain/report.py `record_kind`), not read back out of the key's text
-- by a regular expression on every query. After this migration no SQL splits a key.
--
-- One transaction, like every migration (infra/migrate.py): the backfill rewrites every
-- record and holds the table's lock until the end, so writers of records wait for it
-- (about a minute and a half on the bench's 1,000,000 records, most of it the rewrite).

-- --- the column ------------------------------------------------------------------------------
-- Added empty (no rewrite), filled once below, then required.
ALTER TABLE notifications ADD COLUMN kind text;

-- Derived from the key and the recipient's role, which the evidence chain already covers:
-- not part of a record's chained content, so that the records chained before this column
-- stay as they were chained (a new NOT NULL value would show as a change of every one).
CREATE OR REPLACE FUNCTION evidence_content(tbl text, r jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(CASE tbl WHEN 'notifications' THEN r - 'updated_at' - 'kind'
                                      ELSE r END)
$$;

-- The review's indexes and statistics on the key go first: they are built again on the
-- column below, and the backfill need not keep them up to date row by row.
DROP INDEX notifications_report_idx;
DROP INDEX notifications_journey_idx;
DROP INDEX notifications_first_reminder_facts_idx;
DROP STATISTICS notifications_report_milestone_stats;

-- The records written before: by the old reading of their keys, once a distinct key and
-- role (a few hundred), not once a record. The evidence chain's trigger sees the same
-- content and appends nothing; the review's summaries (0018) do not change either.
UPDATE notifications n SET kind = k.kind
FROM (SELECT DISTINCT milestone, recipient_role,
             report_milestone(milestone, recipient_role) AS kind
      FROM notifications) k
WHERE n.milestone = k.milestone AND n.recipient_role = k.recipient_role;

ALTER TABLE notifications ALTER COLUMN kind SET NOT NULL,
    ADD CONSTRAINT notifications_kind_check CHECK (kind IN (
        'first_reminder', 'second_reminder', 'lapse_notice', 'follow_up', 'reenrolment_offer',
        'rescission_notice', 'payment_confirmation', 'payment_after_lapse',
        'reinstatement_approved', 'reinstatement_refused', 'emergency_contact',
        'public_notice', 'bind_card'));

-- --- the indexes and statistics of the review, on the column ------------------------------
-- Success per channel and kind by month: an index-only scan of the months asked for.
CREATE INDEX notifications_report_kind_idx ON notifications (created_at)
    INCLUDE (channel, kind, status, error_code);

-- A journey's own records: the last reminder before a payment reads its kind.
CREATE INDEX notifications_journey_kind_idx ON notifications (journey_id, created_at)
    INCLUDE (kind, recipient_role, milestone);

-- The formal-demand facts of a month's first reminders (0010's, on the column).
CREATE INDEX notifications_first_reminder_kind_idx ON notifications (created_at)
    INCLUDE (journey_id, channel, status, notification_id)
    WHERE kind = 'first_reminder' AND recipient_role IN ('policyholder', 'group_employer');

-- The kind and the role together, known to the planner (0013's, on the column).
CREATE STATISTICS notifications_kind_stats ON kind, recipient_role FROM notifications;

-- --- the formal-demand summaries (0018), on the column ---------------------------------------
-- The view, the triggers' conditions and the function they share read the kind; the
-- trigger functions are replaced in place (their bodies name the function, not the key).
DROP TRIGGER report_first_reminders ON notifications;
DROP TRIGGER report_first_reminders_update ON notifications;
DROP VIEW report_first_reminder_records;
DROP FUNCTION report_formal_demand(text, text);

-- A record is one of the formal demand's when this holds (as the partial index above says).
CREATE FUNCTION report_formal_demand(kind text, recipient_role text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT kind = 'first_reminder' AND recipient_role IN ('policyholder', 'group_employer')
$$;

CREATE VIEW report_first_reminder_records AS
SELECT n.journey_id, n.created_at, concat_ws(' ', n.channel, n.status,
           CASE WHEN n.status <> 'delivered' OR r.from_provider IS NULL THEN '-'
                WHEN r.from_provider THEN 'provider' ELSE 'own' END,
           CASE WHEN n.channel = 'letter' THEN EXISTS (
               SELECT 1 FROM print_queue q
               WHERE q.letter_id = n.notification_id AND q.tracking_number IS NOT NULL)
           ELSE false END::text) AS fact
FROM notifications n
LEFT JOIN notification_receipts r ON r.notification_id = n.notification_id
WHERE report_formal_demand(n.kind, n.recipient_role);

CREATE OR REPLACE FUNCTION report_first_reminders_on_record() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND report_formal_demand(OLD.kind, OLD.recipient_role)
       AND (OLD.journey_id, OLD.created_at) IS DISTINCT FROM (NEW.journey_id, NEW.created_at) THEN
        PERFORM report_first_reminders_keep(OLD.journey_id, OLD.created_at);
    END IF;
    IF report_formal_demand(NEW.kind, NEW.recipient_role) THEN
        PERFORM report_first_reminders_keep(NEW.journey_id, NEW.created_at);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_first_reminders AFTER INSERT ON notifications
    FOR EACH ROW WHEN (report_formal_demand(NEW.kind, NEW.recipient_role))
    EXECUTE FUNCTION report_first_reminders_on_record();
CREATE TRIGGER report_first_reminders_update AFTER UPDATE ON notifications
    FOR EACH ROW WHEN ((report_formal_demand(OLD.kind, OLD.recipient_role)
                        OR report_formal_demand(NEW.kind, NEW.recipient_role))
                       AND (OLD.status, OLD.channel, OLD.kind, OLD.recipient_role,
                            OLD.journey_id, OLD.created_at)
                           IS DISTINCT FROM (NEW.status, NEW.channel, NEW.kind,
                                             NEW.recipient_role, NEW.journey_id, NEW.created_at))
    EXECUTE FUNCTION report_first_reminders_on_record();

CREATE OR REPLACE FUNCTION report_first_reminders_on_proof() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    record_id text;
BEGIN
    IF TG_TABLE_NAME = 'print_queue' THEN
        record_id := NEW.letter_id;
    ELSE
        record_id := NEW.notification_id;
    END IF;
    -- A receipt counts for a delivered record only; a tracking number for a letter.
    PERFORM report_first_reminders_keep(n.journey_id, n.created_at)
    FROM notifications n
    WHERE n.notification_id = record_id AND report_formal_demand(n.kind, n.recipient_role)
      AND (n.status = 'delivered' OR n.channel = 'letter');
    RETURN NULL;
END
$$;

-- --- the old reading, gone ---------------------------------------------------------------------
DROP FUNCTION report_milestone(text, text);

ANALYZE notifications;
