-- The journey core (issues 10, 12, 16): tasks a closed journey cancels, the data check's
-- tasks and the formal notices that reached nobody provably, and free text kept out of
-- Temporal's history.

ALTER TABLE agent_tasks DROP CONSTRAINT agent_tasks_kind_check;
ALTER TABLE agent_tasks ADD CONSTRAINT agent_tasks_kind_check
    CHECK (kind IN ('outbound_call', 'home_visit', 'inquiry_escalation', 'contact_repair',
                    'delivery_review', 'data_verification', 'notice_failed'));
-- 'cancelled': the journey closed (paid, reinstated, ...) before anybody did the task.
ALTER TABLE agent_tasks DROP CONSTRAINT agent_tasks_status_check;
ALTER TABLE agent_tasks ADD CONSTRAINT agent_tasks_status_check
    CHECK (status IN ('open', 'taken', 'done', 'cancelled'));
ALTER TABLE agent_tasks ADD COLUMN closed_reason text;
-- The data check's failed rules (names such as id_number_birth_date, never values).
ALTER TABLE agent_tasks ADD COLUMN rules text[];
DROP INDEX agent_tasks_open_idx;
CREATE INDEX agent_tasks_open_idx ON agent_tasks (due_at) WHERE status IN ('open', 'taken');
CREATE INDEX agent_tasks_journey_idx ON agent_tasks (journey_id) WHERE status IN ('open', 'taken');

-- Notes and reasons that agents type (MISSION section 7): here, never in a workflow's
-- state or history; the journey refers to them by their id.
CREATE TABLE journey_notes (
    note_id        bigserial PRIMARY KEY,
    policy_number  text NOT NULL REFERENCES policies (policy_number),
    journey_id     text,
    kind           text NOT NULL CHECK (kind IN ('inquiry_handled', 'reinstatement_decided')),
    reference      text NOT NULL,  -- the inquiry or application id
    text           text NOT NULL CHECK (length(text) BETWEEN 1 AND 500),
    written_by     text,
    written_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (policy_number, kind, reference, text)
);
CREATE INDEX journey_notes_policy_idx ON journey_notes (policy_number, written_at);

-- A home visit goes to the branch nearest the policyholder's postal address.
ALTER TABLE agent_tasks ADD COLUMN branch_code text;
