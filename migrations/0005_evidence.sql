-- Evidence for a dispute (issue 18): a hash chain per journey over every record of it,
-- appended by triggers so that no write path of the application can forget it; the
-- anchors of chain heads handed to Temporal; what was sent besides the text; the log of
-- who asked for an evidence pack and why.
--
-- What is chained (`lapse verify` and README "Verify and evidence packs" explain the rules):
--   notifications, notification_events, notification_sends, print_queue: the journey of
--     their notification;
--   journeys: itself (its start, then every stage change);
--   payments, debit_attempts, inquiries (no journey id of their own): the policy's running
--     journey (the latest started one not closed), else the policy's own chain.
-- A row's later versions go to the chain of its first. Values are never copied into the
-- chain, only hashes: the bodies and addresses are personal data.

-- The address a message went to (masked, and a hash to check a claimed address against)
-- and the file it carried (the formal letter of an e-mail), as the provider got them.
CREATE TABLE notification_sends (
    notification_id   text PRIMARY KEY REFERENCES notifications (notification_id),
    address_masked    text NOT NULL,
    address_sha256    text NOT NULL,           -- of notification id + address, hex
    attachment_name   text,
    attachment        bytea,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);

-- A registered letter's tracking number, given back by the print vendor when posted:
-- the proof that a paper formal demand went out.
ALTER TABLE print_queue ADD COLUMN tracking_number text;

CREATE TABLE evidence_chain (
    chain_kind     text NOT NULL CHECK (chain_kind IN ('journey', 'policy')),
    chain_id       text NOT NULL,              -- the journey id, or the policy number
    seq            bigint NOT NULL CHECK (seq > 0),
    policy_number  text NOT NULL,
    table_name     text NOT NULL,
    row_key        text NOT NULL,
    version        integer NOT NULL CHECK (version > 0),
    changed        text[],                     -- the fields this version changed; NULL: first
    facts          jsonb NOT NULL,             -- clear, non-personal values the rules read
    field_hashes   jsonb NOT NULL,             -- field -> sha256 hex of that field's value
    content_hash   bytea NOT NULL,             -- sha256 of the whole canonical row
    prev_hash      bytea,                      -- entry_hash of seq - 1; NULL for seq 1
    entry_hash     bytea NOT NULL,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (chain_kind, chain_id, seq)
);
CREATE UNIQUE INDEX evidence_chain_row_idx ON evidence_chain (table_name, row_key, version);

-- Each chain's latest seq and entry hash: the row every writer of the chain updates, so
-- writers take turns on its row lock (no lock-table entry, however many chains one
-- transaction touches, as a policy file's load does). The chain itself is the truth.
CREATE TABLE evidence_heads (
    chain_kind  text NOT NULL,
    chain_id    text NOT NULL,
    seq         bigint NOT NULL,
    entry_hash  bytea,
    PRIMARY KEY (chain_kind, chain_id)
);
CREATE INDEX evidence_chain_policy_idx ON evidence_chain (policy_number);

-- Chain heads handed to Temporal as an activity result, and where: the verifier reads
-- those runs' histories and compares.
CREATE TABLE evidence_anchors (
    journey_id   text NOT NULL,
    policy_number text NOT NULL,
    seq          bigint NOT NULL,
    entry_hash   bytea NOT NULL,
    workflow_id  text NOT NULL,
    run_id       text NOT NULL,
    anchored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journey_id, seq, run_id)
);

-- Who asked for an evidence pack, and why (the pack holds personal data).
CREATE TABLE evidence_requests (
    request_id     text PRIMARY KEY,
    policy_number  text NOT NULL REFERENCES policies (policy_number),
    journey_id     text,
    requested_by   text NOT NULL,
    reason         text NOT NULL,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    breaks         integer,                    -- what verification found; NULL: not finished
    pack_sha256    text                        -- of the PDF written
);
CREATE INDEX evidence_requests_policy_idx ON evidence_requests (policy_number, requested_at);

-- --- the canonical content of a row -------------------------------------------------------
-- A row as jsonb (`to_jsonb(row)`, times in UTC: callers set TimeZone to UTC), without the
-- columns that are bookkeeping only, and without NULLs: a nullable column added later
-- leaves every chained row as it was.

CREATE FUNCTION evidence_content(tbl text, r jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(CASE tbl WHEN 'notifications' THEN r - 'updated_at' ELSE r END)
$$;

-- The key a chain entry names its row by.
CREATE FUNCTION evidence_key(tbl text, r jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE tbl
        WHEN 'notifications' THEN r ->> 'notification_id'
        WHEN 'notification_sends' THEN r ->> 'notification_id'
        WHEN 'print_queue' THEN r ->> 'letter_id'
        WHEN 'notification_events' THEN r ->> 'event_id'
        WHEN 'journeys' THEN r ->> 'journey_id'
        WHEN 'payments' THEN r ->> 'transaction_id'
        WHEN 'inquiries' THEN r ->> 'inquiry_id'
        WHEN 'debit_attempts' THEN (r ->> 'policy_number') || ' ' || (r ->> 'attempted_at')
    END
$$;

CREATE FUNCTION evidence_field_hashes(tbl text, k text, content jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(jsonb_object_agg(f.key, encode(sha256(convert_to(
               tbl || E'\n' || k || E'\n' || f.key || E'\n' || f.value::text, 'UTF8')), 'hex')),
           '{}'::jsonb)
    FROM jsonb_each(content) f
$$;

CREATE FUNCTION evidence_content_hash(tbl text, k text, content jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(convert_to(tbl || E'\n' || k || E'\n' || content::text, 'UTF8'))
$$;

-- Everything an entry says, in one hash: where it is, what it follows, what it covers
-- (the per-field hashes only name what changed; the content hash covers them). Fields in
-- PostgreSQL's binary form, text ended by a NUL byte, which text cannot contain.
CREATE FUNCTION evidence_entry_hash(
    chain_kind text, chain_id text, seq bigint, prev_hash bytea, policy_number text,
    table_name text, row_key text, version integer, changed text[], facts jsonb,
    content_hash bytea, recorded_at timestamptz) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(
        textsend(chain_kind) || '\x00'::bytea || textsend(chain_id) || '\x00'::bytea
        || int8send(seq) || COALESCE(prev_hash, ''::bytea)
        || textsend(policy_number) || '\x00'::bytea || textsend(table_name) || '\x00'::bytea
        || textsend(row_key) || '\x00'::bytea || int4send(version)
        || textsend(COALESCE(array_to_string(changed, ','), '')) || '\x00'::bytea
        || textsend(facts::text) || '\x00'::bytea || content_hash
        || timestamptz_send(recorded_at))
$$;

-- --- appending --------------------------------------------------------------------------

CREATE FUNCTION evidence_append() RETURNS trigger
LANGUAGE plpgsql SET timezone TO 'UTC' AS $$
DECLARE
    tbl text := TG_TABLE_NAME;
    r jsonb := to_jsonb(NEW);
    content jsonb;
    k text;
    e evidence_chain;
    last evidence_chain;
BEGIN
    content := evidence_content(tbl, r);
    IF TG_OP = 'UPDATE' AND evidence_content(tbl, to_jsonb(OLD)) = content THEN
        RETURN NULL;  -- only bookkeeping changed
    END IF;
    k := evidence_key(tbl, r);
    e.table_name := tbl;
    e.row_key := k;
    SELECT * INTO last FROM evidence_chain
    WHERE table_name = tbl AND row_key = k ORDER BY version DESC LIMIT 1;
    IF FOUND THEN  -- a later version goes where the first went
        e.chain_kind := last.chain_kind;
        e.chain_id := last.chain_id;
        e.policy_number := last.policy_number;
    ELSIF tbl IN ('journeys', 'notifications') THEN
        e.chain_kind := 'journey';
        e.chain_id := r ->> 'journey_id';
        e.policy_number := r ->> 'policy_number';
    ELSIF tbl IN ('notification_events', 'notification_sends', 'print_queue') THEN
        SELECT 'journey', n.journey_id, n.policy_number
        INTO e.chain_kind, e.chain_id, e.policy_number
        FROM notifications n WHERE n.notification_id = COALESCE(r ->> 'notification_id', k);
        IF NOT FOUND THEN  -- a letter queued outside a journey: the policy's own chain
            e.chain_kind := 'policy';
            e.chain_id := r ->> 'policy_number';
            e.policy_number := r ->> 'policy_number';
        END IF;
    ELSE  -- payments, debit_attempts, inquiries: the policy's running journey, if any
        e.policy_number := r ->> 'policy_number';
        SELECT 'journey', j.journey_id INTO e.chain_kind, e.chain_id
        FROM journeys j WHERE j.policy_number = e.policy_number AND j.closed_at IS NULL
        ORDER BY j.started_at DESC LIMIT 1;
        IF NOT FOUND THEN
            e.chain_kind := 'policy';
            e.chain_id := e.policy_number;
        END IF;
    END IF;

    e.content_hash := evidence_content_hash(tbl, k, content);
    IF last.content_hash = e.content_hash THEN
        RETURN NULL;  -- written again as it was (a re-load of the same file)
    END IF;
    -- One writer per chain at a time: the sequence and the links stay unbroken. The
    -- returned hash is the previous entry's: this statement does not change it.
    INSERT INTO evidence_heads AS h (chain_kind, chain_id, seq)
    VALUES (e.chain_kind, e.chain_id, 1)
    ON CONFLICT (chain_kind, chain_id) DO UPDATE SET seq = h.seq + 1
    RETURNING h.seq, h.entry_hash INTO e.seq, e.prev_hash;
    IF last.version IS NOT NULL THEN  -- a new key cannot race; a new version of one can
        SELECT * INTO last FROM evidence_chain
        WHERE table_name = tbl AND row_key = k ORDER BY version DESC LIMIT 1;
    END IF;
    e.field_hashes := evidence_field_hashes(tbl, k, content);
    e.version := COALESCE(last.version, 0) + 1;
    IF last.version IS NOT NULL THEN
        SELECT array_agg(f ORDER BY f) INTO e.changed FROM (
            SELECT key AS f FROM jsonb_each_text(e.field_hashes) now_
            WHERE now_.value IS DISTINCT FROM last.field_hashes ->> now_.key
            UNION
            SELECT key FROM jsonb_each_text(last.field_hashes) then_
            WHERE NOT e.field_hashes ? then_.key) changes;
    END IF;
    -- Clear values the verification rules read: statuses, and whether a set-once field is.
    e.facts := CASE tbl
        WHEN 'notifications' THEN jsonb_build_object(
            'status', r -> 'status', 'provider_set', r ->> 'provider_message_id' IS NOT NULL)
        WHEN 'notification_sends' THEN jsonb_build_object('notification_status',
            (SELECT to_jsonb(n.status) FROM notifications n WHERE n.notification_id = k))
        WHEN 'print_queue' THEN jsonb_build_object(
            'tracking_set', r ->> 'tracking_number' IS NOT NULL)
        WHEN 'journeys' THEN jsonb_build_object('stage', r -> 'stage', 'outcome', r -> 'outcome')
        WHEN 'inquiries' THEN jsonb_build_object(
            'handled', r ->> 'handled_at' IS NOT NULL,
            'escalated', r ->> 'escalated_at' IS NOT NULL)
        ELSE '{}'::jsonb END;
    e.recorded_at := date_trunc('milliseconds', clock_timestamp());
    e.entry_hash := evidence_entry_hash(
        e.chain_kind, e.chain_id, e.seq, e.prev_hash, e.policy_number, e.table_name, e.row_key,
        e.version, e.changed, e.facts, e.content_hash, e.recorded_at);
    INSERT INTO evidence_chain VALUES (e.*);
    UPDATE evidence_heads SET entry_hash = e.entry_hash
    WHERE chain_kind = e.chain_kind AND chain_id = e.chain_id;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    chained text;
BEGIN
    FOREACH chained IN ARRAY ARRAY['notifications', 'notification_events', 'notification_sends',
                                   'print_queue', 'journeys', 'payments', 'debit_attempts',
                                   'inquiries'] LOOP
        EXECUTE format('CREATE TRIGGER evidence_chain AFTER INSERT OR UPDATE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION evidence_append()', chained);
    END LOOP;
END
$$;

-- --- reading back -----------------------------------------------------------------------
-- Every chained row as it is now, with its canonical content; $1: one policy, or NULL for
-- all. The verifier compares these with the rows' last chained versions. The keys are
-- evidence_key()'s, read from the columns (an event's id needs no jsonb text).
CREATE FUNCTION evidence_rows(policy text)
RETURNS TABLE (table_name text, row_key text, policy_number text, content jsonb)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT 'notifications', n.notification_id, n.policy_number,
           evidence_content('notifications', to_jsonb(n))
    FROM notifications n WHERE policy IS NULL OR n.policy_number = policy
    UNION ALL
    SELECT 'notification_events', e.event_id::text, n.policy_number,
           evidence_content('notification_events', to_jsonb(e))
    FROM notification_events e JOIN notifications n USING (notification_id)
    WHERE policy IS NULL OR n.policy_number = policy
    UNION ALL
    SELECT 'notification_sends', s.notification_id, n.policy_number,
           evidence_content('notification_sends', to_jsonb(s))
    FROM notification_sends s JOIN notifications n USING (notification_id)
    WHERE policy IS NULL OR n.policy_number = policy
    UNION ALL
    SELECT 'print_queue', q.letter_id, q.policy_number, evidence_content('print_queue', to_jsonb(q))
    FROM print_queue q WHERE policy IS NULL OR q.policy_number = policy
    UNION ALL
    SELECT 'journeys', x.journey_id, x.policy_number, evidence_content('journeys', to_jsonb(x))
    FROM journeys x WHERE policy IS NULL OR x.policy_number = policy
    UNION ALL
    SELECT 'payments', p.transaction_id, p.policy_number, evidence_content('payments', to_jsonb(p))
    FROM payments p WHERE policy IS NULL OR p.policy_number = policy
    UNION ALL
    SELECT 'debit_attempts', evidence_key('debit_attempts', j), d.policy_number,
           evidence_content('debit_attempts', j)
    FROM debit_attempts d, to_jsonb(d) j WHERE policy IS NULL OR d.policy_number = policy
    UNION ALL
    SELECT 'inquiries', i.inquiry_id, i.policy_number, evidence_content('inquiries', to_jsonb(i))
    FROM inquiries i WHERE policy IS NULL OR i.policy_number = policy
$$;

-- Each message's status with its events' statuses and sources (a provider's or ours), in
-- order: what the status must agree with.
CREATE VIEW evidence_statuses AS
SELECT n.notification_id, n.journey_id, n.policy_number, n.status, ev.statuses, ev.providers
FROM notifications n
LEFT JOIN LATERAL (
    SELECT array_agg(e.status ORDER BY e.event_id) AS statuses,
           array_agg(e.provider_event_id IS NOT NULL ORDER BY e.event_id) AS providers
    FROM notification_events e WHERE e.notification_id = n.notification_id
) ev ON true;
