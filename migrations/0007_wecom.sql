-- WeCom (企业微信) for group members and employers, the keys pressed during calls and
-- the bind-a-new-card campaign (issue 16).

-- Each customer's userid in the insurer's WeCom (16.2).
ALTER TABLE customers ADD COLUMN wecom_userid text;

-- The keys customers press during an automated call (issue 16.3): connected to an agent,
-- the amount said again, or a key the menu does not offer. One row per key pressed.
CREATE TABLE call_choices (
    choice_id        bigserial PRIMARY KEY,
    notification_id  text NOT NULL REFERENCES notifications (notification_id),
    call_sid         text NOT NULL,
    digits           text NOT NULL,
    choice           text NOT NULL CHECK (choice IN ('agent', 'repeat_amount', 'invalid')),
    pressed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_choices_notification_idx ON call_choices (notification_id, pressed_at);
