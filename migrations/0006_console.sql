-- The agents' web console (`lapse console`): accounts, sessions, the audit of what agents
-- did, and the log of who looked at which customer's data (PIPL accountability).

-- Accounts: `lapse console add-agent NAME`. Only an argon2 hash of the password is kept.
CREATE TABLE console_agents (
    name           text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{1,31}$'),
    display_name   text NOT NULL,
    password_hash  text NOT NULL,
    failed_logins  integer NOT NULL DEFAULT 0,
    locked_until   timestamptz,  -- too many wrong passwords: no sign-in until then
    created_at     timestamptz NOT NULL DEFAULT now(),
    password_set_at timestamptz NOT NULL DEFAULT now()
);

-- Signed-in sessions. The cookie holds a random token; only its SHA-256 is stored, so a
-- copy of this table opens no session. Each session has its own CSRF token for forms.
CREATE TABLE console_sessions (
    token_hash    text PRIMARY KEY,
    agent         text NOT NULL REFERENCES console_agents (name) ON DELETE CASCADE,
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL  -- the absolute end; idle sessions end sooner
);
CREATE INDEX console_sessions_agent_idx ON console_sessions (agent);

-- What agents did: sign-ins, the signals they sent to journeys, the tasks they took and
-- completed. `reference` names the inquiry, application or task; notes are not copied here
-- (they are with the journey or the task).
CREATE TABLE console_audit (
    audit_id       bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    agent          text NOT NULL,  -- no foreign key: the audit outlives a removed account
    policy_number  text,
    action         text NOT NULL,
    reference      text,
    detail         text,  -- the choice made: an inquiry's kind, approved/refused, an outcome
    result         text NOT NULL
);
CREATE INDEX console_audit_policy_idx ON console_audit (policy_number, at);
CREATE INDEX console_audit_agent_idx ON console_audit (agent, at);

-- Every page that showed a customer's data, by agent, policy and time.
CREATE TABLE console_page_views (
    view_id        bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    agent          text NOT NULL,
    policy_number  text NOT NULL,
    page           text NOT NULL
);
CREATE INDEX console_page_views_policy_idx ON console_page_views (policy_number, at);
CREATE INDEX console_page_views_agent_idx ON console_page_views (agent, at);

-- Finding a policy by the last four digits of the phone number a caller gives.
CREATE INDEX customers_mobile_tail_idx ON customers (right(mobile, 4));
