-- The monthly review under a second on a million records (issue 14), and a dead column out
-- (issue 11 point 6).

-- --- who said 'delivered', by the month of the record ----------------------------------------
-- The formal-demand figure asks of each delivered first reminder who recorded its latest
-- 'delivered' event: a provider's receipt or our own word (domain/evidence.py `proof_of`).
-- Asked of notification_events, that is one look-up per record (about 30,000 a month, six
-- months for the trends: most of the review's time). Here the answer is kept per record
-- beside the record's own month, so the review reads it as a range of the month and joins
-- it by hash. It is derived data, kept by the trigger below from the events as they are
-- appended (events are never updated or deleted: the evidence chain forbids it), not
-- chained, and can be rebuilt at any time with refresh_notification_receipts().
CREATE TABLE notification_receipts (
    notification_id  text PRIMARY KEY REFERENCES notifications (notification_id),
    created_at       timestamptz NOT NULL,  -- the record's, not the event's
    event_id         bigint NOT NULL,       -- its latest 'delivered' event
    from_provider    boolean NOT NULL       -- that event carries a provider's event id
);
CREATE INDEX notification_receipts_month_idx ON notification_receipts (created_at)
    INCLUDE (notification_id, from_provider);

-- The latest 'delivered' event wins (the highest event id, as the evidence pack reads it),
-- whatever order concurrent writers commit in: an older one never overwrites a newer one.
CREATE FUNCTION notification_receipt_keep() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notification_receipts AS r (notification_id, created_at, event_id, from_provider)
    SELECT n.notification_id, n.created_at, NEW.event_id, NEW.provider_event_id IS NOT NULL
    FROM notifications n WHERE n.notification_id = NEW.notification_id
    ON CONFLICT (notification_id) DO UPDATE
        SET event_id = EXCLUDED.event_id, from_provider = EXCLUDED.from_provider
        WHERE r.event_id < EXCLUDED.event_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER notification_receipt AFTER INSERT ON notification_events
    FOR EACH ROW WHEN (NEW.status = 'delivered') EXECUTE FUNCTION notification_receipt_keep();

-- Rebuilds the table from the events: after this migration, and after rows were written
-- with triggers off (a bulk load under session_replication_role = replica).
CREATE FUNCTION refresh_notification_receipts() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM notification_receipts;
    INSERT INTO notification_receipts (notification_id, created_at, event_id, from_provider)
    SELECT DISTINCT ON (e.notification_id)
           e.notification_id, n.created_at, e.event_id, e.provider_event_id IS NOT NULL
    FROM notification_events e
    JOIN notifications n ON n.notification_id = e.notification_id
    WHERE e.status = 'delivered'
    ORDER BY e.notification_id, e.event_id DESC;
$$;
SELECT refresh_notification_receipts();

-- The milestone the review counts under, known to the planner: without it the planner
-- takes a month's first reminders for a few hundred rows (there are tens of thousands)
-- and joins them by nested loops.
CREATE STATISTICS notifications_report_milestone_stats
    ON (report_milestone(milestone, recipient_role)), recipient_role FROM notifications;

-- --- journeys.last_milestone -----------------------------------------------------------------
-- Never written by any code: the last reminder before a payment is read from the journey's
-- notification records. Dropped only while it holds nothing: a value would be part of the
-- row's content in the evidence chain, and dropping it would show as a change there.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM journeys WHERE last_milestone IS NOT NULL) THEN
        RAISE EXCEPTION 'journeys.last_milestone holds values: set them to NULL first (a '
                        'change the evidence chain allows and records), then migrate again';
    END IF;
END
$$;
ALTER TABLE journeys DROP COLUMN last_milestone;  -- also drops journeys_closed_report_idx
CREATE INDEX journeys_closed_report_idx ON journeys (closed_at, outcome)
    INCLUDE (journey_id) WHERE closed_at IS NOT NULL;
