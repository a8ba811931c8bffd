-- The first schema: products, customers, policies, dues, debits, the business calendar,
-- journeys and the notification records of MISSION section 6.

CREATE TABLE products (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('long_term', 'short_term')),
    rules       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    customer_id        text PRIMARY KEY,
    name               text NOT NULL,
    gender             text CHECK (gender IN ('M', 'F')),
    id_number          text,
    birth_date         date NOT NULL,
    mobile             text,
    email              text,
    wechat_openid      text,
    postal_address     jsonb,
    emergency_contact  jsonb,
    preferred_channels text[] NOT NULL DEFAULT '{}',
    is_organisation    boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE policies (
    policy_number    text PRIMARY KEY,
    product_code     text NOT NULL REFERENCES products (code),
    policyholder_id  text NOT NULL REFERENCES customers (customer_id),
    effective_date   date NOT NULL,
    premium          numeric(14, 2) NOT NULL CHECK (premium > 0),
    currency         text NOT NULL DEFAULT 'CNY',
    due_date         date NOT NULL,
    status           text NOT NULL
                     CHECK (status IN ('in_force', 'lapsed', 'rescinded', 'terminated')),
    status_changed_at timestamptz,
    payment_method   jsonb NOT NULL,
    rescission       jsonb,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX policies_due_date_idx ON policies (due_date) WHERE status = 'in_force';

-- The insured person of an individual policy, or every member of a group policy.
CREATE TABLE policy_insured (
    policy_number  text NOT NULL REFERENCES policies (policy_number) ON DELETE CASCADE,
    customer_id    text NOT NULL REFERENCES customers (customer_id),
    role           text NOT NULL CHECK (role IN ('insured', 'member')),
    PRIMARY KEY (policy_number, customer_id)
);

CREATE TABLE premium_dues (
    policy_number  text NOT NULL REFERENCES policies (policy_number) ON DELETE CASCADE,
    due_date       date NOT NULL,
    amount         numeric(14, 2) NOT NULL CHECK (amount > 0),
    paid_amount    numeric(14, 2) NOT NULL DEFAULT 0 CHECK (paid_amount >= 0),
    PRIMARY KEY (policy_number, due_date),
    CHECK (paid_amount <= amount)
);

CREATE TABLE debit_attempts (
    policy_number  text NOT NULL REFERENCES policies (policy_number) ON DELETE CASCADE,
    attempted_at   timestamptz NOT NULL,
    amount         numeric(14, 2) NOT NULL CHECK (amount > 0),
    succeeded      boolean NOT NULL,
    reason_code    text,
    reason_text    text,
    PRIMARY KEY (policy_number, attempted_at)
);
CREATE INDEX debit_attempts_failed_idx ON debit_attempts (attempted_at) WHERE NOT succeeded;

-- Payments as the payment system reports them, whether or not a journey was running.
CREATE TABLE payments (
    transaction_id text PRIMARY KEY,
    policy_number  text NOT NULL REFERENCES policies (policy_number),
    amount         numeric(14, 2) NOT NULL CHECK (amount > 0),
    currency       text NOT NULL,
    paid_at        timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_policy_idx ON payments (policy_number, paid_at);

-- The official calendar: holidays and make-up working days, loaded a year at a time.
CREATE TABLE calendar_years (
    year       integer PRIMARY KEY,
    source     text NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE calendar_days (
    day   date PRIMARY KEY,
    year  integer NOT NULL REFERENCES calendar_years (year) ON DELETE CASCADE,
    kind  text NOT NULL CHECK (kind IN ('holiday', 'workday')),
    name  text NOT NULL
);

-- One row per journey (workflow run), kept for the monthly review.
CREATE TABLE journeys (
    journey_id     text PRIMARY KEY,           -- workflow id + run id
    policy_number  text NOT NULL REFERENCES policies (policy_number),
    trigger        text NOT NULL,
    started_at     timestamptz NOT NULL,
    stage          text NOT NULL,
    lapsed_at      timestamptz,
    closed_at      timestamptz,
    outcome        text,
    last_milestone text
);
CREATE INDEX journeys_policy_idx ON journeys (policy_number);
CREATE INDEX journeys_started_idx ON journeys (started_at);

-- Every notification attempt (MISSION section 6). The id is deterministic (journey,
-- milestone, channel, recipient) so that a retried activity finds its own record.
CREATE TABLE notifications (
    notification_id     text PRIMARY KEY,
    journey_id          text NOT NULL,
    policy_number       text NOT NULL REFERENCES policies (policy_number),
    milestone           text NOT NULL,
    channel             text NOT NULL,
    recipient_id        text NOT NULL,
    recipient_role      text NOT NULL,
    template_id         text,
    template_version    integer,
    subject             text,
    body                text,
    provider            text,
    provider_message_id text,
    status              text NOT NULL
                        CHECK (status IN ('queued', 'sending', 'sent', 'delivered',
                                          'failed', 'bounced', 'skipped')),
    error_code          text,
    attempts            integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_policy_idx ON notifications (policy_number, created_at);
CREATE INDEX notifications_created_idx ON notifications (created_at, channel, milestone);
CREATE UNIQUE INDEX notifications_provider_idx
    ON notifications (provider, provider_message_id) WHERE provider_message_id IS NOT NULL;

CREATE TABLE notification_events (
    event_id           bigserial PRIMARY KEY,
    notification_id    text NOT NULL REFERENCES notifications (notification_id),
    status             text NOT NULL,
    error_code         text,
    detail             text,
    provider_event_id  text UNIQUE,
    occurred_at        timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_events_notification_idx ON notification_events (notification_id);

-- Customer inquiries and reinstatement applications with their response clock.
CREATE TABLE inquiries (
    inquiry_id     text PRIMARY KEY,
    policy_number  text NOT NULL REFERENCES policies (policy_number),
    kind           text NOT NULL
                   CHECK (kind IN ('question', 'hardship', 'complaint', 'reinstatement')),
    received_at    timestamptz NOT NULL,
    respond_by     timestamptz NOT NULL,
    handled_at     timestamptz,
    escalated_at   timestamptz,
    note           text
);
CREATE INDEX inquiries_received_idx ON inquiries (received_at);

-- Work for people: agent outbound calls, escalations, contact repair, home visits.
CREATE TABLE agent_tasks (
    task_id        text PRIMARY KEY,
    policy_number  text NOT NULL REFERENCES policies (policy_number),
    journey_id     text NOT NULL,
    kind           text NOT NULL
                   CHECK (kind IN ('outbound_call', 'home_visit', 'inquiry_escalation',
                                   'contact_repair')),
    priority       integer NOT NULL DEFAULT 3 CHECK (priority BETWEEN 1 AND 5),
    due_at         timestamptz NOT NULL,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'taken', 'done')),
    taken_by       text,
    outcome        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz
);
CREATE INDEX agent_tasks_open_idx ON agent_tasks (due_at) WHERE status <> 'done';

-- The public "policies whose holders we cannot reach" notice (MISSION section 3).
CREATE TABLE public_notices (
    policy_number  text PRIMARY KEY REFERENCES policies (policy_number),
    listed_at      timestamptz NOT NULL DEFAULT now(),
    removed_at     timestamptz
);
