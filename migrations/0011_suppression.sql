-- The suppression list (issue 15.1): an address a provider refused for good (an invalid
-- number, an unsubscribed one, a hard bounce, a WeChat user who unfollowed) is not used
-- again on that channel until the customer's contact details are updated. Addresses are
-- kept as hashes (domain/suppression.py address_key), never in clear.
CREATE TABLE suppressions (
    channel          text NOT NULL,
    address_hash     text NOT NULL,
    reason           text NOT NULL,                              -- the provider's code
    notification_id  text REFERENCES notifications (notification_id),  -- what showed it
    suppressed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, address_hash)
);
CREATE INDEX suppressions_address_idx ON suppressions (address_hash);

-- The key of the address each message went to, so that a provider's later report (a
-- bounce, an unsubscribed number) closes that address, not whatever the customer's
-- record says by the time it arrives.
CREATE TABLE notification_addresses (
    notification_id  text PRIMARY KEY REFERENCES notifications (notification_id),
    channel          text NOT NULL,
    address_hash     text NOT NULL
);
