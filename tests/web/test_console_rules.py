"""The console's rules without a browser: which action fits which journey state, when the
journey's answer shows, the timeline and overdue inquiries, the words of milestone keys,
accounts, sign-in locks and session ends, and `lapse console add-agent`."""

from __future__ import annotations

import argparse
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from commands.common import UserError
from commands.console import PASSWORD_VARIABLE, ask_password
from domain.journey import InquiryKind, InquiryView, JourneyStatus, NextMilestone, Stage
from domain.models import Channel, Segment
from domain.plan import TZ
from domain.reinstatement import ReinstatementQuote
from infra.deliveries import JourneyRecord
from tests.ops_helpers import clean_env, run_lapse
from web.console import actions, auth, timeline, words

NOW = datetime(2026, 12, 28, 11, 0, tzinfo=TZ)


def journey(**changes) -> JourneyStatus:
    values = dict(
        policy_number="P2026000006", stage=Stage.AT_RISK, outcome=None,
        trigger="premium_overdue", due_date=date(2026, 11, 10),
        grace_ends_at=date(2027, 1, 9), lapses_at=datetime(2027, 1, 10, tzinfo=TZ),
        amount_due=Decimal("6800.00"), amount_paid=Decimal("0"),
        outstanding=Decimal("6800.00"),
        next_milestone=NextMilestone(name="lapse_notice", at=datetime(2027, 1, 11, 10, tzinfo=TZ),
                                     channels=[Channel.LETTER, Channel.SMS]),
        notifications=[], open_inquiries=[], reinstatement=None, segments=[Segment.ELDERLY],
        journey_now=NOW)
    values.update(changes)
    return JourneyStatus(**values)


def inquiry(inquiry_id: str, kind=InquiryKind.QUESTION, respond_by=NOW + timedelta(days=1)):
    return InquiryView(inquiry_id=inquiry_id, kind=kind, received_at=respond_by - timedelta(days=1),
                       respond_by=respond_by)


QUOTE = ReinstatementQuote(deadline=date(2029, 1, 10), back_premium=Decimal("6800.00"),
                           interest=Decimal("10.25"), total=Decimal("6810.25"), days=10)


def test_each_action_is_refused_when_the_journey_cannot_take_it():
    closed = journey(stage=Stage.CLOSED)
    with pytest.raises(actions.ActionRefused, match="没有进行中的旅程"):
        actions.parse("inquiry", {"kind": "question"}, closed)
    with pytest.raises(actions.ActionRefused, match="没有进行中的旅程"):
        actions.parse("contact", {}, None)
    with pytest.raises(actions.ActionRefused, match="已失效且仍可复效"):
        actions.parse("apply", {}, journey())  # still in grace
    with pytest.raises(actions.ActionRefused, match="不在未结询问"):
        actions.parse("handled", {"reference": "Q-0000000000"}, journey())
    reinstating = journey(stage=Stage.REINSTATING, reinstatement=QUOTE,
                          open_inquiries=[inquiry("R-0123456789", InquiryKind.REINSTATEMENT),
                                          inquiry("Q-0123456789")])
    with pytest.raises(actions.ActionRefused, match="待核保的复效申请"):
        actions.parse("decide", {"reference": "Q-0123456789", "approved": "yes"}, reinstating)
    with pytest.raises(actions.ActionRefused, match="核保结论"):
        actions.parse("decide", {"reference": "R-0123456789", "approved": "maybe"}, reinstating)
    with pytest.raises(actions.ActionRefused, match="编号格式"):
        actions.parse("inquiry", {"kind": "question", "reference": "'; DROP"}, journey())
    with pytest.raises(actions.ActionRefused, match="没有这项操作"):
        actions.parse("pay", {}, journey())
    long_note = {"reference": "Q-0123456789", "note": "说" * 501}
    with pytest.raises(actions.ActionRefused, match="最多 500 字"):
        actions.parse("handled", long_note, reinstating)


def test_a_request_keeps_its_reference_and_the_audit_never_the_note():
    req = actions.parse("inquiry", {"kind": "hardship"}, journey())
    assert req.reference.startswith("Q-") and req.detail == "hardship"
    again = actions.parse("inquiry", req.fields(), journey())  # the confirmation's form
    assert again == req
    lapsed = journey(stage=Stage.LAPSED, reinstatement=QUOTE)
    assert actions.parse("apply", {}, lapsed).reference.startswith("R-")
    reinstating = journey(stage=Stage.REINSTATING,
                          open_inquiries=[inquiry("R-0123456789", InquiryKind.REINSTATEMENT)])
    decided = actions.parse("decide", {"reference": "R-0123456789", "approved": "no",
                                       "note": "健康告知未通过"}, reinstating)
    assert decided.approved is False and decided.detail == "refused"
    assert "健康告知" not in (decided.detail or "")


def test_the_answer_shows_once_the_journey_state_does():
    before = journey()
    after = journey(open_inquiries=[inquiry("Q-0123456789", InquiryKind.COMPLAINT)])
    assert not actions.settled(actions.Action.INQUIRY, "Q-0123456789", before)
    assert "等待" in actions.answer(actions.Action.INQUIRY, "Q-0123456789", before)
    assert actions.answer(actions.Action.INQUIRY, "Q-0123456789", after) == (
        "旅程已登记询问 Q-0123456789（投诉），须在 2026-12-29 11:00 前答复客户。")
    assert actions.settled(actions.Action.HANDLED, "Q-0123456789", before)
    unreachable = journey(segments=[Segment.UNREACHABLE])
    assert not actions.settled(actions.Action.CONTACT, None, unreachable)
    assert actions.settled(actions.Action.CONTACT, None, before)
    reinstated = journey(stage=Stage.CLOSED, outcome="reinstated")
    assert actions.answer(actions.Action.DECIDE, "R-0123456789", reinstated) == (
        "旅程已结束：已复效，已通知客户。")


def test_overdue_inquiries_come_first_and_are_flagged():
    late = inquiry("Q-late000000", respond_by=NOW - timedelta(hours=2))
    soon = inquiry("Q-soon000000", respond_by=NOW + timedelta(hours=3))
    shown = timeline.inquiries(journey(open_inquiries=[soon, late]))
    assert [(i.view.inquiry_id, i.overdue) for i in shown] == [("Q-late000000", True),
                                                               ("Q-soon000000", False)]
    assert timeline.inquiries(None) == []


def record(milestone: str, channel: str, status: str = "delivered") -> JourneyRecord:
    return JourneyRecord(notification_id=f"j/{milestone}/{channel}/C1", milestone=milestone,
                         channel=channel, recipient_role="policyholder", status=status,
                         error_code=None, provider="sandbox", attempts=1, subject=None,
                         body="正文", created_at=datetime(2026, 12, 25, 10, tzinfo=TZ),
                         updated_at=datetime(2026, 12, 25, 10, 1, tzinfo=TZ), has_letter=False)


def test_the_timeline_is_dated_and_a_closed_journey_drops_what_never_came():
    records = [record("first_reminder", "sms"), record("first_reminder-resend:1", "letter")]
    entries = timeline.build(journey(), records)
    assert [e.title for e in entries] == [
        "保费应缴日", "首次提醒（正式催告）", "首次提醒（正式催告）（重发）",
        "宽限期最后一天", "保单效力中止", "失效通知"]
    assert [e.kind for e in entries][-1] == "planned"
    assert entries[1].messages == records[:1]
    paid = timeline.build(journey(stage=Stage.CLOSED, outcome="paid"), records)
    assert [e.title for e in paid][-1] == "首次提醒（正式催告）（重发）"


def test_milestone_keys_amounts_and_new_words_read_on_a_page():
    assert words.milestone("follow_up_3") == "复效跟进（第3个月）"
    assert words.milestone("first_reminder-resend:4") == "首次提醒（正式催告）（重发）"
    assert words.milestone("payment_after_lapse-txn:TX1") == "失效后缴费说明"
    assert words.milestone("lapse_notice-emergency") == "失效通知（紧急联系人）"
    assert words.milestone("not-a-key") == "not-a-key"
    assert words.money(Decimal("12345.6")) == "¥12,345.60"
    assert words.word(words.STAGE, "some_new_stage") == "some_new_stage"


async def test_wrong_passwords_lock_the_account_and_sessions_end(pool):
    rules = auth.SessionRules(lock_after=2)
    await auth.save_agent(pool, "agent.x", "correct-horse-7")
    stored = await pool.fetchval("SELECT password_hash FROM console_agents")
    assert stored.startswith("$argon2id$") and "correct-horse" not in stored
    token, agent = await auth.sign_in(pool, "agent.x", "correct-horse-7", rules)
    assert (await auth.session_agent(pool, token, rules)).name == "agent.x"
    await pool.execute("UPDATE console_sessions SET expires_at = now()")  # the shift ended
    assert await auth.session_agent(pool, token, rules) is None
    for _ in range(2):
        with pytest.raises(auth.SignInRefused, match="不正确"):
            await auth.sign_in(pool, "agent.x", "wrong-password", rules)
    with pytest.raises(auth.SignInRefused, match="锁定"):
        await auth.sign_in(pool, "agent.x", "correct-horse-7", rules)
    with pytest.raises(auth.SignInRefused, match="不正确"):
        await auth.sign_in(pool, "nobody", "correct-horse-7", rules)
    with pytest.raises(auth.AccountError, match="2-32 characters"):
        await auth.save_agent(pool, "Agent X", "correct-horse-7")


async def test_lapse_console_add_agent_reset_and_remove(db_url, pool, tmp_path):
    env = clean_env(DATABASE_URL=db_url, LAPSE_CONSOLE_PASSWORD="first-password-1")
    code, out, err = await run_lapse("console", "add-agent", "wang", "--display-name", "王坐席",
                                     env=env)
    assert (code, out.strip()) == (0, "agent wang: account created"), err
    secret = tmp_path / "password"
    secret.write_text("second-password-2\n", encoding="utf-8")
    code, _, err = await run_lapse("console", "add-agent", "wang", "--reset",
                                   "--password-file", str(secret),
                                   env=clean_env(DATABASE_URL=db_url))
    assert code == 0, err
    await auth.sign_in(pool, "wang", "second-password-2", auth.SessionRules())
    code, _, err = await run_lapse("console", "remove-agent", "wang", env=env)
    assert code == 0, err
    assert not await pool.fetchval("SELECT count(*) FROM console_agents")


async def test_add_agent_says_what_is_wrong_in_one_line(pool, monkeypatch):
    await auth.save_agent(pool, "wang", "first-password-1")
    with pytest.raises(auth.AccountError, match="exists already"):
        await auth.save_agent(pool, "wang", "first-password-1")
    with pytest.raises(auth.AccountError, match="no agent li"):
        await auth.save_agent(pool, "li", "first-password-1", reset=True)
    with pytest.raises(auth.AccountError, match="the password must be 10-128 characters"):
        await auth.save_agent(pool, "li", "short")
    # No terminal to ask on (as under pytest), no file, no variable: say how instead.
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    args = argparse.Namespace(name="zhao", password_file=None)
    with pytest.raises(UserError, match="--password-file FILE or LAPSE_CONSOLE_PASSWORD"):
        ask_password(args)
