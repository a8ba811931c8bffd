-- Channels and records (issue 5): the opaque reference providers see, the 'unknown'
-- status for a send whose outcome nobody knows, dial attempts, agent call work and the
-- print queue for paper letters.

-- What providers get instead of our notification id (which names the policy and the
-- customer): a hash, used in Twilio status-callback URLs and SendGrid custom arguments.
ALTER TABLE notifications ADD COLUMN provider_ref text;
CREATE UNIQUE INDEX notifications_provider_ref_idx ON notifications (provider_ref)
    WHERE provider_ref IS NOT NULL;

-- 'unknown': the process died (or the provider did not answer) after the request went out;
-- never re-sent automatically, settled by a provider callback or by an operator.
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'bounced',
                      'skipped', 'unknown'));
CREATE INDEX notifications_unknown_idx ON notifications (updated_at) WHERE status = 'unknown';

-- Every call placed, by a hash of the number dialled: at most N a day to one number.
CREATE TABLE dial_attempts (
    attempt_id       bigserial PRIMARY KEY,
    number_hash      text NOT NULL,
    notification_id  text NOT NULL,
    dialed_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dial_attempts_number_idx ON dial_attempts (number_hash, dialed_at);

-- Agent work: outbound calls carry their notification (and so its script); an unknown
-- send asks for a delivery review. sla_at is when the task must be done by.
ALTER TABLE agent_tasks DROP CONSTRAINT agent_tasks_kind_check;
ALTER TABLE agent_tasks ADD CONSTRAINT agent_tasks_kind_check
    CHECK (kind IN ('outbound_call', 'home_visit', 'inquiry_escalation', 'contact_repair',
                    'delivery_review'));
ALTER TABLE agent_tasks ADD COLUMN notification_id text REFERENCES notifications (notification_id);
ALTER TABLE agent_tasks ADD COLUMN sla_at timestamptz;
ALTER TABLE agent_tasks ADD COLUMN taken_at timestamptz;
ALTER TABLE agent_tasks ADD COLUMN note text;

-- Paper letters for the print vendor: the PDF and the postal address it goes to.
-- 'review': the PDF lacks a glyph (a rare character in a name) and needs a person.
CREATE TABLE print_queue (
    letter_id        text PRIMARY KEY,          -- the notification id
    policy_number    text NOT NULL REFERENCES policies (policy_number),
    recipient_id     text NOT NULL,
    postal_address   text NOT NULL,
    pdf              bytea NOT NULL,
    pages            integer NOT NULL,
    missing_glyphs   integer NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'review', 'handed_over', 'printed', 'returned')),
    queued_at        timestamptz NOT NULL DEFAULT now(),
    handed_over_at   timestamptz
);
CREATE INDEX print_queue_status_idx ON print_queue (status, queued_at);
