"""PolicyLapseWorkflow on the time-skipping server with the real activities and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import date, time, timedelta
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

import activities.journey as journey_activities
import contract as sa
from activities.scan import scan_policies
from contract import workflow_id
from domain.journey import (
    ContactUpdated,
    DebitFailedSignal,
    DeliveryFailed,
    InquiryHandled,
    InquiryKind,
    InquiryReceived,
    JourneyInput,
    JourneyStatus,
    Outcome,
    Payment,
    PaymentAnswer,
    ReinstatementApplied,
    ReinstatementDecided,
    Stage,
)
from domain.models import Channel, DebitFailureReason
from domain.plan import TZ, CompanyRules, SendWindow
from domain.triggers import detect_trigger
from infra import store
from infra.journeys import PaymentSystem
from tests.journey_helpers import (
    ProviderDouble,
    at,
    begin_journey,
    holder_mobile,
    journey_worker,
    keep_history,
    load_sample,
    policy_status,
    sent_records,
    start_journey,
)
from workflows.policy_lapse import PolicyLapseWorkflow

STANDARD = "P2026000001"  # long-term, due Fri 2026-11-20, ¥3,600.00, every channel known
NEVER_PAID = Counter({
    ("first_reminder", "sms"): 1, ("first_reminder", "wechat"): 1,
    ("second_reminder", "voice"): 1,
    ("lapse_notice", "email"): 1, ("lapse_notice", "sms"): 1, ("lapse_notice", "wechat"): 1,
    **{(f"follow_up_{k}", "sms"): 1 for k in range(1, 7)},
    ("follow_up_3", "email"): 1, ("follow_up_6", "email"): 1,
})


def pay(amount: str, txn: str | None = None) -> Payment:
    return Payment(transaction_id=txn or f"T{uuid.uuid4().hex[:10]}", amount=Decimal(amount),
                   currency="CNY", paid_at=at("2026-11-25 12:00"))


@pytest.fixture
async def sample(pool):
    await load_sample(pool)
    return pool


async def left_alone(env, pool, policy_number: str, start: str, history: str,
                     sender: ProviderDouble | None = None) -> JourneyStatus:
    """The journey run to its end with nothing from outside (no payment, no signal); its
    history kept as `history` for the replay tests."""
    async with journey_worker(env.client, pool, sender or ProviderDouble()) as journeys:
        handle = await start_journey(journeys, pool, policy_number, at(start))
        result = await handle.result()
        await keep_history(handle, history)
    return result


async def test_never_paid_runs_the_whole_journey(time_skipping_env, sample):
    sender = ProviderDouble()
    result = await left_alone(time_skipping_env, sample, STANDARD, "2026-11-21 08:00",
                              "never_paid", sender)
    assert result.outcome is Outcome.FOLLOW_UP_ENDED
    assert await sent_records(sample, STANDARD) == NEVER_PAID
    assert sender.count() == NEVER_PAID
    assert await policy_status(sample, STANDARD) == "lapsed"
    first = next(m for m in sender.sent if m.notification_id.split("/")[1] == "first_reminder"
                 and m.channel is Channel.SMS)
    assert "3,600.00" in first.body


async def test_a_journey_the_scan_planned_starts_with_its_plan_and_search_attributes(
        time_skipping_env, sample):
    # The scan plans its page and starts each journey with the plan and its search
    # attributes: the journey plans nothing itself and upserts only what then changes.
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        scanned = await scan_policies(sample, journeys, date(2026, 11, 21),
                                      journey_start=at("2026-11-21 08:00"),
                                      policy_numbers=[STANDARD])
        assert scanned.started == {"premium_overdue": 1}
        desc = await journeys.handle(STANDARD).describe()
        handle = time_skipping_env.client.get_workflow_handle_for(
            PolicyLapseWorkflow.run, desc.id, run_id=desc.run_id)
        journey_id = await journeys.journey_key(STANDARD)
        started = desc.typed_search_attributes
        assert started.get(sa.LAPSE_STAGE) == "at_risk"
        assert started.get(sa.CUSTOMER_SEGMENT) == ["standard"]
        assert started.get(sa.OUTSTANDING_AMOUNT) == 3600.0
        assert started.get(sa.GRACE_ENDS_AT) == at("2027-01-20 00:00")  # L, 00:00
        # Saturday: the first reminder waits for Monday, and is next.
        assert started.get(sa.NEXT_REMINDER_AT).astimezone(TZ).date() == date(2026, 11, 23)
        async with time_skipping_env.time_skipping_unlocked():  # as a started handle does
            result = await handle.result()
        await keep_history(handle, "never_paid_planned")
        history = await handle.fetch_history()
    assert result.outcome is Outcome.FOLLOW_UP_ENDED
    assert sender.count() == NEVER_PAID
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name
                 for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    assert "prepare_journey" not in scheduled
    first_upsert = next(i for i, e in enumerate(history.events)
                        if e.HasField("upsert_workflow_search_attributes_event_attributes"))
    first_send = next(i for i, e in enumerate(history.events)
                      if e.HasField("activity_task_scheduled_event_attributes"))
    assert first_send < first_upsert  # nothing to change before the first reminder went
    # The journey's record, which the scan wrote for it, says how it went.
    row = await sample.fetchrow("SELECT journey_id, started_at, stage, outcome FROM journeys "
                                "WHERE policy_number = $1", STANDARD)
    assert row["journey_id"] == journey_id
    assert (row["started_at"], row["stage"], row["outcome"]) == (
        at("2026-11-21 08:00"), "closed", "follow_up_ended")


async def test_paid_before_first_reminder_sends_only_a_confirmation(time_skipping_env, sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        await time_skipping_env.sleep(timedelta(hours=2))
        await handle.signal("payment_received", pay("3600.00"))
        result = await handle.result()
    assert result.outcome is Outcome.PAID
    assert await sent_records(sample, STANDARD) == Counter({("payment_confirmation", "sms"): 1})
    assert await policy_status(sample, STANDARD) == "in_force"


async def test_paid_on_day_five_after_the_first_reminder(time_skipping_env, sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        await time_skipping_env.sleep(timedelta(days=4))  # journey day 5 (D = 11-20)
        await handle.signal("payment_received", pay("3600.00"))
        result = await handle.result()
        await keep_history(handle, "paid_in_grace")
    assert result.outcome is Outcome.PAID
    assert await sent_records(sample, STANDARD) == Counter({
        ("first_reminder", "sms"): 1, ("first_reminder", "wechat"): 1,
        ("payment_confirmation", "sms"): 1})


async def test_partial_then_full_payment(time_skipping_env, sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        await time_skipping_env.sleep(timedelta(days=4))
        await handle.signal("payment_received", pay("1000.00", "T-A"))
        await time_skipping_env.sleep(timedelta(days=45))  # past the second reminder
        status = await handle.query(PolicyLapseWorkflow.status)
        assert status.stage is Stage.AT_RISK
        assert status.outstanding == Decimal("2600.00")
        await handle.signal("payment_received", pay("2600.00", "T-B"))
        result = await handle.result()
        await keep_history(handle, "partial_then_full")
    assert result.outcome is Outcome.PAID
    assert result.amount_paid == Decimal("3600.00")
    assert await sent_records(sample, STANDARD) == Counter({
        ("first_reminder", "sms"): 1, ("first_reminder", "wechat"): 1,
        ("second_reminder", "voice"): 1, ("payment_confirmation", "sms"): 1})
    paid = await sample.fetchval("SELECT paid_amount FROM premium_dues WHERE policy_number = $1",
                                 STANDARD)
    assert paid == Decimal("3600.00")


async def test_the_same_payment_signalled_twice_counts_once(time_skipping_env, sample):
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        await handle.signal("payment_received", pay("1000.00", "T-SAME"))
        await handle.signal("payment_received", pay("1000.00", "T-SAME"))
        await time_skipping_env.sleep(timedelta(hours=1))
        status = await handle.query(PolicyLapseWorkflow.status)
        await handle.signal("payment_received", pay("2600.00"))
        await handle.result()
    assert status.amount_paid == Decimal("1000.00")
    assert status.outstanding == Decimal("2600.00")
    assert await sample.fetchval("SELECT count(*) FROM payments WHERE policy_number = $1",
                                 STANDARD) == 2


async def _lapse(env, journeys, pool, **changes):
    handle = await start_journey(journeys, pool, STANDARD, at("2026-11-21 08:00"), **changes)
    await env.sleep(timedelta(days=61))  # journey 2027-01-21 08:00: lapsed on 01-20
    return handle


async def test_lapsed_then_reinstated(time_skipping_env, sample):
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await _lapse(time_skipping_env, journeys, sample)
        lapsed = await handle.query(PolicyLapseWorkflow.status)
        assert await policy_status(sample, STANDARD) == "lapsed"
        await handle.signal("reinstatement_applied", ReinstatementApplied(
            application_id="R-1", applied_at=at("2027-01-21 09:00")))
        await time_skipping_env.sleep(timedelta(hours=1))
        status = await handle.query(PolicyLapseWorkflow.status)
        assert (lapsed.stage, status.stage) == (Stage.LAPSED, Stage.REINSTATING)
        # Applied on 2027-01-21, 62 days after the premium fell due on 2026-11-20:
        # ¥3,600 x 5.5% x 62 days / 365 = ¥33.63; the deadline is two years after the lapse.
        assert status.reinstatement.days == 62
        assert status.reinstatement.interest == Decimal("33.63")
        assert status.reinstatement.total == Decimal("3633.63")
        assert str(status.reinstatement.deadline) == "2029-01-20"
        await handle.signal("reinstatement_decided", ReinstatementDecided(
            application_id="R-1", approved=True, decided_at=at("2027-01-21 15:00")))
        result = await handle.result()
        await keep_history(handle, "reinstated")
    assert result.outcome is Outcome.REINSTATED
    assert await policy_status(sample, STANDARD) == "in_force"
    sent = await sent_records(sample, STANDARD)
    assert sent[("reinstatement_approved", "sms")] == 1
    # The application is answered by the decision: the monthly review counts it so.
    assert await sample.fetchval(
        "SELECT handled_at IS NOT NULL FROM inquiries WHERE inquiry_id = 'R-1'")
    assert not any(m.startswith("follow_up") for m, _ in sent)


MONTHLY = "P2026009101"  # the standard customer's ¥300 a month, due 2026-11-20


async def test_a_monthly_premium_quote_counts_every_premium_fallen_due_since(
        time_skipping_env, pool):
    await load_sample(pool, [json.dumps({
        "record": "policy", "policy_number": MONTHLY, "product_code": "LT-WL01",
        "policyholder_id": "C0001", "effective_date": "2020-01-20", "premium": "300.00",
        "payment_period": "monthly", "due_date": "2026-11-20",
        "payment_method": {"kind": "manual"},
        "dues": [{"due_date": "2026-11-20", "amount": "300.00", "paid_amount": "0"}]})])
    async with journey_worker(time_skipping_env.client, pool, ProviderDouble()) as journeys:
        handle = await start_journey(journeys, pool, MONTHLY, at("2026-11-21 08:00"))
        # To the evening of Monday 2027-02-22, the first follow-up's day (L = 01-20; 02-20
        # is a Saturday): the status reads the journey's clock of that send.
        await time_skipping_env.sleep(timedelta(days=93, hours=12))
        status = await handle.query(PolicyLapseWorkflow.status)
        await handle.terminate("test done")
    assert status.journey_now.date() == date(2027, 2, 22)
    # The open premium and the three that fell due since, in grace, at the lapse and
    # after it, each with its own days of interest at 5.5% a year (300 x 0.055 x days /
    # 365, to the fen): 94 days 4.25, 64 days 2.89, 33 days 1.49, 2 days 0.09.
    quote = status.reinstatement
    assert [(str(i.due_date), i.days, i.interest) for i in quote.items] == [
        ("2026-11-20", 94, Decimal("4.25")), ("2026-12-20", 64, Decimal("2.89")),
        ("2027-01-20", 33, Decimal("1.49")), ("2027-02-20", 2, Decimal("0.09"))]
    assert (quote.back_premium, quote.total) == (Decimal("1200.00"), Decimal("1208.72"))
    assert status.outstanding == Decimal("300.00")  # what the ledger says fell due by D


def _sent_at(status: JourneyStatus, milestone: str) -> list[str]:
    return [f"{n.at.astimezone(TZ):%Y-%m-%d %H:%M}" for n in status.notifications
            if n.milestone == milestone and n.status == "sent"]


async def test_a_payment_at_night_is_confirmed_when_sms_may_go_out(time_skipping_env, sample):
    # Paid at 21:20 (SMS may go out 08:00-21:00): the journey closes at once, on record
    # then; the confirmation goes at 08:00 the next morning, not in quiet hours.
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-23 21:20"))
        paid = await PaymentSystem(journeys, sample).payment_received(STANDARD,
                                                                      pay("3600.00"))
        closed = await handle.query(PolicyLapseWorkflow.status)
        result = await handle.result()
        await keep_history(handle, "confirmed_after_quiet_hours")
    assert (paid.outcome, closed.stage) == ("paid_in_full", Stage.CLOSED)
    assert _sent_at(result, "payment_confirmation") == ["2026-11-24 08:00"]
    closed_at = await sample.fetchval("SELECT closed_at FROM journeys "
                                      "WHERE policy_number = $1", STANDARD)
    assert f"{closed_at.astimezone(TZ):%Y-%m-%d %H}" == "2026-11-23 21"
    assert await sent_records(sample, STANDARD) == Counter({("payment_confirmation", "sms"): 1})


async def _decided_at_night(env, journeys, pool, application_id: str, approved: bool):
    """Lapsed (2027-01-21 08:00), applied at 09:00, decided by underwriting at 22:00."""
    handle = await _lapse(env, journeys, pool)
    await handle.signal("reinstatement_applied", ReinstatementApplied(
        application_id=application_id, applied_at=at("2027-01-21 09:00")))
    await env.sleep(timedelta(hours=14))  # 22:00
    await handle.signal("reinstatement_decided", ReinstatementDecided(
        application_id=application_id, approved=approved, decided_at=at("2027-01-21 22:00"),
        reason="" if approved else "health"))
    return handle


async def test_underwritings_decision_at_night_is_told_in_the_morning(time_skipping_env,
                                                                        sample):
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await _decided_at_night(time_skipping_env, journeys, sample, "R-9", True)
        result = await handle.result()
    assert result.outcome is Outcome.REINSTATED
    assert _sent_at(result, "reinstatement_approved") == ["2027-01-22 08:00"]


async def test_a_refusal_at_night_waits_for_the_morning_while_the_journey_goes_on(
        time_skipping_env, sample):
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await _decided_at_night(time_skipping_env, journeys, sample, "R-8", False)
        await time_skipping_env.sleep(timedelta(hours=1))
        night = await handle.query(PolicyLapseWorkflow.status)
        await time_skipping_env.sleep(timedelta(hours=11))  # 2027-01-22 10:00
        morning = await handle.query(PolicyLapseWorkflow.status)
        await handle.terminate("test done")
    # Back to the follow-ups at once; told at 08:00, not at 22:00.
    assert (night.stage, _sent_at(night, "reinstatement_refused-application:R-8")) == (
        Stage.LAPSED, [])
    assert _sent_at(morning, "reinstatement_refused-application:R-8") == ["2027-01-22 08:00"]


async def test_no_interest_when_the_lapse_was_the_insurers_fault(time_skipping_env, sample):
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await _lapse(time_skipping_env, journeys, sample, insurer_fault=True)
        await handle.signal("reinstatement_applied", ReinstatementApplied(
            application_id="R-3", applied_at=at("2027-01-21 09:00")))
        await time_skipping_env.sleep(timedelta(hours=1))
        status = await handle.query(PolicyLapseWorkflow.status)
        assert status.reinstatement.days == 62
        await handle.terminate("test done")
    assert status.reinstatement.interest == Decimal("0.00")
    assert status.reinstatement.total == Decimal("3600.00")


async def test_reinstatement_refused_resumes_follow_up(time_skipping_env, sample):
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await _lapse(time_skipping_env, journeys, sample)
        await handle.signal("reinstatement_applied", ReinstatementApplied(
            application_id="R-2", applied_at=at("2027-01-21 09:00")))
        await handle.signal("reinstatement_decided", ReinstatementDecided(
            application_id="R-2", approved=False, decided_at=at("2027-01-22 15:00"),
            reason="health"))
        result = await handle.result()
        await keep_history(handle, "reinstatement_refused")
    assert result.outcome is Outcome.FOLLOW_UP_ENDED
    sent = await sent_records(sample, STANDARD)
    assert sent[("reinstatement_refused-application:R-2", "sms")] == 1
    # The reason is kept in PostgreSQL with the application's answer.
    assert await sample.fetchval(
        "SELECT i.handled_at IS NOT NULL AND n.text = 'health' FROM inquiries i "
        "JOIN journey_notes n ON n.reference = i.inquiry_id WHERE i.inquiry_id = 'R-2'")
    assert sum(n for (m, _), n in sent.items() if m.startswith("follow_up")) == 8
    assert await policy_status(sample, STANDARD) == "lapsed"


async def test_payment_after_lapse_explains_reinstatement(time_skipping_env, sample):
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await _lapse(time_skipping_env, journeys, sample)
        await handle.signal("payment_received", pay("3600.00", "T-LATE"))
        await time_skipping_env.sleep(timedelta(hours=1))
        status = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "payment_after_lapse")
        await handle.terminate("test done")
    assert status.stage is Stage.LAPSED
    assert status.outstanding == Decimal("0")
    sent = await sent_records(sample, STANDARD)
    assert sent[("payment_after_lapse-txn:T-LATE", "sms")] == 1
    assert await policy_status(sample, STANDARD) == "lapsed"


async def test_rescission_sends_one_formal_notice(time_skipping_env, sample):
    result = await left_alone(time_skipping_env, sample, "P2026000005", "2026-11-26 18:00",
                              "rescission")
    assert result.outcome is Outcome.RESCINDED
    assert await sent_records(sample, "P2026000005") == Counter({
        ("rescission_notice", "letter"): 1, ("rescission_notice", "email"): 1,
        ("rescission_notice", "sms"): 1, ("rescission_notice", "wechat"): 1})


async def test_short_term_not_renewed_offers_re_enrolment(time_skipping_env, sample):
    result = await left_alone(time_skipping_env, sample, "P2026000004", "2026-11-19 08:00",
                              "short_term")
    assert result.outcome is Outcome.NOT_RENEWED
    assert result.reinstatement is None
    assert await sent_records(sample, "P2026000004") == Counter({
        ("first_reminder", "sms"): 1, ("first_reminder", "wechat"): 1,
        ("second_reminder", "voice"): 1,
        ("lapse_notice", "email"): 1, ("lapse_notice", "sms"): 1, ("lapse_notice", "wechat"): 1,
        # The lapse (not-renewed) notice carries the offer; it is repeated once, a month
        # later, by SMS and e-mail (MISSION 8).
        ("reenrolment_offer_1", "sms"): 1, ("reenrolment_offer_1", "email"): 1})


async def test_debit_failure_details_reach_the_messages(time_skipping_env, sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, "P2026000002", at("2026-11-16 08:00"))
        await time_skipping_env.sleep(timedelta(hours=3))
        status = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "debit_failed")
        await handle.terminate("test done")
    assert status.trigger == "debit_failed"
    assert [f.reason_code.value for f in status.debit_failures] == ["insufficient_balance"]
    sms = next(m for m in sender.sent if m.channel is Channel.SMS)
    assert "11月15日" in sms.body and "5,280.00" in sms.body and "余额不足" in sms.body


async def test_inquiry_escalated_after_one_business_day(time_skipping_env, sample):
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-23 11:00"))
        await handle.signal("inquiry_received", InquiryReceived(
            inquiry_id="Q-1", kind=InquiryKind.HARDSHIP, received_at=at("2026-11-23 11:00")))
        await handle.signal("inquiry_received", InquiryReceived(
            inquiry_id="Q-2", kind=InquiryKind.QUESTION, received_at=at("2026-11-23 11:00")))
        await time_skipping_env.sleep(timedelta(hours=2))
        await handle.signal("inquiry_handled", InquiryHandled(
            inquiry_id="Q-2", handled_at=at("2026-11-23 13:00")))
        await time_skipping_env.sleep(timedelta(days=2))
        status = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "inquiry_escalated")
        await handle.terminate("test done")
    assert [(i.inquiry_id, i.escalated) for i in status.open_inquiries] == [("Q-1", True)]
    assert "hardship" in [s.value for s in status.segments]
    tasks = await sample.fetch("SELECT kind, priority FROM agent_tasks WHERE policy_number = $1",
                               STANDARD)
    assert [(t["kind"], t["priority"]) for t in tasks] == [("inquiry_escalation", 1)]
    # The records say what the monthly review counts: Q-2 answered on time, Q-1 escalated
    # at its deadline and still unanswered.
    rows = {r["inquiry_id"]: r for r in await sample.fetch(
        "SELECT inquiry_id, respond_by, handled_at, escalated_at FROM inquiries "
        "WHERE policy_number = $1", STANDARD)}
    assert rows["Q-2"]["handled_at"] is not None
    assert rows["Q-2"]["handled_at"] <= rows["Q-2"]["respond_by"]
    assert rows["Q-2"]["escalated_at"] is None
    assert rows["Q-1"]["handled_at"] is None
    assert rows["Q-1"]["respond_by"] <= rows["Q-1"]["escalated_at"] \
        < rows["Q-1"]["respond_by"] + timedelta(hours=1)


async def test_unreachable_customer_then_contact_repaired(time_skipping_env, sample):
    # Its mobile is refused by the provider as invalid; no e-mail, WeChat or address.
    policy = "P2026000009"
    customer = await sample.fetchrow("SELECT * FROM customers WHERE customer_id = "
                                     "(SELECT policyholder_id FROM policies "
                                     " WHERE policy_number = $1)", policy)
    assert not (customer["email"] or customer["wechat_openid"] or customer["postal_address"])
    sender = ProviderDouble(permanent={customer["mobile"]})
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, policy, at("2026-11-18 08:00"))
        await time_skipping_env.sleep(timedelta(hours=4))
        status = await handle.query(PolicyLapseWorkflow.status)
        listed = await sample.fetchval(
            "SELECT removed_at IS NULL FROM public_notices WHERE policy_number = $1", policy)
        tasks = await sample.fetch("SELECT kind FROM agent_tasks WHERE policy_number = $1",
                                   policy)
        # Operations found a working number (what the provider refused no longer applies).
        sender.permanent.clear()
        await handle.signal("contact_updated",
                            ContactUpdated(updated_at=at("2026-11-18 15:00")))
        await time_skipping_env.sleep(timedelta(hours=1))
        after = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "unreachable")
        await handle.terminate("test done")
    assert "unreachable" in [s.value for s in status.segments]
    assert listed is True
    assert [t["kind"] for t in tasks] == ["contact_repair"]
    assert "unreachable" not in [s.value for s in after.segments]
    resent = [m for m in sender.sent if "resend" in m.notification_id]
    assert {m.channel for m in resent} == {Channel.SMS}  # still no WeChat
    assert await sample.fetchval(
        "SELECT removed_at IS NOT NULL FROM public_notices WHERE policy_number = $1", policy)


async def test_a_contact_repaired_after_the_lapse_resends_only_what_still_holds(
        time_skipping_env, sample):
    # Unreachable from the first reminder to the lapse notice (the mobile refused as
    # invalid): operations find a working number on the lapse notice's day. The lapse
    # notice goes again; the formal demand and the second reminder, which speak of a grace
    # period that is over, do not.
    policy = "P2026000009"
    mobile = await holder_mobile(sample, policy)
    sender = ProviderDouble(permanent={mobile})
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, policy, at("2026-11-18 08:00"))
        await time_skipping_env.sleep(timedelta(days=61, hours=4))  # 2027-01-18 12:00
        lapsed = await handle.query(PolicyLapseWorkflow.status)
        sender.permanent.clear()
        await handle.signal("contact_updated",
                            ContactUpdated(updated_at=at("2027-01-18 12:00")))
        await time_skipping_env.sleep(timedelta(hours=1))
        after = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "repaired_after_lapse")
        await handle.terminate("test done")
    assert lapsed.stage is Stage.LAPSED
    assert {n.milestone for n in lapsed.notifications} >= {
        "first_reminder", "second_reminder", "lapse_notice"}
    resent = {m.notification_id.split("/")[1] for m in sender.sent
              if "resend" in m.notification_id}
    assert resent == {"lapse_notice-resend:1"}
    skipped = sorted(n.milestone for n in after.notifications if n.status == "skipped")
    assert skipped == ["first_reminder-resend:1", "second_reminder-resend:1"]


async def test_a_customer_is_not_unreachable_when_the_failure_was_ours(time_skipping_env,
                                                                        sample):
    # The same customer (a mobile only), whose SMS and call are refused because our
    # provider account's credentials fail (Twilio 20003), not because of the number.
    policy = "P2026000009"
    mobile = await holder_mobile(sample, policy)
    sender = ProviderDouble(refused={mobile: "20003"})
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, policy, at("2026-11-18 08:00"))
        await time_skipping_env.sleep(timedelta(hours=4))
        status = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "failed_on_our_side")
        await handle.terminate("test done")
    failed = await sample.fetch("SELECT channel, error_code FROM notifications "
                                "WHERE policy_number = $1 AND status = 'failed' "
                                "ORDER BY channel", policy)
    assert ("sms", "20003") in {(r["channel"], r["error_code"]) for r in failed}
    # No emergency contact asked, no public notice, no contact repair: the formal demand
    # that reached nobody goes to operations.
    assert "unreachable" not in [s.value for s in status.segments]
    assert not [m for m in sender.sent if "emergency" in m.notification_id]
    assert await sample.fetchval("SELECT count(*) FROM public_notices "
                                 "WHERE policy_number = $1", policy) == 0
    tasks = await sample.fetch("SELECT kind, priority FROM agent_tasks "
                               "WHERE policy_number = $1", policy)
    assert [(t["kind"], t["priority"]) for t in tasks] == [("notice_failed", 1)]


async def test_group_of_500_members_each_on_their_own_record(time_skipping_env, sample):
    members = [f'{{"record": "customer", "customer_id": "G5{i:04d}", "name": "成员{i}", '
               f'"birth_date": "1990-01-01", "mobile": "+86137{i:08d}"}}' for i in range(500)]
    ids = ", ".join(f'"G5{i:04d}"' for i in range(500))
    extra = [*members,
             '{"record": "customer", "customer_id": "GEMP5", "name": "示例科技有限公司", '
             '"birth_date": "2010-01-01", "mobile": "+8613600000000", '
             '"is_organisation": true}',
             '{"record": "policy", "policy_number": "GRP0000500", "product_code": "ST-GRP01", '
             '"policyholder_id": "GEMP5", "effective_date": "2025-11-16", "premium": "50000.00", '
             f'"due_date": "2026-11-16", "member_ids": [{ids}], "payment_method": '
             '{"kind": "manual"}, "dues": [{"due_date": "2026-11-16", "amount": "50000.00"}]}']
    await load_sample(sample, extra)
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, "GRP0000500", at("2026-11-17 08:00"))
        await time_skipping_env.sleep(timedelta(hours=4))
        await handle.signal("payment_received", pay("50000.00"))
        result = await handle.result()
        await keep_history(handle, "group_500")
        history = await handle.fetch_history()
    assert result.outcome is Outcome.PAID
    sent = await sent_records(sample, "GRP0000500")
    # The employer and each member by SMS; WeChat only reaches those with an openid (none).
    assert sent[("first_reminder", "sms")] == 501
    assert len({m.address for m in sender.sent if m.channel is Channel.SMS}) == 501
    assert len(history.events) < 200


async def test_a_worker_stopped_mid_journey_and_another_finishing_sends_nothing_twice(
        time_skipping_env, sample):
    queue = f"test-{uuid.uuid4().hex[:8]}"
    first, second = ProviderDouble(), ProviderDouble()
    # No workflow cache: the stopped worker holds no sticky task queue the server would
    # wait on before handing the journey to the next worker.
    async with journey_worker(time_skipping_env.client, sample, first, queue,
                              max_cached_workflows=0) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        await time_skipping_env.sleep(timedelta(days=50))  # past the second reminder
    assert first.count() and first.count() != NEVER_PAID
    async with journey_worker(time_skipping_env.client, sample, second, queue):
        result = await handle.result()
    assert result.outcome is Outcome.FOLLOW_UP_ENDED
    ids = [m.notification_id for m in first.sent + second.sent]
    assert len(ids) == len(set(ids))
    assert first.count() + second.count() == NEVER_PAID


async def test_record_payment_update_validates_and_answers(dev_env, sample):
    async with journey_worker(dev_env.client, sample, ProviderDouble()) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("record_payment", pay("-5.00"), result_type=PaymentAnswer)
        assert "amount must be positive" in str(refused.value.cause)
        wrong = pay("10.00").model_copy(update={"currency": "USD"})
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update("record_payment", wrong, result_type=PaymentAnswer)
        answer = await handle.execute_update("record_payment",
                                             pay("1000.00", "T-U1"), result_type=PaymentAnswer)
        assert (answer.accepted, answer.outcome, answer.outstanding) == (
            True, "recorded", Decimal("2600.00"))
        again = await handle.execute_update("record_payment",
                                            pay("1000.00", "T-U1"), result_type=PaymentAnswer)
        assert again.outcome == "duplicate"
        done = await handle.execute_update("record_payment",
                                           pay("2600.00", "T-U2"), result_type=PaymentAnswer)
        assert done.outcome == "paid_in_full"
        result = await handle.result()
        assert result.outcome is Outcome.PAID
        with pytest.raises(RPCError, match="already completed"):  # the journey is closed
            await handle.execute_update("record_payment", pay("1.00"), result_type=PaymentAnswer)


async def test_debit_failed_signal_adds_a_later_failure(time_skipping_env, sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, "P2026000002", at("2026-11-16 08:00"))
        await handle.signal("debit_failed", DebitFailedSignal(
            failed_at=at("2026-11-16 09:00"), amount=Decimal("5280.00"),
            reason_code=DebitFailureReason.CARD_EXPIRED, reason_text="卡片过期"))
        await time_skipping_env.sleep(timedelta(hours=3))
        status = await handle.query(PolicyLapseWorkflow.status)
        await handle.terminate("test done")
    assert [f.reason_code.value for f in status.debit_failures] == [
        "insufficient_balance", "card_expired"]
    sms = next(m for m in sender.sent if m.channel is Channel.SMS)
    assert "过期" in sms.body  # the next message explains the latest failure


async def test_a_customer_in_hardship_gets_an_agents_call_with_the_second_reminder(
        time_skipping_env, sample):
    # The customer tells the hotline they cannot pay (a hardship inquiry, answered the
    # same day): the second reminder (2027-01-04 10:00) is the automated call and, by the
    # product's hardship rule, an agent's call about the alternatives.
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        await time_skipping_env.sleep(timedelta(days=4, hours=3))  # 2026-11-25 11:00
        await handle.signal("inquiry_received", InquiryReceived(
            inquiry_id="H-1", kind=InquiryKind.HARDSHIP, received_at=at("2026-11-25 11:00")))
        await handle.signal("inquiry_handled", InquiryHandled(
            inquiry_id="H-1", handled_at=at("2026-11-25 11:30"), note="缴费困难"))
        await time_skipping_env.sleep(timedelta(days=40, hours=1))  # 2027-01-04 12:00
        status = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "hardship_second_reminder")
        await handle.terminate("test done")
    second = sorted((n.channel.value, f"{n.at.astimezone(TZ):%Y-%m-%d %H:%M}")
                    for n in status.notifications if n.milestone == "second_reminder")
    assert second == [("agent_call", "2027-01-04 10:00"), ("voice", "2027-01-04 10:00")]
    agent = next(m for m in sender.sent if m.channel is Channel.AGENT_CALL)
    assert "second_reminder" in agent.notification_id and "困难" in agent.body
    assert "hardship" in [x.value for x in status.segments]


async def test_delivery_failed_falls_back_to_the_next_channel(time_skipping_env, sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        await time_skipping_env.sleep(timedelta(days=2, hours=3))  # after the first reminder
        sms = next(m for m in sender.sent if m.channel is Channel.SMS)
        await handle.signal("delivery_failed", DeliveryFailed(
            notification_id=sms.notification_id, channel=Channel.SMS, error_code="30005",
            permanent=True))
        await time_skipping_env.sleep(timedelta(hours=1))
        await handle.terminate("test done")
    sent = await sent_records(sample, STANDARD)
    # WeChat had it already, but the formal demand must reach the policyholder on a
    # channel whose delivery can be proven: the fallback order's next, e-mail.
    assert sent[("first_reminder", "wechat")] == 1
    assert sent[("first_reminder", "email")] == 1


async def test_a_bounce_reported_at_night_falls_back_in_the_morning(time_skipping_env,
                                                                    sample):
    # The first reminder went at 10:00 on Monday 2026-11-23; the SMS provider reports at
    # 22:00 that it never arrived. The formal demand's fallback (e-mail, the next channel
    # whose delivery can be proven) waits for 08:00; the journey answers meanwhile.
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        await time_skipping_env.sleep(timedelta(days=2, hours=14))  # 2026-11-23 22:00
        sms = next(m for m in sender.sent if m.channel is Channel.SMS)
        await handle.signal("delivery_failed", DeliveryFailed(
            notification_id=sms.notification_id, channel=Channel.SMS, error_code="30005",
            permanent=True))
        await time_skipping_env.sleep(timedelta(hours=1))
        night = await handle.query(PolicyLapseWorkflow.status)
        await time_skipping_env.sleep(timedelta(hours=10))  # 2026-11-24 09:00
        morning = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "fell_back_after_quiet_hours")
        await handle.terminate("test done")
    def emails(status: JourneyStatus) -> list[str]:
        return [f"{n.at.astimezone(TZ):%Y-%m-%d %H:%M}" for n in status.notifications
                if n.milestone == "first_reminder" and n.channel is Channel.EMAIL]

    assert emails(night) == []
    assert emails(morning) == ["2026-11-24 08:00"]
    assert morning.next_milestone.name == "second_reminder"


async def test_the_emergency_contact_is_not_texted_at_night(time_skipping_env, sample,
                                                            monkeypatch):
    # With the default hours a night's fallback waits for the morning and reaches the
    # unreachable handling in daytime. Here only the SMS keeps its hours (configuration:
    # every other channel may go until 23:59), for a customer with a mobile only. The
    # first reminder reached them by SMS; at 22:00 the SMS is reported undeliverable and
    # the number is gone: every other channel fails at once, so the customer is
    # unreachable then (the repair task), but the emergency contact is texted at 08:00.
    always = SendWindow(start=time(0, 0), end=time(23, 59))
    monkeypatch.setattr(journey_activities, "_COMPANY", CompanyRules(send_windows={
        **{c: always for c in CompanyRules().send_windows},
        Channel.SMS: SendWindow(start=time(8, 0), end=time(21, 0))}))
    policy = "P2026000009"
    mobile = await holder_mobile(sample, policy)
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, policy, at("2026-11-18 08:00"))
        await time_skipping_env.sleep(timedelta(hours=14))  # 2026-11-18 22:00
        sms = next(m for m in sender.sent if m.channel is Channel.SMS)
        sender.permanent.add(mobile)
        await handle.signal("delivery_failed", DeliveryFailed(
            notification_id=sms.notification_id, channel=Channel.SMS, error_code="30005",
            permanent=True))
        await time_skipping_env.sleep(timedelta(hours=1))
        night = await handle.query(PolicyLapseWorkflow.status)
        texted_at_night = [m for m in sender.sent if "emergency" in m.notification_id]
        await time_skipping_env.sleep(timedelta(hours=10))  # 2026-11-19 09:00
        morning = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "emergency_after_quiet_hours")
        await handle.terminate("test done")
    assert "unreachable" in [s.value for s in night.segments]
    assert await sample.fetchval("SELECT count(*) FROM agent_tasks WHERE policy_number = $1 "
                                 "AND kind = 'contact_repair'", policy) == 1
    assert texted_at_night == []
    emergency = [(n.channel, f"{n.at.astimezone(TZ):%Y-%m-%d %H:%M}")
                 for n in morning.notifications if "emergency" in n.milestone]
    assert emergency == [(Channel.SMS, "2026-11-19 08:00")]


async def test_compressed_time_runs_months_in_seconds_with_real_dates(dev_env, sample):
    async with journey_worker(dev_env.client, sample, ProviderDouble()) as journeys:
        handle = await begin_journey(journeys, sample, "P2026000004", at("2026-11-19 08:00"),
                                     10_000_000)
        result = await handle.result()
    assert result.outcome is Outcome.NOT_RENEWED
    # Dates stay the journey's calendar dates: the offer goes out on 2027-01-19.
    last = result.notifications[-1]
    assert (last.milestone, f"{last.at.astimezone(TZ):%Y-%m-%d %H:%M}") == (
        "reenrolment_offer_1", "2027-01-19 10:00")
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(sa.LAPSE_STAGE) == "closed"
    assert desc.typed_search_attributes.get(sa.POLICY_NUMBER) == "P2026000004"


async def test_a_long_history_continues_as_new_with_its_state(time_skipping_env, sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        async with sample.acquire() as conn:
            bundle = await store.load_policy(conn, STANDARD, with_members=False)
        trigger = detect_trigger(bundle.policy, bundle.product, at("2026-11-21 08:00").date())
        handle = await time_skipping_env.client.start_workflow(
            PolicyLapseWorkflow.run,
            JourneyInput(trigger=trigger, journey_start=at("2026-11-21 08:00"),
                         continue_as_new_after=50),
            id=workflow_id(STANDARD), task_queue=journeys.task_queue)
        await handle.signal("payment_received", pay("100.00", "T-C1"))
        result = await handle.result()
        first = time_skipping_env.client.get_workflow_handle(
            workflow_id(STANDARD), run_id=handle.first_execution_run_id)
        first_history = await first.fetch_history()
    continued = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert first_history.events[-1].event_type == continued
    assert result.outcome is Outcome.FOLLOW_UP_ENDED
    assert result.amount_paid == Decimal("100.00")  # carried over every continue-as-new
    assert sender.count() == NEVER_PAID
