-- The send rate shared by the worker processes (issue 14): every `lapse-worker` keeps one
-- row per rate-limited channel fresh every few seconds and sends at the configured rate
-- divided by the workers seen lately; a worker that died stops counting once its row is
-- older than the expiry. Process ids, never personal data.
CREATE TABLE send_rate_shares (
    worker_id  text NOT NULL,
    channel    text NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker_id, channel)
);
CREATE INDEX send_rate_shares_channel_idx ON send_rate_shares (channel, seen_at);
