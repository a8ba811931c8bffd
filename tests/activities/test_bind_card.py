"""The bind-a-new-card campaign: the quiet-period rule, then the campaign workflow on the dev
server (a real journey running beside it) sending through the sandbox with the real
clients, never twice in a month, the review counting who re-bound, and its Schedule."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta

import pytest
from temporalio.client import ScheduleOverlapPolicy

from commands.bind_card import install_schedule, run_once
from commands.schedules import schedule_info
from domain.campaign import (
    CampaignRules,
    campaign_month,
    in_quiet_period,
    rebound,
    review_month,
    run_id,
)
from domain.plan import TZ
from domain.policy_file import parse_policy_file
from domain.report import build_report
from infra import store
from infra.journeys import Journeys
from infra.report_queries import fetch_records
from tests.channel_helpers import sandbox_stack
from tests.journey_helpers import start_journey
from tests.ops_helpers import terminate_journeys, unique_prefix
from worker import build_worker

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=TZ)
RULES = CampaignRules(quiet_days_before=3, quiet_days_after=3)


@pytest.mark.parametrize(("sent", "planned", "quiet"), [
    ([], [], False),
    ([NOW - timedelta(days=2)], [], True),  # a journey message two days ago
    ([NOW - timedelta(days=3, minutes=1)], [], False),  # just over three days ago
    ([], [NOW + timedelta(days=2, hours=23)], True),  # the journey speaks within 3 days
    ([], [NOW + timedelta(days=3)], False),
    ([], [NOW - timedelta(minutes=5)], True),  # due already: about to go out
])
def test_the_quiet_period_around_journey_messages(sent, planned, quiet):
    assert in_quiet_period(NOW, sent, planned, RULES) is quiet


def test_months_and_rebinding():
    assert campaign_month(datetime(2026, 12, 31, 23, 30, tzinfo=TZ)) == date(2026, 12, 1)
    assert review_month(date(2027, 1, 1)) == date(2026, 12, 1)
    assert run_id(date(2026, 12, 1)) == "bind-card-2026-12"
    assert rebound("1111", "2222", False) and rebound(None, "2222", False)
    assert rebound("1111", "1111", True) and not rebound("1111", "1111", False)


def _lines(prefix: str, now: datetime) -> tuple[list[str], dict[str, str]]:
    """Customers whose debits failed: A twice (asked), B twice (a journey message
    yesterday), C twice (a journey running), D once (not listed), E twice but no contact."""
    failed = [(now - timedelta(days=d)).isoformat() for d in (40, 80)]
    people = {"A": "+8613800000961", "B": "+8613800000962", "C": "+8613800000963",
              "D": "+8613800000964", "E": None}
    lines = ['{"record": "product", "code": "LT-BC", "name": "安泰终身寿险", '
             '"kind": "long_term", "rules": {}}']
    numbers = {}
    due = (now - timedelta(days=10)).date().isoformat()
    for i, (who, mobile) in enumerate(people.items()):
        cid, number = f"{prefix}{who}", f"{prefix}-P{i:04d}"
        numbers[who] = number
        customer = {"record": "customer", "customer_id": cid, "name": f"张{who}",
                    "gender": "M", "birth_date": "1980-01-01"}
        if mobile:
            customer |= {"mobile": mobile, "wechat_openid": f"oBind{prefix}{who}"}
        attempts = [{"attempted_at": t, "amount": "500.00", "succeeded": False,
                     "reason_code": "card_expired"} for t in failed[:1 if who == "D" else 2]]
        policy = {"record": "policy", "policy_number": number, "product_code": "LT-BC",
                  "policyholder_id": cid, "effective_date": "2020-01-01", "premium": "500.00",
                  "due_date": due, "dues": [{"due_date": due, "amount": "500.00"}],
                  "payment_method": {"kind": "bank_debit", "bank_name": "中国银行",
                                     "card_last4": "1111"},
                  "debit_attempts": attempts}
        lines += [json.dumps(customer, ensure_ascii=False), json.dumps(policy, ensure_ascii=False)]
    return lines, numbers


async def _load(pool, lines: list[str]) -> None:
    async with pool.acquire() as conn:
        await store.save_policy_file(conn, parse_policy_file(lines))
        await store.ensure_calendar_seeded(conn)


async def test_the_campaign_asks_once_a_month_outside_the_quiet_period(dev_env, pool):
    prefix = unique_prefix()
    now = datetime.now(TZ)
    month = campaign_month(now)
    lines, numbers = _lines(prefix, now)
    await _load(pool, lines)
    # B heard from a journey yesterday.
    await pool.execute(
        "INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, "
        "channel, recipient_id, recipient_role, status, created_at, kind) VALUES "
        "($1, 'lapse-x', $2, 'first_reminder', 'sms', $3, 'policyholder', 'sent', $4, "
        "'first_reminder')",
        f"lapse-x/first_reminder/sms/{prefix}B", numbers["B"], f"{prefix}B",
        now - timedelta(days=1))
    queue = f"test-{uuid.uuid4().hex[:8]}"
    try:
        async with sandbox_stack(pool) as stack:
            worker = build_worker(dev_env.client, pool, queue, senders=stack.senders)
            async with worker:
                await start_journey(Journeys(dev_env.client, queue), pool, numbers["C"], now)
                first = await run_once(dev_env.client, queue, month)
                campaign = [e for e in stack.sandbox.outbox.entries
                            if e.to in ("+8613800000961", f"oBind{prefix}A")]
                again = await run_once(dev_env.client, queue, month)
                await stack.sandbox.settle()
            after = len([e for e in stack.sandbox.outbox.entries
                         if e.to in ("+8613800000961", f"oBind{prefix}A")])
    finally:
        await terminate_journeys(dev_env.client, [numbers["C"]])
    assert first.listed == 4  # A, B, C and E; D failed only once
    assert (first.result.sent, first.result.quiet, first.result.failed) == (1, 2, 1)
    assert sorted(e.api for e in campaign) == ["sms", "wechat"]
    sms = next(e for e in campaign if e.api == "sms")
    assert "绑定新卡" in sms.body and "尾号" in sms.body and numbers["A"] not in sms.body
    # Never twice in a month: the second run asks nobody again.
    assert again == first and after == 2
    records = await pool.fetch(
        "SELECT channel, status, journey_id, milestone FROM notifications "
        "WHERE recipient_id = $1 ORDER BY channel", f"{prefix}A")
    assert [(r["channel"], r["journey_id"], r["milestone"]) for r in records] == [
        ("sms", run_id(month), "bind_card"), ("wechat", run_id(month), "bind_card")]
    assert {r["status"] for r in records} <= {"sent", "delivered"}
    nobody = await pool.fetchval("SELECT status FROM notifications WHERE recipient_id = $1",
                                 f"{prefix}E")
    assert nobody == "failed"

    # The review of the month counts who re-bound: A loads a new card.
    report = build_report(month, await fetch_records(pool, month))
    assert (report.bind_card.asked, report.bind_card.rebound) == (1, 0)
    await _load(pool, [line.replace('"card_last4": "1111"', '"card_last4": "2222"')
                       if numbers["A"] in line else line for line in lines])
    report = build_report(month, await fetch_records(pool, month))
    assert (report.bind_card.asked, report.bind_card.rebound, report.bind_card.rate) == (1, 1, 1.0)


async def test_the_monthly_schedule_is_installed_and_updated(dev_env):
    schedule_id = f"test-bind-card-{uuid.uuid4().hex[:8]}"
    queue = f"test-{uuid.uuid4().hex[:8]}"
    try:
        desc = await install_schedule(dev_env.client, queue, day=2, hour=10,
                                      schedule_id=schedule_id)
        calendar = desc.schedule.spec.calendars[0]
        assert (calendar.day_of_month[0].start, calendar.hour[0].start) == (2, 10)
        assert desc.schedule.spec.time_zone_name == "Asia/Shanghai"
        assert desc.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        info = schedule_info(desc)
        assert info["workflow"] == "BindCardCampaignWorkflow" and info["task_queue"] == queue
        next_run = datetime.fromisoformat(info["next_run"])
        assert (next_run.day, next_run.hour) == (2, 10)
        desc = await install_schedule(dev_env.client, queue, day=5, hour=9,
                                      schedule_id=schedule_id)
        assert desc.schedule.spec.calendars[0].day_of_month[0].start == 5
    finally:
        await dev_env.client.get_schedule_handle(schedule_id).delete()
