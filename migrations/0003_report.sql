-- The monthly review (`lapse report`): the milestone a record counts under, and the
-- indexes that keep the report's queries off full scans of a million notification rows.

-- A notification's milestone key carries suffixes the review does not tell apart:
-- follow_up_3 -> follow_up, first_reminder-resend2 / -fallback -> first_reminder,
-- payment_after_lapse-TX1 -> payment_after_lapse; a message to an emergency contact counts
-- as its own milestone, whatever key it went out under.
CREATE FUNCTION report_milestone(milestone text, recipient_role text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN recipient_role = 'emergency_contact' THEN 'emergency_contact'
                ELSE regexp_replace(split_part(milestone, '-', 1), '_[0-9]+$', '') END
$$;

-- Success per channel and milestone by month: an index-only scan of the months asked for.
CREATE INDEX notifications_report_idx ON notifications (created_at)
    INCLUDE (channel, milestone, recipient_role, status, error_code);

-- The formal-demand evidence: first reminders to the policyholder only.
CREATE INDEX notifications_first_reminder_idx ON notifications (created_at)
    INCLUDE (journey_id, status)
    WHERE report_milestone(milestone, recipient_role) = 'first_reminder'
      AND recipient_role IN ('policyholder', 'group_employer');

-- A journey's own records: its first reminder, the last reminder before a payment.
CREATE INDEX notifications_journey_idx ON notifications (journey_id, created_at)
    INCLUDE (milestone, recipient_role);

CREATE INDEX journeys_lapsed_idx ON journeys (lapsed_at) WHERE lapsed_at IS NOT NULL;
CREATE INDEX journeys_closed_idx ON journeys (closed_at, outcome) WHERE closed_at IS NOT NULL;
