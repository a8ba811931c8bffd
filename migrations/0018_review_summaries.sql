-- The monthly review as range scans of its months (issue 14): the formal-demand facts kept
-- per journey and month by triggers, and an index that makes the lapses' look-ups of their
-- products cheaper.

-- --- the formal-demand facts of a journey's first reminders, by month ----------------------
-- The formal-demand figure groups a month's first reminders (to the policyholder or the group
-- employer) by journey: each journey's set of facts (channel, status, who recorded the latest
-- 'delivered', a letter's tracking number) is what domain/evidence.py `formal_demand` judges.
-- Worked out when the review runs, that is a join with the receipts and a sort of the month's
-- 35,000 records by journey, six times over for the trends: most of the review's time. Here
-- the set is kept per journey and Shanghai month as the records, receipts and tracking
-- numbers are written, so the review reads one row per journey from a range of the month.
-- It is derived data, not chained, and can be rebuilt at any time with
-- refresh_report_first_reminders().
CREATE TABLE report_first_reminders (
    journey_id   text NOT NULL,
    month_start  timestamptz NOT NULL,  -- the first instant of the records' Shanghai month
    -- The distinct facts, sorted, joined by ',': "channel status receipt tracked", where
    -- receipt is provider, own or - (not delivered, or no delivered event) and tracked is
    -- true or false.
    facts        text NOT NULL,
    PRIMARY KEY (journey_id, month_start)
);
CREATE INDEX report_first_reminders_month_idx ON report_first_reminders (month_start)
    INCLUDE (facts, journey_id);

-- A record is one of the formal demand's when this holds (as 0010's partial index says).
CREATE FUNCTION report_formal_demand(milestone text, recipient_role text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT report_milestone(milestone, recipient_role) = 'first_reminder'
           AND recipient_role IN ('policyholder', 'group_employer')
$$;

-- The fact of each formal-demand record, as the review groups them.
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
WHERE report_formal_demand(n.milestone, n.recipient_role);

-- The facts of one journey's first reminders in one month, from the records themselves.
CREATE FUNCTION report_first_reminder_facts(journey text, month timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(DISTINCT fact, ',' ORDER BY fact)
    FROM report_first_reminder_records
    WHERE journey_id = journey AND date_trunc('month', created_at, 'Asia/Shanghai') = month
$$;

-- Writers of one journey's records take turns on its row here (they already take turns on
-- the journey's evidence chain, which is locked first: triggers fire in name order, and
-- evidence_chain comes before report_*), and the facts are read once the row is ours, from
-- what is committed by then: two writers never keep a set that misses the other's change.
CREATE FUNCTION report_first_reminders_keep(journey text, created timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    month timestamptz := date_trunc('month', created, 'Asia/Shanghai');
    found text;
BEGIN
    INSERT INTO report_first_reminders (journey_id, month_start, facts)
    VALUES (journey, month, '') ON CONFLICT DO NOTHING;
    PERFORM 1 FROM report_first_reminders
    WHERE journey_id = journey AND month_start = month FOR UPDATE;
    found := report_first_reminder_facts(journey, month);
    IF found IS NULL THEN
        DELETE FROM report_first_reminders WHERE journey_id = journey AND month_start = month;
    ELSE
        UPDATE report_first_reminders SET facts = found
        WHERE journey_id = journey AND month_start = month AND facts IS DISTINCT FROM found;
    END IF;
END
$$;

CREATE FUNCTION report_first_reminders_on_record() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND report_formal_demand(OLD.milestone, OLD.recipient_role)
       AND (OLD.journey_id, OLD.created_at) IS DISTINCT FROM (NEW.journey_id, NEW.created_at) THEN
        PERFORM report_first_reminders_keep(OLD.journey_id, OLD.created_at);
    END IF;
    IF report_formal_demand(NEW.milestone, NEW.recipient_role) THEN
        PERFORM report_first_reminders_keep(NEW.journey_id, NEW.created_at);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_first_reminders AFTER INSERT ON notifications
    FOR EACH ROW WHEN (report_formal_demand(NEW.milestone, NEW.recipient_role))
    EXECUTE FUNCTION report_first_reminders_on_record();
-- A status change is the usual update; the other columns a fact or its month depends on
-- never change, but should one, the sets it moves between are kept too.
CREATE TRIGGER report_first_reminders_update AFTER UPDATE ON notifications
    FOR EACH ROW WHEN ((report_formal_demand(OLD.milestone, OLD.recipient_role)
                        OR report_formal_demand(NEW.milestone, NEW.recipient_role))
                       AND (OLD.status, OLD.channel, OLD.milestone, OLD.recipient_role,
                            OLD.journey_id, OLD.created_at)
                           IS DISTINCT FROM (NEW.status, NEW.channel, NEW.milestone,
                                             NEW.recipient_role, NEW.journey_id, NEW.created_at))
    EXECUTE FUNCTION report_first_reminders_on_record();

-- Who recorded the latest 'delivered' (notification_receipts, 0013) and a letter's tracking
-- number are facts of the record too.
CREATE FUNCTION report_first_reminders_on_proof() RETURNS trigger
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
    WHERE n.notification_id = record_id AND report_formal_demand(n.milestone, n.recipient_role)
      AND (n.status = 'delivered' OR n.channel = 'letter');
    RETURN NULL;
END
$$;
CREATE TRIGGER report_first_reminders AFTER INSERT OR UPDATE ON notification_receipts
    FOR EACH ROW EXECUTE FUNCTION report_first_reminders_on_proof();
CREATE TRIGGER report_first_reminders AFTER INSERT OR UPDATE OF tracking_number ON print_queue
    FOR EACH ROW WHEN (NEW.tracking_number IS NOT NULL)
    EXECUTE FUNCTION report_first_reminders_on_proof();

-- Rebuilds the table from the records: after this migration, and after rows were written with
-- triggers off (a bulk load under session_replication_role = replica; rebuild the receipts
-- first, refresh_notification_receipts(), since the facts read them).
CREATE FUNCTION refresh_report_first_reminders() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM report_first_reminders;
    INSERT INTO report_first_reminders (journey_id, month_start, facts)
    SELECT journey_id, date_trunc('month', created_at, 'Asia/Shanghai'),
           string_agg(DISTINCT fact, ',' ORDER BY fact)
    FROM report_first_reminder_records
    GROUP BY 1, 2;
$$;
SELECT refresh_report_first_reminders();

-- --- the month's lapses' products --------------------------------------------------------------
-- A lapse counts by its product (can it be reinstated?), looked up through its policy: with
-- the product in the index, a look-up reads the index alone, not the table too.
CREATE INDEX policies_product_idx ON policies (policy_number) INCLUDE (product_code);
