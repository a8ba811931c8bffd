-- Signals to journeys written in the same transaction as the fact that causes them (a
-- provider's delivery event), then delivered to Temporal by a drainer (infra/outbox.py)
-- with retries: a callback that arrives while Temporal is down is kept, not lost (issue
-- 10.3). The payload holds identifiers and codes only, never personal data.
CREATE TABLE signal_outbox (
    outbox_id        bigserial PRIMARY KEY,
    workflow_id      text NOT NULL,
    signal_name      text NOT NULL,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,  -- a code (UNAVAILABLE, NOT_FOUND...), never a message
    delivered_at     timestamptz,
    -- signalled: the journey has it; not_running: no journey was running to take it
    -- (finished, or never started); invalid_payload: it no longer fits the signal's model.
    outcome          text CHECK (outcome IN ('signalled', 'not_running', 'invalid_payload')),
    CHECK ((delivered_at IS NULL) = (outcome IS NULL))
);
-- What the drainers poll: only the rows still to deliver.
CREATE INDEX signal_outbox_due_idx ON signal_outbox (next_attempt_at, outbox_id)
    WHERE delivered_at IS NULL;
