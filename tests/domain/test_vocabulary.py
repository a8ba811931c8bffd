"""One word per idea: each word of the vocabulary is one StrEnum, the database's CHECKs
accept exactly its values, and a milestone key is one typed value whose kind is written
with its record, never read back out of its text in SQL."""

from __future__ import annotations

import ast
import re
from enum import StrEnum
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from domain.content.context import Role
from domain.evidence import STATUS_RANK, DemandRecord, formal_demand
from domain.ids import IdError, MilestoneKey, NotificationId, Suffix
from domain.journey import (
    InquiryClosed,
    InquiryKind,
    NotificationView,
    Outcome,
    PaymentAnswer,
    PaymentOutcome,
    Stage,
)
from domain.models import (
    ACCEPTED,
    MILESTONES,
    Channel,
    DebitFailureReason,
    Gender,
    MessageKind,
    NotificationStatus,
    PaymentPeriod,
    PolicyStatus,
    ProductKind,
    TriggerKind,
)
from domain.report import FAILED, PENDING, record_kind
from domain.voice_menu import CallChoice

# Each column that holds a word of the vocabulary, and the word's type.
COLUMNS: dict[tuple[str, str], type[StrEnum]] = {
    ("products", "kind"): ProductKind,
    ("customers", "gender"): Gender,
    ("policies", "status"): PolicyStatus,
    ("policies", "payment_period"): PaymentPeriod,
    ("debit_attempts", "reason_code"): DebitFailureReason,
    ("journeys", "trigger"): TriggerKind,
    ("journeys", "stage"): Stage,
    ("journeys", "outcome"): Outcome,
    ("notifications", "status"): NotificationStatus,
    ("notifications", "channel"): Channel,
    ("notifications", "recipient_role"): Role,
    ("notifications", "kind"): MessageKind,
    ("inquiries", "kind"): InquiryKind,
    ("call_choices", "choice"): CallChoice,
}
# Columns whose words are a Literal of one model, not a word used across the code.
LITERALS = {("journey_notes", "kind"): get_args(InquiryClosed.model_fields["kind"].annotation)}
# CHECKs on words that no model names (the database's own bookkeeping).
OWN_WORDS = {("policy_insured", "role"), ("calendar_days", "kind"), ("agent_tasks", "kind"),
             ("agent_tasks", "status"), ("print_queue", "status"),
             ("evidence_chain", "chain_kind"), ("bind_card_requests", "status"),
             ("signal_outbox", "outcome")}

# As PostgreSQL shows `col IN ('a', 'b')`: CHECK ((col = ANY (ARRAY['a'::text, 'b'::text])))
_WORDS = re.compile(r"^CHECK \(\((\w+) = ANY \(ARRAY\[(.*)\]\)\)\)$")
_WORD = re.compile(r"'([^']*)'::text")


async def _word_checks(pool) -> dict[tuple[str, str], set[str]]:
    rows = await pool.fetch(
        "SELECT conrelid::regclass::text AS tbl, pg_get_constraintdef(oid) AS def "
        "FROM pg_constraint WHERE contype = 'c' AND connamespace = 'public'::regnamespace")
    checks: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        m = _WORDS.match(row["def"])
        if m is not None:
            checks[row["tbl"], m[1]] = set(_WORD.findall(m[2]))
    return checks


async def test_every_database_check_accepts_exactly_its_words(pool):
    checks = await _word_checks(pool)
    for column, enum in COLUMNS.items():
        assert checks.get(column) == {e.value for e in enum}, column
    for column, words in LITERALS.items():
        assert checks.get(column) == set(words), column
    # A new CHECK on words names its type here (or says it is the database's own).
    assert set(checks) == set(COLUMNS) | set(LITERALS) | OWN_WORDS


# --- the statuses ------------------------------------------------------------------------


def test_accepted_is_sent_or_delivered_everywhere():
    assert ACCEPTED == {NotificationStatus.SENT, NotificationStatus.DELIVERED}
    assert not ACCEPTED & (FAILED | PENDING)
    assert set(STATUS_RANK) == set(NotificationStatus)
    sent = DemandRecord(channel=Channel.WECHAT, status="sent")
    assert formal_demand([sent]).accepted and not formal_demand([sent]).delivered


def test_answers_and_views_keep_their_json_words():
    answer = PaymentAnswer(accepted=True, outcome="paid_in_full", outstanding="0")
    assert answer.outcome is PaymentOutcome.PAID_IN_FULL
    assert answer.model_dump_json() == \
        '{"accepted":true,"outcome":"paid_in_full","outstanding":"0"}'
    with pytest.raises(ValidationError):
        PaymentAnswer(accepted=True, outcome="paid", outstanding="0")
    view = NotificationView(id="n", milestone="follow_up_3-resend:2", channel="sms",
                            status="sent", at="2026-11-02T10:00:00+08:00")
    assert view.milestone.kind is MessageKind.FOLLOW_UP and view.milestone.month == 3
    assert '"milestone":"follow_up_3-resend:2"' in view.model_dump_json()
    assert '"status":"sent"' in view.model_dump_json()


# --- the milestone key -------------------------------------------------------------------


def _keys() -> list[MilestoneKey]:
    """Every shape a key takes: each message kind, a follow-up month, each suffix."""
    keys = []
    for kind in MessageKind:
        for month in (None, 3):
            base = MilestoneKey(kind, month)
            keys.append(base)
            keys += [base.with_suffix(s) for s in Suffix]
            keys += [base.with_suffix(s, "T-1:a.b") for s in Suffix]
    return keys


def test_a_key_is_the_text_it_parses_from():
    for key in _keys():
        again = MilestoneKey.parse(str(key))
        assert again == key and type(str(key)) is str
        assert (again.kind, again.month, again.suffix, again.ref) == (
            key.kind, key.month, key.suffix, key.ref)
        assert again.base == MilestoneKey(key.kind, key.month)


def test_keys_the_journey_writes():
    assert MilestoneKey(MessageKind.FOLLOW_UP, 3) == "follow_up_3"
    assert MilestoneKey(MessageKind.FIRST_REMINDER).with_suffix(Suffix.RESEND, 2) == \
        "first_reminder-resend:2"
    assert MilestoneKey(MessageKind.PAYMENT_AFTER_LAPSE, suffix=Suffix.TXN, ref="T1") == \
        "payment_after_lapse-txn:T1"
    nid = NotificationId.parse("lapse-P2026000001@0190aaaa-bbbb/reenrolment_offer_2-redial:1"
                               "/voice/C0001")
    assert (nid.key.kind, nid.key.month, nid.key.suffix) == (
        MessageKind.REENROLMENT_OFFER, 2, Suffix.REDIAL)


@pytest.mark.parametrize("text", ["", "nope", "follow_up_0", "follow_up_03", "first_reminder_",
                                  "first_reminder-fallback", "first_reminder-resend:a b",
                                  "First_reminder"])
def test_a_key_that_is_not_ours_is_refused(text):
    with pytest.raises(IdError):
        MilestoneKey.parse(text)


def test_a_key_cannot_be_changed():
    with pytest.raises(AttributeError):
        MilestoneKey(MessageKind.FIRST_REMINDER).kind = MessageKind.LAPSE_NOTICE


def test_milestones_are_message_kinds_in_timeline_order():
    assert MILESTONES[0] is MessageKind.FIRST_REMINDER
    assert [k for k in MessageKind if k in MILESTONES] == list(MILESTONES)


def test_a_record_counts_under_its_keys_kind_or_as_a_message_to_the_emergency_contact():
    """domain/report.py `record_kind` is the one reading of a key for the review (written
    with each record as notifications.kind): the key's message kind, whatever its
    follow-up month or suffix, or emergency_contact for a message to the emergency
    contact, whatever key it went out under."""
    for key in _keys():
        assert record_kind(key, Role.POLICYHOLDER) is key.kind
        assert record_kind(key, "group_member") is key.kind
        assert record_kind(key, Role.EMERGENCY_CONTACT) is MessageKind.EMERGENCY_CONTACT
    assert record_kind(MilestoneKey.parse("follow_up_3-resend:2"), "insured") is \
        MessageKind.FOLLOW_UP


# Reading a key out of its text: a function that cuts or matches text applied to it, a
# pattern match on it, or the function that did it before 0019.
_TEXT_FUNCTION = re.compile(r"\b(regexp_\w+|split_part|substr\w*|strpos|position|left|right"
                            r"|string_to_array|overlay|translate|replace)\s*\(", re.IGNORECASE)
_PATTERN = re.compile(r"milestone\w*\s*(?:~|!~|(?:NOT\s+)?(?:I?LIKE|SIMILAR TO))", re.IGNORECASE)


def _reads_key_text(sql: str) -> list[str]:
    found = [m[0] for m in _PATTERN.finditer(sql)]
    if "report_milestone" in sql:
        found.append("report_milestone")
    for call in _TEXT_FUNCTION.finditer(sql):
        depth, end = 1, call.end()
        while depth and end < len(sql):
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            end += 1
        if "milestone" in sql[call.end():end]:
            found.append(sql[call.start():end])
    return found


def test_the_check_sees_a_key_read_out_of_its_text():
    for sql in ("regexp_replace(split_part(milestone, '-', 1), '_[0-9]+$', '')",
                "split_part(n.milestone, '-', 1)", "WHERE milestone LIKE 'first%'",
                "report_milestone(milestone, recipient_role)", "n.milestone ~ '^follow'"):
        assert _reads_key_text(sql), sql
    for sql in ("split_part(f, ' ', 1)", "n.milestone = 'reinstatement_refused-application:' "
                "|| i.inquiry_id", "kind IN ('first_reminder')"):
        assert not _reads_key_text(sql), sql


def test_no_sql_of_the_product_reads_a_key_out_of_its_text():
    """A record's kind is its `kind` column: no query of infra/ cuts or matches a key."""
    root = Path(__file__).resolve().parents[2]
    found = []
    for path in sorted(root.joinpath("infra").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [f"{path.relative_to(root)}:{node.lineno}: {r}"
                          for r in _reads_key_text(node.value)]
    assert found == []


async def test_no_sql_of_the_database_reads_a_key_out_of_its_text(pool):
    """After every migration (0019 dropped report_milestone()), no function, view, index,
    trigger or statistics of the schema cuts or matches a key."""
    definitions = await pool.fetch("""
        SELECT proname AS name, prosrc AS sql FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace
        UNION ALL SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'
        UNION ALL SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL SELECT stxname, pg_get_statisticsobjdef(oid) FROM pg_statistic_ext""")
    assert {d["name"]: _reads_key_text(d["sql"]) for d in definitions
            if _reads_key_text(d["sql"])} == {}
