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

-- The bind-a-new-card campaign (16.4): one row per customer and campaign month, so that
-- nobody is asked twice in a month; the card's last four digits when the message went
-- out tell later whether the customer re-bound. 'quiet': skipped this time (a running
-- journey's quiet period), a later run in the month may still ask.
CREATE TABLE bind_card_requests (
    customer_id     text NOT NULL REFERENCES customers (customer_id),
    campaign_month  date NOT NULL CHECK (extract(day FROM campaign_month) = 1),
    policy_number   text NOT NULL REFERENCES policies (policy_number),
    card_last4      text,
    status          text NOT NULL CHECK (status IN ('quiet', 'sending', 'sent', 'failed')),
    decided_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, campaign_month)
);
CREATE INDEX bind_card_requests_decided_idx ON bind_card_requests (decided_at)
    WHERE status = 'sent';
