"""The monthly review: every figure of a seeded month against hand-computed answers, an
empty month, a month of failures only, and `lapse report` writing tables, CSV and a PNG."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from datetime import date, datetime
from pathlib import Path

import pytest
from PIL import Image

from commands.report_charts import chart
from domain.ids import MilestoneKey, Suffix
from domain.models import DebitFailureReason, MessageKind, TriggerKind
from domain.plan import TZ
from domain.report import (
    DebitFailureCount,
    DeliveryRate,
    ErrorCount,
    FailureKind,
    FunnelCount,
    MonthlyReport,
    NotificationCount,
    ReportRecords,
    StartCount,
    build_report,
    failure_kind,
    lapse_reason,
    mask_debit_failure,
    months_ending,
    parse_month,
    record_kind,
    window,
)
from infra.report_queries import fetch_records
from starter import build_parser
from tests.ops_helpers import ROOT

NOV = date(2026, 11, 1)


def at(month: int, day: int, hour: int = 10, minute: int = 0, second: int = 0,
       year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=TZ)


# --- the seeded records -------------------------------------------------------------------

PRODUCTS = [("LT", "安泰终身寿险", "long_term", {"reinstatable": True}),
            ("ST", "安泰意外险", "short_term", {"reinstatable": False})]

# customer id, name, gender, organisation
CUSTOMERS = [("C1", "张伟", "M", False), ("C2", "李娜", "F", False),
             ("C3", "欧阳娜娜", "F", False), ("C4", "王强", None, False),
             ("C5", "安泰科技有限公司", None, True), ("C6", "赵敏", "F", False),
             ("C7", "钱进", "M", False), ("C9", "孙丽", "F", False),
             ("C11", "周杰", "M", False), ("C12", "吴芳", "F", False),
             ("M1", "郑一", "M", False), ("M2", "郑二", "F", False)]

# policy, product, policyholder, card last 4
POLICIES = [("P1", "LT", "C1", "6789"), ("P2", "LT", "C2", "6789"), ("P3", "LT", "C3", "3333"),
            ("P4", "LT", "C4", "4321"), ("P5", "ST", "C6", "5555"), ("P6", "LT", "C6", "5555"),
            ("P7", "LT", "C7", "7777"), ("P8", "ST", "C5", "8888"), ("P9", "LT", "C9", "9999"),
            ("P10", "LT", "C1", "6789"), ("P11", "LT", "C11", "1212"),
            ("P12", "LT", "C12", "1313"), ("P13", "LT", "C3", "1111"),
            ("P14", "ST", "C5", "2222"), ("P15", "LT", "C1", "6789")]

# journey, policy, trigger, started, lapsed, closed, outcome
JOURNEYS = [
    ("J0", "P1", "premium_overdue", at(5, 10), None, at(5, 20), "paid"),  # before window
    ("J1", "P1", "premium_overdue", at(11, 3), None, at(11, 10), "paid"),
    ("J2", "P2", "debit_failed", at(11, 2), None, at(11, 25), "paid"),
    ("J3", "P3", "premium_overdue", at(9, 1), at(11, 2, 0), at(11, 20), "reinstated"),
    ("J4", "P4", "debit_failed", at(9, 5), at(11, 5, 0), None, None),
    ("J5", "P5", "renewal_unpaid", at(10, 1), at(11, 1, 0), None, None),
    ("J6", "P6", "rescission", at(11, 12), None, None, None),
    ("J7", "P7", "premium_overdue", at(11, 15), None, None, None),
    ("J8", "P8", "premium_overdue", at(11, 20), None, None, None),
    ("J9", "P9", "premium_overdue", at(11, 1, 0), None, None, None),
    ("J10", "P10", "premium_overdue", at(11, 5), None, at(11, 6), "paid"),
    ("J11", "P11", "premium_overdue", at(11, 7), None, at(11, 8), "cancelled"),
    ("J12", "P12", "premium_overdue", at(11, 4), None, at(11, 19), "paid"),
    ("J13", "P13", "premium_overdue", at(12, 1, 0), None, None, None),  # after
]

# journey, milestone key, channel, recipient, role, status, error code, created
NOTIFICATIONS = [
    ("J1", "first_reminder", "sms", "C1", "policyholder", "delivered", None, at(11, 4)),
    ("J1", "first_reminder", "wechat", "C1", "policyholder", "sent", None, at(11, 4)),
    ("J1", "payment_confirmation", "sms", "C1", "policyholder", "unknown", None, at(11, 10, 12)),
    ("J2", "first_reminder", "sms", "C2", "policyholder", "delivered", None, at(11, 3)),
    ("J2", "first_reminder", "wechat", "C2", "policyholder", "failed", "user_unsubscribed",
     at(11, 3)),
    ("J2", "second_reminder", "voice", "C2", "policyholder", "sent", None, at(11, 20)),
    ("J2", "payment_confirmation", "sms", "C2", "policyholder", "sent", None, at(11, 25)),
    ("J6", "rescission_notice", "letter", "C6", "policyholder", "sent", None, at(11, 12)),
    ("J6", "rescission_notice", "email", "C6", "policyholder", "bounced", "mailbox_full",
     at(11, 12)),
    ("J7", "first_reminder", "sms", "C7", "policyholder", "failed", "invalid_number",
     at(11, 16)),
    ("J7", "first_reminder", "wechat", "C7", "policyholder", "failed", "invalid_number",
     at(11, 16)),
    ("J7", "first_reminder", "email", "C7", "policyholder", "sent", None, at(11, 16)),
    ("J7", "first_reminder-emergency", "sms", "C7.ec", "emergency_contact", "sent", None,
     at(11, 16)),
    ("J8", "first_reminder", "sms", "C5", "group_employer", "delivered", None, at(11, 23)),
    ("J8", "first_reminder", "sms", "M1", "group_member", "delivered", None, at(11, 23)),
    ("J8", "first_reminder", "sms", "M2", "group_member", "failed", "no_address", at(11, 23)),
    ("J9", "first_reminder", "sms", "C9", "policyholder", "queued", None, at(11, 30, 23, 59)),
    ("J11", "first_reminder", "sms", "C11", "policyholder", "sent", None, at(11, 7)),
    ("J12", "first_reminder", "sms", "C12", "policyholder", "delivered", None, at(11, 5)),
    ("J3", "lapse_notice", "sms", "C3", "policyholder", "delivered", None, at(11, 2)),
    ("J3", "lapse_notice", "email", "C3", "policyholder", "failed", None, at(11, 2)),
    ("J4", "lapse_notice", "sms", "C4", "policyholder", "sent", None, at(11, 5)),
    ("J3", "reinstatement_approved", "sms", "C3", "policyholder", "skipped", None, at(11, 20)),
    ("J4", "payment_after_lapse-txn:TX9", "sms", "C4", "policyholder", "sent", None, at(11, 6)),
    # other months of the window, and outside it
    ("J3", "first_reminder", "sms", "C3", "policyholder", "delivered", None, at(9, 2)),
    ("J4", "first_reminder", "sms", "C4", "policyholder", "sent", None, at(9, 6)),
    ("J5", "first_reminder", "sms", "C6", "policyholder", "failed", "invalid_number", at(10, 2)),
    ("J4", "second_reminder", "voice", "C4", "policyholder", "sent", None, at(10, 31, 23, 59, 59)),
    ("J7", "second_reminder", "sms", "C7", "policyholder", "sent", None, at(12, 1, 0, 0, 30)),
    ("J0", "first_reminder", "sms", "C1", "policyholder", "delivered", None, at(5, 15)),
]

# inquiry, kind, received, respond by, handled, escalated
INQUIRIES = [
    ("Q1", "question", at(11, 3), at(11, 4), at(11, 4, 9), None),
    ("Q2", "question", at(11, 5), at(11, 6), at(11, 6), None),  # exactly on the deadline
    ("Q3", "hardship", at(11, 10), at(11, 11), at(11, 12), at(11, 11)),
    ("Q4", "reinstatement", at(11, 27), at(11, 30), None, None),
    ("Q5", "complaint", at(10, 15), at(10, 16), at(10, 15, 16), None),
    ("Q6", "question", at(12, 1, 0), at(12, 2, 0), None, None),  # December
]

# policy, attempted, succeeded, reason
DEBITS = [
    ("P4", at(9, 5), False, "insufficient_balance"),
    ("P4", at(10, 5), False, "card_expired"),
    ("P4", at(11, 20), False, "account_mismatch"),  # after the lapse: not its reason
    ("P2", at(11, 2), False, "insufficient_balance"),
    ("P2", at(11, 25), True, None),
    ("P2", at(12, 1, 0), False, "insufficient_balance"),  # December: outside the window
    ("P13", at(5, 20), False, "insufficient_balance"),  # before the window
    ("P13", at(7, 1), False, "insufficient_balance"),
    ("P13", at(8, 1), False, "insufficient_balance"),
    ("P14", at(11, 1), False, "card_cancelled"),
    ("P14", at(11, 15), False, "card_cancelled"),
    ("P1", at(10, 10), False, "insufficient_balance"),  # one customer, one card,
    ("P15", at(11, 11), False, "card_expired"),  # two policies
]


async def seed_parties(conn) -> None:
    await conn.executemany(
        "INSERT INTO products (code, name, kind, rules) VALUES ($1, $2, $3, $4)", PRODUCTS)
    await conn.executemany(
        "INSERT INTO customers (customer_id, name, gender, birth_date, is_organisation) "
        "VALUES ($1, $2, $3, '1980-01-01', $4)", CUSTOMERS)
    await conn.executemany(
        "INSERT INTO policies (policy_number, product_code, policyholder_id, effective_date, "
        "premium, due_date, status, payment_method) "
        "VALUES ($1, $2, $3, '2020-01-01', 1000, '2026-10-01', 'in_force', $4)",
        [(p, prod, holder, {"kind": "bank_debit", "bank_name": "工商银行", "card_last4": last4})
         for p, prod, holder, last4 in POLICIES])


async def seed_journeys(conn, journeys, notifications) -> None:
    await conn.executemany(
        "INSERT INTO journeys (journey_id, policy_number, trigger, started_at, stage, "
        "lapsed_at, closed_at, outcome) "
        "VALUES ($1, $2, $3, $4, 'at_risk', $5, $6, $7)", journeys)
    policy_of = {j[0]: j[1] for j in journeys}
    await conn.executemany(
        "INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, "
        "channel, recipient_id, recipient_role, status, error_code, created_at, kind) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        [(f"{j}/{key}/{channel}/{who}", j, policy_of[j], key, channel, who, role, status,
          error, created, record_kind(MilestoneKey.parse(key), role))
         for j, key, channel, who, role, status, error, created in notifications])
    # The provider's callback that made each of them delivered: the proof the formal-demand
    # figure counts.
    await conn.execute(
        "INSERT INTO notification_events (notification_id, status, provider_event_id, "
        "occurred_at) SELECT notification_id, 'delivered', 'cb:' || notification_id, "
        "created_at FROM notifications WHERE status = 'delivered'")


@pytest.fixture
async def seeded(pool):
    async with pool.acquire() as conn:
        await seed_parties(conn)
        await seed_journeys(conn, JOURNEYS, NOTIFICATIONS)
        await conn.executemany(
            "INSERT INTO inquiries (inquiry_id, policy_number, kind, received_at, respond_by, "
            "handled_at, escalated_at) VALUES ($1, 'P1', $2, $3, $4, $5, $6)", INQUIRIES)
        await conn.executemany(
            "INSERT INTO debit_attempts (policy_number, attempted_at, amount, succeeded, "
            "reason_code) VALUES ($1, $2, 1000, $3, $4)", DEBITS)
    return pool


async def report_for(pool, month: date) -> MonthlyReport:
    return build_report(month, await fetch_records(pool, month))


CONFIRMING = {"sms", "email", "voice"}


def rate(channel, milestone, records, accepted, delivered, failed, unknown=0, pending=0,
         skipped=0, no_address=0, content_rule=0, errors=(), confirmable=None,
         confirmed=None) -> DeliveryRate:
    """The expected row, with its rates computed here by hand from the counts.

    `confirmable` and `confirmed`: the attempts and deliveries on channels that confirm
    delivery (by default the row's own, when its channel is one of them).
    """
    attempted = accepted + failed + unknown
    confirms = channel in CONFIRMING if confirmable is None else True
    if confirmable is None:
        confirmable, confirmed = (attempted, delivered) if confirms else (0, 0)
    share = (lambda n: round(n / attempted, 4)) if attempted else (lambda n: None)
    return DeliveryRate(
        channel=channel, milestone=milestone, records=records, attempted=attempted,
        accepted=accepted, delivered=delivered, failed=failed, unknown=unknown,
        pending=pending, skipped=skipped, no_address=no_address, content_rule=content_rule,
        confirms_delivery=confirms, confirmable=confirmable, accepted_rate=share(accepted),
        delivered_rate=(round(confirmed / confirmable, 4) if confirmable else None)
        if confirms else None,
        failed_rate=share(failed),
        top_errors=[ErrorCount(error_code=c, count=n) for c, n in errors])


# --- the seeded month ---------------------------------------------------------------------


async def test_notification_success_per_channel_and_milestone(seeded):
    report = await report_for(seeded, NOV)
    # M2's missing address is not a provider failure: it was never sent.
    assert report.notifications == [
        rate("sms", "first_reminder", 9, accepted=6, delivered=5, failed=1, pending=1,
             no_address=1, errors=[("invalid_number", 1)]),
        rate("sms", "lapse_notice", 2, accepted=2, delivered=1, failed=0),
        rate("sms", "emergency_contact", 1, accepted=1, delivered=0, failed=0),
        rate("sms", "payment_after_lapse", 1, accepted=1, delivered=0, failed=0),
        rate("sms", "payment_confirmation", 2, accepted=1, delivered=0, failed=0, unknown=1),
        rate("sms", "reinstatement_approved", 1, accepted=0, delivered=0, failed=0, skipped=1),
        rate("wechat", "first_reminder", 3, accepted=1, delivered=0, failed=2,
             errors=[("invalid_number", 1), ("user_unsubscribed", 1)]),
        rate("voice", "second_reminder", 1, accepted=1, delivered=0, failed=0),
        rate("email", "first_reminder", 1, accepted=1, delivered=0, failed=0),
        rate("email", "lapse_notice", 1, accepted=0, delivered=0, failed=1,
             errors=[("unknown", 1)]),
        rate("email", "rescission_notice", 1, accepted=0, delivered=0, failed=1,
             errors=[("mailbox_full", 1)]),
        rate("letter", "rescission_notice", 1, accepted=1, delivered=0, failed=0),
    ]
    assert report.channels == [
        rate("sms", None, 16, accepted=11, delivered=6, failed=1, unknown=1, pending=1,
             skipped=1, no_address=1, errors=[("invalid_number", 1)]),
        rate("wechat", None, 3, accepted=1, delivered=0, failed=2,
             errors=[("invalid_number", 1), ("user_unsubscribed", 1)]),
        rate("voice", None, 1, accepted=1, delivered=0, failed=0),
        rate("email", None, 3, accepted=1, delivered=0, failed=2,
             errors=[("mailbox_full", 1), ("unknown", 1)]),
        rate("letter", None, 1, accepted=1, delivered=0, failed=0),
    ]
    # WeChat and the letter confirm nothing: "confirmed" is over SMS, voice and e-mail.
    assert [(c.channel, c.delivered_rate) for c in report.channels] == [
        ("sms", 0.4615), ("wechat", None), ("voice", 0.0), ("email", 0.0), ("letter", None)]
    assert report.overall == rate(
        None, None, 24, accepted=15, delivered=6, failed=5, unknown=1, pending=1, skipped=1,
        no_address=1, confirmable=17, confirmed=6,
        errors=[("invalid_number", 2), ("mailbox_full", 1), ("unknown", 1)])
    assert (report.overall.accepted_rate, report.overall.delivered_rate) == (0.7143, 0.3529)


async def test_formal_demand_inquiries_and_journeys(seeded):
    report = await report_for(seeded, NOV)
    fd = report.formal_demand
    # J1, J2, J8 (the employer), J12 delivered; J7 (e-mail fallback) and J11 only accepted;
    # J9 still queued. Group members and the emergency contact are not the demand.
    assert (fd.first_reminders, fd.delivered, fd.accepted_unconfirmed, fd.unreached,
            fd.evidence_rate) == (7, 4, 2, 1, 0.5714)

    assert [(i.kind, i.received, i.on_time, i.late, i.unanswered, i.escalated, i.on_time_rate)
            for i in [*report.inquiries, report.inquiries_total]] == [
        ("hardship", 1, 0, 1, 0, 1, 0.0),
        ("question", 2, 2, 0, 0, 0, 1.0),
        (None, 3, 2, 1, 0, 1, 0.6667),
    ]
    # Q4 is a reinstatement application: it waits for underwriting, not for an answer.
    a = report.reinstatement_applications
    assert (a.received, a.approved, a.refused, a.awaiting) == (1, 0, 0, 1)

    j = report.journeys
    assert j.started == 9
    assert j.started_by_trigger == {"debit_failed": 1, "premium_overdue": 7, "rescission": 1}
    assert j.paid_in_grace == 4
    # J10 paid before any reminder; J1 after the first (its confirmation does not count);
    # J12 after the first too (its records say so: no column says otherwise any more);
    # J2 after the second, its latest reminder on record.
    assert j.paid_in_grace_by_milestone == {"none": 1, "first_reminder": 2,
                                            "second_reminder": 1}
    assert list(j.paid_in_grace_by_milestone) == ["none", "first_reminder", "second_reminder"]
    assert (j.lapsed, j.rescinded, j.reinstated) == (3, 1, 1)
    # J3 and J4 could be reinstated (J5 is short-term); J3 was.
    assert (j.conversion.lapsed, j.conversion.reinstated, j.conversion.rate) == (2, 1, 0.5)

    # J4 lapsed for its card expiring (the later failure came after the lapse).
    assert [(r.reason, r.count, r.share) for r in report.lapse_reasons] == [
        ("no_payment", 2, 0.5), ("card_expired", 1, 0.25), ("rescission", 1, 0.25)]

    # Journeys started June to November with a first reminder: November's seven, J3 and
    # J4 (September) and J5 (October), which have all lapsed since; J3 was reinstated.
    f = report.funnel
    assert (f.since, f.first_reminded, f.paid_in_grace, f.lapsed, f.reinstated,
            f.ended_otherwise, f.open) == ("2026-06", 10, 3, 3, 1, 1, 3)


async def test_repeated_debit_failures_are_masked(seeded):
    report = await report_for(seeded, NOV)
    assert [(d.customer_id, d.name, d.card, d.failures, d.last_failed_on, d.last_reason)
            for d in report.repeated_debit_failures] == [
        ("C4", "王先生/女士", "****4321", 3, date(2026, 11, 20), "account_mismatch"),
        ("C5", "安泰科技有限公司", "****2222", 2, date(2026, 11, 15), "card_cancelled"),
        ("C1", "张先生", "****6789", 2, date(2026, 11, 11), "card_expired"),
        ("C3", "欧阳女士", "****1111", 2, date(2026, 8, 1), "insufficient_balance"),
    ]
    dumped = report.model_dump_json()
    for full_name in ("王强", "张伟", "欧阳娜娜", "李娜"):
        assert full_name not in dumped


async def test_trends_cover_the_six_months_and_end_with_the_month(seeded):
    report = await report_for(seeded, NOV)
    assert [(t.month, t.notifications, t.accepted_rate, t.delivered_rate, t.evidence_rate,
             t.inquiries, t.on_time_rate, t.started, t.paid_in_grace, t.lapsed, t.reinstated,
             t.conversion_rate) for t in report.trends] == [
        ("2026-06", 0, None, None, None, 0, None, 0, 0, 0, 0, None),
        ("2026-07", 0, None, None, None, 0, None, 0, 0, 0, 0, None),
        ("2026-08", 0, None, None, None, 0, None, 0, 0, 0, 0, None),
        ("2026-09", 2, 1.0, 0.5, 0.5, 0, None, 2, 0, 0, 0, None),
        ("2026-10", 2, 0.5, 0.0, 0.0, 1, 1.0, 1, 0, 0, 0, None),
        ("2026-11", 21, 0.7143, 0.3529, 0.5714, 3, 0.6667, 9, 4, 3, 1, 0.5),
    ]


async def test_an_earlier_month_of_the_same_records(seeded):
    """October from its own window: the 23:59:59 call counts there, not in November."""
    report = await report_for(seeded, date(2026, 10, 1))
    assert report.overall == rate(None, None, 2, accepted=1, delivered=0, failed=1,
                                  confirmable=2, confirmed=0, errors=[("invalid_number", 1)])
    assert report.trends[-1].month == "2026-10" and len(report.trends) == 6
    assert report.journeys.started_by_trigger == {"renewal_unpaid": 1}
    # May to October: C3's failure of 20 May counts now; C4 has two before its lapse.
    assert [(d.customer_id, d.failures) for d in report.repeated_debit_failures] == [
        ("C3", 3), ("C4", 2)]


# --- an empty month and a month of failures ----------------------------------------------------


async def test_an_empty_month_has_zeros_and_no_rates(pool):
    report = await report_for(pool, NOV)
    assert report.notifications == [] and report.channels == []
    assert report.overall == DeliveryRate()
    assert report.formal_demand.first_reminders == 0
    assert report.formal_demand.evidence_rate is None
    assert report.inquiries == [] and report.inquiries_total.on_time_rate is None
    assert report.journeys.started == 0 and report.journeys.conversion.rate is None
    assert report.lapse_reasons == [] and report.repeated_debit_failures == []
    assert report.funnel.first_reminded == 0
    assert [t.month for t in report.trends] == [f"2026-{m:02d}" for m in range(6, 12)]
    assert all(t.notifications == 0 and t.accepted_rate is None for t in report.trends)


async def test_a_month_of_failures_only(pool):
    async with pool.acquire() as conn:
        await seed_parties(conn)
        await seed_journeys(
            conn, [("J20", "P7", "premium_overdue", at(1, 5, year=2027), None, None, None)],
            [("J20", "first_reminder", "sms", "C7", "policyholder", "failed", "invalid_number",
              at(1, 6, year=2027)),
             ("J20", "first_reminder", "wechat", "C7", "policyholder", "failed",
              "invalid_number", at(1, 6, year=2027)),
             ("J20", "first_reminder", "email", "C7", "policyholder", "bounced",
              "mailbox_full", at(1, 6, year=2027))])
    report = await report_for(pool, date(2027, 1, 1))
    assert report.overall == rate(None, None, 3, accepted=0, delivered=0, failed=3,
                                  confirmable=2, confirmed=0,
                                  errors=[("invalid_number", 2), ("mailbox_full", 1)])
    assert [(c.channel, c.accepted_rate, c.delivered_rate, c.failed_rate)
            for c in report.channels] == [("sms", 0.0, 0.0, 1.0), ("wechat", 0.0, None, 1.0),
                                          ("email", 0.0, 0.0, 1.0)]
    fd = report.formal_demand
    assert (fd.first_reminders, fd.delivered, fd.unreached, fd.evidence_rate) == (1, 0, 1, 0.0)
    assert report.funnel.first_reminded == 1 and report.funnel.open == 1
    assert report.trends[-1].accepted_rate == 0.0 and report.trends[-2].accepted_rate is None


async def test_records_not_sent_are_not_provider_failures(pool):
    """No address, a suppressed address and a content rule never reached a provider."""
    feb = at(2, 3, year=2027)
    async with pool.acquire() as conn:
        await seed_parties(conn)
        await seed_journeys(
            conn, [("J40", "P7", "premium_overdue", at(2, 1, year=2027), None, None, None)],
            [("J40", "first_reminder", "sms", "C7", "policyholder", "delivered", None, feb),
             ("J40", "first_reminder", "wechat", "C7", "policyholder", "failed", "no_address",
              feb),
             ("J40", "first_reminder", "email", "C7", "policyholder", "failed",
              "suppressed", feb),
             ("J40", "second_reminder", "sms", "C7", "policyholder", "failed", "sms_segments",
              feb),
             ("J40", "lapse_notice", "sms", "C7", "policyholder", "failed",
              "provider_unavailable", feb)])
    report = await report_for(pool, date(2027, 2, 1))
    assert report.channels == [
        rate("sms", None, 3, accepted=1, delivered=1, failed=1, content_rule=1,
             errors=[("provider_unavailable", 1)]),
        rate("wechat", None, 1, accepted=0, delivered=0, failed=0, no_address=1),
        rate("email", None, 1, accepted=0, delivered=0, failed=0, no_address=1),
    ]
    assert (report.overall.attempted, report.overall.failed, report.overall.no_address,
            report.overall.content_rule) == (2, 1, 2, 1)
    assert report.overall.top_errors == [ErrorCount(error_code="provider_unavailable", count=1)]


async def _delivered_again(conn, notification_id: str, provider_event_id: str | None) -> None:
    await conn.execute(
        "INSERT INTO notification_events (notification_id, status, provider_event_id, "
        "occurred_at) VALUES ($1, 'delivered', $2, now())", notification_id, provider_event_id)


async def test_formal_demand_follows_the_latest_delivered_event(pool):
    """The proof is the latest 'delivered' event of a first reminder: a provider's receipt
    that our own word came after proves nothing; one that came after our word does."""
    feb = at(2, 3, year=2027)
    async with pool.acquire() as conn:
        await seed_parties(conn)
        await seed_journeys(
            conn, [("J60", "P1", "premium_overdue", at(2, 1, year=2027), None, None, None),
                   ("J61", "P2", "premium_overdue", at(2, 1, year=2027), None, None, None)],
            [("J60", "first_reminder", "sms", "C1", "policyholder", "delivered", None, feb),
             ("J61", "first_reminder", "sms", "C2", "policyholder", "delivered", None, feb)])
        # Both have their provider's receipt (seeded); then an operator marks J60's and
        # J61's delivered by hand, and J61's provider sends its receipt once more.
        await _delivered_again(conn, "J60/first_reminder/sms/C1", None)
        await _delivered_again(conn, "J61/first_reminder/sms/C2", None)
        await _delivered_again(conn, "J61/first_reminder/sms/C2", "cb:again")
    fd = (await report_for(pool, date(2027, 2, 1))).formal_demand
    assert (fd.first_reminders, fd.delivered, fd.accepted_unconfirmed) == (2, 1, 1)


async def test_the_latest_delivered_event_wins_whatever_order_writers_commit_in(pool):
    """Two writers of one record's events: ours draws its event id first but commits last,
    after the provider's receipt. The latest event is still the receipt (the higher id, as
    the evidence pack reads it), and the review says so."""
    record = "J62/first_reminder/sms/C1"
    async with pool.acquire() as conn:
        await seed_parties(conn)
        await seed_journeys(
            conn, [("J62", "P1", "premium_overdue", at(2, 1, year=2027), None, None, None)],
            [("J62", "first_reminder", "sms", "C1", "policyholder", "delivered", None,
              at(2, 3, year=2027))])  # seeded with its receipt
        draw = "SELECT nextval(pg_get_serial_sequence('notification_events', 'event_id'))"
        ours = await conn.fetchval(draw)
        theirs = await conn.fetchval(draw)
        for event_id, provider_event_id in ((theirs, "cb:again"), (ours, None)):
            await conn.execute(
                "INSERT INTO notification_events (event_id, notification_id, status, "
                "provider_event_id, occurred_at) VALUES ($1, $2, 'delivered', $3, now())",
                event_id, record, provider_event_id)
    fd = (await report_for(pool, date(2027, 2, 1))).formal_demand
    assert (fd.first_reminders, fd.delivered) == (1, 1)


async def _kept_facts(conn) -> list[tuple]:
    return [tuple(r) for r in await conn.fetch(
        "SELECT journey_id, month_start, facts FROM report_first_reminders ORDER BY 1, 2")]


async def test_formal_demand_follows_the_records_as_they_change(pool):
    """The formal-demand facts are kept per journey and month as records change: a status
    update, our own 'delivered', a provider's receipt, a letter's tracking number each move
    the figure, and what is kept is what a rebuild from the records gives."""
    feb, month = at(2, 3, year=2027), date(2027, 2, 1)
    sms, wechat, letter = ("J70/first_reminder/sms/C1", "J70/first_reminder/wechat/C1",
                           "J71/first_reminder/letter/C2")
    async with pool.acquire() as conn:
        await seed_parties(conn)
        await seed_journeys(
            conn, [("J70", "P1", "premium_overdue", at(2, 1, year=2027), None, None, None),
                   ("J71", "P2", "premium_overdue", at(2, 1, year=2027), None, None, None)],
            [("J70", "first_reminder", "sms", "C1", "policyholder", "queued", None, feb),
             ("J70", "first_reminder", "wechat", "C1", "policyholder", "queued", None, feb),
             ("J71", "first_reminder", "letter", "C2", "policyholder", "sent", None, feb)])
        await conn.execute(
            "INSERT INTO print_queue (letter_id, policy_number, recipient_id, postal_address, "
            "pdf, pages) VALUES ($1, 'P2', 'C2', '上海市', '\\x00', 1)", letter)

        async def demand():
            fd = (await report_for(pool, month)).formal_demand
            return fd.first_reminders, fd.delivered, fd.accepted_unconfirmed, fd.unreached

        assert await demand() == (2, 0, 1, 1)  # J71's letter is posted, J70 still queued
        await conn.execute("UPDATE notifications SET status = 'sent' WHERE notification_id = $1",
                           sms)
        assert await demand() == (2, 0, 2, 0)
        await conn.execute(
            "UPDATE notifications SET status = 'delivered' WHERE notification_id = $1", sms)
        await _delivered_again(conn, sms, None)  # our own word proves nothing
        assert await demand() == (2, 0, 2, 0)
        await _delivered_again(conn, sms, "cb:sms")  # the provider's receipt does
        await conn.execute("UPDATE print_queue SET tracking_number = 'XA123456789CN' "
                           "WHERE letter_id = $1", letter)
        assert await demand() == (2, 2, 0, 0)
        await conn.execute(
            "UPDATE notifications SET status = 'failed', error_code = 'user_unsubscribed' "
            "WHERE notification_id = $1", wechat)
        kept = await _kept_facts(conn)
        await conn.execute("SELECT refresh_report_first_reminders()")
        assert await _kept_facts(conn) == kept
    assert [(j, facts) for j, _, facts in kept] == [
        ("J70", "sms delivered provider false,wechat failed - false"),
        ("J71", "letter sent - true")]


async def test_two_writers_of_one_journey_at_once_both_count(pool):
    """Two callbacks of one journey's first reminders, in transactions that overlap: the
    second one's facts are read once the first one has committed, so neither change is lost."""
    feb, month = at(2, 3, year=2027), date(2027, 2, 1)
    async with pool.acquire() as conn:
        await seed_parties(conn)
        await seed_journeys(
            conn, [("J72", "P1", "premium_overdue", at(2, 1, year=2027), None, None, None)],
            [("J72", "first_reminder", "sms", "C1", "policyholder", "sent", None, feb),
             ("J72", "first_reminder", "wechat", "C1", "policyholder", "sent", None, feb)])
    update = "UPDATE notifications SET status = $2 WHERE notification_id = $1"
    async with pool.acquire() as first, pool.acquire() as second:
        one = first.transaction()
        await one.start()
        await first.execute(update, "J72/first_reminder/sms/C1", "delivered")
        two = second.transaction()
        await two.start()
        later = asyncio.ensure_future(
            second.execute(update, "J72/first_reminder/wechat/C1", "failed"))
        # The second writer waits for the first one's locks (its journey's evidence chain,
        # its facts): seen from a third connection, outside both transactions.
        async with pool.acquire() as third:
            for _ in range(1000):  # a lock wait cannot be awaited: asked for, at most 10 s
                if later.done() or await third.fetchval(
                        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                        second.get_server_pid()):
                    break
                await asyncio.sleep(0.01)
        await one.commit()
        await later
        await two.commit()
        kept = await _kept_facts(first)
    assert [facts for _, _, facts in kept] == ["sms delivered - false,wechat failed - false"]
    fd = (await report_for(pool, month)).formal_demand
    assert (fd.first_reminders, fd.delivered, fd.accepted_unconfirmed) == (1, 0, 1)


def test_failure_codes_are_sorted_by_one_rule():
    for code in ("no_address", "no_postal_address", "suppressed"):
        assert failure_kind(code) is FailureKind.NO_ADDRESS
    for code in ("sms_segments", "sms_over_budget", "forbidden_word", "pii_pattern"):
        assert failure_kind(code) is FailureKind.CONTENT_RULE
    for code in ("21211", "mailbox_full", "provider_unavailable", "user_unsubscribed", None):
        assert failure_kind(code) is FailureKind.PROVIDER


# The key the journey sends a refusal under (workflows/policy_lapse.py).
REFUSED_R51 = MilestoneKey(MessageKind.REINSTATEMENT_REFUSED, suffix=Suffix.APPLICATION, ref="R51")


async def test_reinstatement_applications_wait_for_a_decision_not_an_answer(pool):
    """Applied in February: one approved (its journey closed reinstated), one refused (its
    refusal sent), one still with underwriting; none is an inquiry left unanswered."""
    async with pool.acquire() as conn:
        await seed_parties(conn)
        await seed_journeys(
            conn,
            [("J50", "P3", "premium_overdue", at(11, 1), at(1, 2, year=2027),
              at(2, 20, year=2027), "reinstated"),
             ("J51", "P4", "premium_overdue", at(11, 1), at(1, 2, year=2027), None, None),
             ("J52", "P6", "premium_overdue", at(11, 1), at(1, 2, year=2027), None, None)],
            [("J51", REFUSED_R51, "sms", "C4", "policyholder", "delivered",
              None, at(2, 12, year=2027))])
        await conn.executemany(
            "INSERT INTO inquiries (inquiry_id, policy_number, kind, received_at, respond_by) "
            "VALUES ($1, $2, 'reinstatement', $3, $4)",
            [("R50", "P3", at(2, 10, year=2027), at(2, 11, year=2027)),
             ("R51", "P4", at(2, 10, year=2027), at(2, 11, year=2027)),
             ("R52", "P6", at(2, 25, year=2027), at(2, 26, year=2027))])
    report = await report_for(pool, date(2027, 2, 1))
    a = report.reinstatement_applications
    assert (a.received, a.approved, a.refused, a.awaiting) == (3, 1, 1, 1)
    assert report.inquiries == [] and report.inquiries_total.received == 0
    assert report.inquiries_total.on_time_rate is None  # not 0 %: nothing waited for an answer
    assert report.trends[-1].inquiries == 0


# --- the pure parts --------------------------------------------------------------------------


def test_months_and_windows_follow_the_shanghai_calendar():
    assert parse_month("2026-01") == date(2026, 1, 1)
    for bad in ("2026-13", "2026-1", "26-01", "2026/01", ""):
        with pytest.raises(ValueError, match="use YYYY-MM"):
            parse_month(bad)
    assert months_ending(date(2026, 2, 1), 3) == [date(2025, 12, 1), date(2026, 1, 1),
                                                  date(2026, 2, 1)]
    start, end = window(date(2026, 2, 1), 3)
    assert (start.isoformat(), end.isoformat()) == ("2025-12-01T00:00:00+08:00",
                                                    "2026-03-01T00:00:00+08:00")


def test_lapse_reasons_come_from_the_trigger_and_the_last_failed_debit():
    t = TriggerKind
    assert lapse_reason(t.DEBIT_FAILED, DebitFailureReason.CARD_EXPIRED) == "card_expired"
    assert lapse_reason(t.DEBIT_FAILED, None) == "other"  # no failed debit on record
    assert lapse_reason(t.PREMIUM_OVERDUE, None) == "no_payment"
    assert lapse_reason(t.RENEWAL_UNPAID, None) == "no_payment"
    assert lapse_reason(t.RESCISSION, None) == "rescission"


def test_masking_keeps_a_surname_and_the_card_tail():
    row = DebitFailureCount(customer_id="C9", name="司马光", gender=None, is_organisation=False,
                            card_last4="0042", failures=2, last_failed_at=at(11, 30, 23),
                            last_reason=None)
    masked = mask_debit_failure(row)
    assert (masked.name, masked.card, masked.last_failed_on) == (
        "司马先生/女士", "****0042", date(2026, 11, 30))
    assert mask_debit_failure(row.model_copy(update={"card_last4": None})).card is None


# --- the command ------------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.DictReader(file))


async def lapse(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return await asyncio.to_thread(args.func, args)


@pytest.fixture
def cli_env(db_url, short_tmp, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LAPSE_DATA_DIR", str(short_tmp / "data"))
    return short_tmp


async def test_lapse_report_prints_tables_and_writes_csv_and_a_chart(seeded, cli_env, capsys):
    out_dir, chart = cli_env / "csv", cli_env / "charts" / "review.png"
    assert await lapse("report", "--month", "2026-11", "--csv", str(out_dir),
                       "--chart", str(chart)) == 0
    printed = capsys.readouterr().out
    assert "monthly review 2026-11" in printed
    assert "delivery proven 4 (57.1%)" in printed
    assert ("reinstatement conversion: 1 of the month's 2 reinstatable lapses reinstated so "
            "far (50.0%)") in printed
    assert "王先生/女士" in printed and "王强" not in printed

    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["inquiries.csv", "lapse_reasons.csv", "notifications.csv",
                     "repeated_debit_failures.csv", "summary.csv", "trends.csv"]
    rows = read_csv(out_dir / "notifications.csv")
    assert rows[0] == {"channel": "sms", "milestone": "first_reminder", "records": "9",
                       "attempted": "7", "accepted": "6", "delivered": "5", "failed": "1",
                       "unknown": "0", "pending": "1", "skipped": "0", "no_address": "1",
                       "content_rule": "0", "confirms_delivery": "True", "confirmable": "7",
                       "accepted_rate": "0.8571", "delivered_rate": "0.7143",
                       "failed_rate": "0.1429", "top_errors": "invalid_number=1"}
    wechat = next(r for r in rows if r["channel"] == "wechat")
    assert (wechat["confirms_delivery"], wechat["delivered_rate"]) == ("False", "")
    assert rows[-1]["channel"] == "all" and rows[-1]["attempted"] == "21"
    summary = {(r["section"], r["item"]): r["value"] for r in read_csv(out_dir / "summary.csv")}
    assert summary["formal_demand", "evidence_rate"] == "0.5714"
    assert summary["paid_in_grace", "second_reminder"] == "1"
    assert summary["conversion", "rate"] == "0.5"
    assert summary["funnel", "lapsed"] == "3"
    failures = read_csv(out_dir / "repeated_debit_failures.csv")
    assert [(r["name"], r["card"]) for r in failures][0] == ("王先生/女士", "****4321")
    assert read_csv(out_dir / "inquiries.csv")[-1]["on_time_rate"] == "0.6667"
    assert summary["reinstatement_applications", "awaiting"] == "1"
    trends = read_csv(out_dir / "trends.csv")
    assert [r["month"] for r in trends][-1] == "2026-11" and trends[-1]["lapsed"] == "3"
    assert read_csv(out_dir / "lapse_reasons.csv")[0] == {"reason": "no_payment",
                                                          "lapses": "2", "share": "0.5"}

    with Image.open(chart) as image:
        assert image.format == "PNG" and image.size == (1300, 850)
        # Drawn, not blank: many colours (bars, lines, anti-aliased text).
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50


async def test_lapse_report_json_is_the_report(seeded, cli_env, capsys):
    assert await lapse("report", "--month", "2026-11", "--json") == 0
    captured = capsys.readouterr()
    printed = MonthlyReport.model_validate(json.loads(captured.out))
    assert printed == await report_for(seeded, NOV)


async def test_lapse_report_on_an_empty_month_still_draws(cli_env, capsys):
    chart = cli_env / "empty.png"
    assert await lapse("report", "--month", "2030-02", "--chart", str(chart),
                       "--csv", str(cli_env / "csv")) == 0
    assert chart.stat().st_size > 10_000
    assert len(read_csv(cli_env / "csv" / "trends.csv")) == 6


async def test_lapse_report_refuses_a_chart_that_is_not_png(cli_env, capsys):
    assert await lapse("report", "--month", "2026-11", "--chart", str(cli_env / "c.jpg")) == 2
    assert "name it *.png" in capsys.readouterr().err


def test_lapse_report_refuses_a_bad_month(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["report", "--month", "November"])
    assert exit_.value.code == 2
    assert "use YYYY-MM" in capsys.readouterr().err


async def test_lapse_report_says_what_each_figure_counts(seeded, cli_env, capsys):
    assert await lapse("report", "--month", "2026-11") == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    wechat = next(x for x in lines if x.split()[:2] == ["wechat", "all"])
    sms = next(x for x in lines if x.split()[:2] == ["sms", "all"])
    assert "n/a" in wechat and "n/a" not in sms  # WeChat never confirms delivery: not 0 %
    assert "no address = not sent" in printed
    assert ("reinstatement applications received in the month: 1; decided so far: approved 0, "
            "refused 0; awaiting underwriting 1") in printed
    # The month's events and the funnel's cohort, each saying which it is.
    assert "journeys, what happened in the month (whenever the journey started):" in printed
    assert "paid in grace: 4 " in printed
    assert ("funnel, by start month: the 10 journeys started 2026-06 to 2026-11 with a first "
            "reminder, and what became of them by now: 3 paid in grace") in printed
    assert "so it differs from the month's figures above" in printed


async def test_lapse_report_into_a_reader_that_stops_early(seeded, cli_env):
    """`lapse report ... | head`: the reader leaves after the first lines; no error, and the
    chart is still written."""
    chart = cli_env / "review.png"
    read_end, write_end = os.pipe()
    # Unbuffered, as a report longer than the pipe's buffer is: the tables reach the reader
    # at once, and the note about the chart comes after the reader has gone.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "starter.py", "report", "--month", "2026-11", "--chart", str(chart),
            cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=write_end,
            stderr=asyncio.subprocess.PIPE)
    finally:
        os.close(write_end)
    try:
        first = await asyncio.to_thread(os.read, read_end, 100)  # what `head` reads
    finally:
        os.close(read_end)
    _, err = await asyncio.wait_for(process.communicate(), 120)
    assert first.startswith(b"monthly review 2026-11")
    assert err.decode() == ""
    assert process.returncode == 0
    assert chart.stat().st_size > 10_000


def test_the_chart_draws_not_applicable_and_whole_counts():
    month = date(2027, 3, 1)
    records = ReportRecords(
        notifications=[NotificationCount(month=month, channel=c, milestone="first_reminder",
                                         status=st, error_code=None, count=n)
                       for c, st, n in (("sms", "delivered", 2), ("wechat", "sent", 3))],
        funnel=[FunnelCount(month=month, first_reminded=3, paid_in_grace=1, lapsed=1,
                            reinstated=0, ended_otherwise=0)],
        starts=[StartCount(month=month, trigger="premium_overdue", count=3)])
    fig = chart(build_report(month, records))
    channels, funnel, counts, _ = fig.axes
    labels = [t.get_text() for t in channels.texts]
    assert labels == ["100%", "100%", "100%", "不适用"]  # accepted sms, wechat; confirmed
    fig.canvas.draw()
    for axis in (funnel.xaxis, counts.yaxis):  # counts of policies: no 0.5 of one
        assert all(float(t).is_integer() for t in axis.get_majorticklocs())
    assert "件" in funnel.get_xlabel()
