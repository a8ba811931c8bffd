-- One word per idea (issue 11 point 5): the columns that hold a word of the domain's
-- vocabulary accept only its words, as the older ones already do (status, kind, ...).
-- tests/test_vocabulary.py checks every such CHECK against its StrEnum in domain/, so the
-- database and the code cannot drift apart.
ALTER TABLE journeys ADD CONSTRAINT journeys_trigger_check
    CHECK (trigger IN ('premium_overdue', 'renewal_unpaid', 'debit_failed', 'rescission'));
ALTER TABLE journeys ADD CONSTRAINT journeys_stage_check
    CHECK (stage IN ('held', 'at_risk', 'lapsed', 'reinstating', 'closed'));
ALTER TABLE journeys ADD CONSTRAINT journeys_outcome_check
    CHECK (outcome IN ('paid', 'reinstated', 'follow_up_ended', 'rescinded', 'not_renewed',
                       'cancelled'));
ALTER TABLE notifications ADD CONSTRAINT notifications_channel_check
    CHECK (channel IN ('sms', 'wechat', 'wecom', 'voice', 'agent_call', 'email', 'letter'));
ALTER TABLE notifications ADD CONSTRAINT notifications_recipient_role_check
    CHECK (recipient_role IN ('policyholder', 'insured', 'group_employer', 'group_member',
                              'emergency_contact'));
ALTER TABLE debit_attempts ADD CONSTRAINT debit_attempts_reason_code_check
    CHECK (reason_code IN ('insufficient_balance', 'card_expired', 'card_cancelled',
                           'account_mismatch', 'other'));
