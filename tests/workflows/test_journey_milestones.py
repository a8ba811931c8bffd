"""A milestone is one activity (issue 14): the policy re-read and every channel sent in one
go, each channel on its own record; and a payment is answered whatever the milestone in
flight is waiting for. On the Temporal servers with the real activities and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from activities.channels import Outgoing, PermanentSendError
from domain.journey import Outcome, Payment, PaymentAnswer, Stage
from domain.journey_rules import recheck_outcome
from domain.models import PolicyStatus
from infra.journeys import PaymentSystem
from tests.journey_helpers import (
    ProviderDouble,
    at,
    journey_worker,
    keep_history,
    load_sample,
    sent_records,
    start_journey,
)
from workflows.policy_lapse import PolicyLapseWorkflow

STANDARD = "P2026000001"  # long-term, due 2026-11-20, ¥3,600.00, every channel known


@pytest.fixture
async def sample(pool):
    await load_sample(pool)
    return pool


def pay(amount: str) -> Payment:
    return Payment(transaction_id=f"T{uuid.uuid4().hex[:10]}", amount=Decimal(amount),
                   currency="CNY", paid_at=at("2026-11-25 12:00"))


@pytest.mark.parametrize(("stage", "status", "owed", "outcome"), [
    (Stage.AT_RISK, PolicyStatus.IN_FORCE, "3600.00", None),
    (Stage.AT_RISK, PolicyStatus.IN_FORCE, "0", Outcome.PAID),
    (Stage.AT_RISK, PolicyStatus.TERMINATED, "3600.00", Outcome.CANCELLED),
    (Stage.AT_RISK, PolicyStatus.RESCINDED, "3600.00", Outcome.CANCELLED),
    (Stage.LAPSED, PolicyStatus.LAPSED, "3600.00", None),
    (Stage.LAPSED, PolicyStatus.IN_FORCE, "0", Outcome.REINSTATED),
    (Stage.REINSTATING, PolicyStatus.IN_FORCE, "0", Outcome.REINSTATED),
])
def test_what_the_policy_as_stored_does_to_a_journey(stage, status, owed, outcome):
    assert recheck_outcome(stage, status, Decimal(owed)) is outcome


async def _changed_after_the_first_reminder(env, sample, change: str):
    """The journey run to its end, `change` (SQL on STANDARD, $1) made to the company's
    records once the first reminder is out: its result and its history."""
    async with journey_worker(env.client, sample, ProviderDouble()) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        while True:
            status = await handle.query(PolicyLapseWorkflow.status)
            if status.next_milestone and status.next_milestone.name == "second_reminder":
                break
            await env.sleep(60)
        await sample.execute(change, STANDARD)
        return await handle.result(), await handle.fetch_history()


async def test_a_premium_paid_through_another_route_ends_the_journey_before_it_sends(
        time_skipping_env, sample):
    # The counter settles the premium: the ledger says nothing is owed any more.
    result, history = await _changed_after_the_first_reminder(
        time_skipping_env, sample,
        "UPDATE premium_dues SET paid_amount = amount WHERE policy_number = $1")
    assert result.outcome is Outcome.PAID
    sent = await sent_records(sample, STANDARD)
    assert not any(m == "second_reminder" for m, _ in sent)
    # The route that took the premium confirms it; the journey does not know the amount.
    assert not any(m == "payment_confirmation" for m, _ in sent)
    # The re-check is the milestone's own activity: there is no other.
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name
                 for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert "check_policy" not in scheduled
    assert scheduled.count("send_milestone") == 2  # the first reminder, the second's check


async def test_what_the_ledger_says_is_owed_decides_the_journey(time_skipping_env, sample):
    """The insurer's file records part of the premium paid at the counter mid-journey:
    the next reminder asks for the rest, and the customer who pays it is paid in full.
    Before, the journey counted only its own payments: it went on asking for ¥3,600.00,
    and took ¥2,600.00 as a partial payment with ¥1,000.00 still to pay."""
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        while (await handle.query(PolicyLapseWorkflow.status)).next_milestone.name \
                != "second_reminder":
            await time_skipping_env.sleep(60)
        await sample.execute("UPDATE premium_dues SET paid_amount = 1000.00 "
                             "WHERE policy_number = $1", STANDARD)
        before = await handle.query(PolicyLapseWorkflow.status)
        await time_skipping_env.sleep(before.next_milestone.at - before.journey_now
                                      + timedelta(hours=1))
        status = await handle.query(PolicyLapseWorkflow.status)
        answer = await handle.execute_update("record_payment", pay("2600.00"),
                                             result_type=PaymentAnswer)
        result = await handle.result()
    assert status.outstanding == Decimal("2600.00")
    # The second reminder is a call: it says the amount the ledger gave its re-check.
    [call] = [m.body for m in sender.sent if "/second_reminder/" in m.notification_id]
    assert "本期保费两千六百元" in call and "三千六百" not in call
    assert (answer.outcome, answer.outstanding) == ("paid_in_full", Decimal("0"))
    assert result.outcome is Outcome.PAID


async def test_a_policy_terminated_meanwhile_is_cancelled_and_sent_nothing_more(
        time_skipping_env, sample):
    result, _ = await _changed_after_the_first_reminder(
        time_skipping_env, sample,
        "UPDATE policies SET status = 'terminated' WHERE policy_number = $1")
    assert result.outcome is Outcome.CANCELLED
    assert {m for m, _ in await sent_records(sample, STANDARD)} == {"first_reminder"}


class NeverAnswers(ProviderDouble):
    """A provider that keeps every request waiting until released: a send in flight for as
    long as the test wants."""

    def __init__(self, then_refuse: bool = False) -> None:
        super().__init__()
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()
        self.then_refuse = then_refuse

    async def send(self, message: Outgoing) -> str:
        self.waiting.set()
        await self.release.wait()
        if self.then_refuse:
            raise PermanentSendError("21211", "invalid number")
        return await super().send(message)


async def test_a_payment_is_answered_while_the_milestone_waits_for_its_provider(
        dev_env, sample):
    provider = NeverAnswers()
    async with journey_worker(dev_env.client, sample, provider) as journeys:
        # The first reminder is due at once (Monday, inside every channel's window).
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-23 10:00"))
        await provider.waiting.wait()  # the first reminder is with the provider
        # Bounded so that a payment stuck behind the send fails the test instead of hanging
        # it; with the send holding the journey, the answer never comes while it waits.
        answer = await asyncio.wait_for(handle.execute_update(
            "record_payment", pay("3600.00"), result_type=PaymentAnswer), timeout=60)
        status = await handle.query(PolicyLapseWorkflow.status)
        assert not provider.release.is_set()
        provider.release.set()
        result = await handle.result()
    assert (answer.outcome, answer.outstanding) == ("paid_in_full", Decimal("0"))
    assert status.stage is Stage.CLOSED
    assert result.outcome is Outcome.PAID
    sent = await sent_records(sample, STANDARD)
    assert sent[("payment_confirmation", "sms")] == 1


async def test_what_failed_while_the_customer_paid_does_not_fall_back(dev_env, sample):
    # The first reminder waits on its providers, the customer pays meanwhile, then every
    # channel refuses it: nothing more goes out for a premium already paid.
    provider = NeverAnswers(then_refuse=True)
    async with journey_worker(dev_env.client, sample, provider) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-23 10:00"))
        await provider.waiting.wait()
        answer = await asyncio.wait_for(handle.execute_update(
            "record_payment", pay("3600.00"), result_type=PaymentAnswer), timeout=60)
        provider.release.set()
        result = await handle.result()
    assert answer.outcome == "paid_in_full" and result.outcome is Outcome.PAID
    channels = {r["channel"] for r in await sample.fetch(
        "SELECT channel FROM notifications WHERE policy_number = $1 "
        "AND milestone = 'first_reminder'", STANDARD)}
    assert channels == {"sms", "wechat"}  # the slot's own channels, no fallback after them


class LoseFirstPaymentAnswer(ActivityInboundInterceptor):
    """The worker dies after the payment's transaction committed and before Temporal heard
    the activity's answer (simulated: a real worker crash cannot be timed to that instant
    here): the first attempt stores the payment, then fails; Temporal retries it."""

    async def execute_activity(self, input: ExecuteActivityInput):
        result = await super().execute_activity(input)
        info = activity.info()
        if info.activity_type == "record_payment" and info.attempt == 1:
            raise ApplicationError("the worker died before it answered")
        return result


class LosePaymentAnswers(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return LoseFirstPaymentAnswer(next)


async def test_a_payment_whose_first_answer_was_lost_still_closes_the_journey(dev_env, sample):
    # Today's bug: the retry found its own row, answered "duplicate", and the journey went
    # on reminding a customer who had paid in full.
    async with journey_worker(dev_env.client, sample, ProviderDouble(),
                              interceptors=[LosePaymentAnswers()]) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-23 10:00"))
        payment = pay("3600.00")
        answer = await asyncio.wait_for(handle.execute_update(
            "record_payment", payment, result_type=PaymentAnswer), timeout=60)
        assert (answer.outcome, answer.outstanding) == ("paid_in_full", Decimal("0"))
        result = await handle.result()
    assert result.outcome is Outcome.PAID
    stored = await sample.fetch("SELECT amount FROM payments WHERE policy_number = $1",
                                STANDARD)
    assert [r["amount"] for r in stored] == [Decimal("3600.00")]
    sent = await sent_records(sample, STANDARD)
    assert sent[("payment_confirmation", "sms")] == 1


class HeldConfirmation(ProviderDouble):
    """The payment confirmation waits at the provider until released: the journey has
    closed (paid) but its workflow is still running."""

    def __init__(self):
        super().__init__()
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, message: Outgoing) -> str:
        if "/payment_confirmation/" in message.notification_id:
            self.reached.set()
            await self.release.wait()
        return await super().send(message)


async def test_a_payment_to_a_journey_closing_is_stored_not_refused(time_skipping_env, sample):
    # Today's bug: between the close and the workflow's end the update's validator refused
    # it ("the journey is closed"), and the money the bank took was on record nowhere.
    sender = HeldConfirmation()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-23 10:00"))
        payments = PaymentSystem(journeys, sample)
        first = await payments.payment_received(STANDARD, pay("3600.00"))
        assert first.outcome == "paid_in_full"
        await asyncio.wait_for(sender.reached.wait(), timeout=30)
        late = await payments.payment_received(STANDARD, pay("100.00"))
        sender.release.set()
        result = await handle.result()
    assert result.outcome is Outcome.PAID
    assert (late.journey_running, late.accepted, late.outcome) == (
        False, True, "recorded_without_journey")
    stored = await sample.fetch("SELECT amount FROM payments WHERE policy_number = $1 "
                                "ORDER BY amount", STANDARD)
    assert [r["amount"] for r in stored] == [Decimal("100.00"), Decimal("3600.00")]


async def test_a_payment_signalled_to_a_journey_closing_reaches_the_ledger(time_skipping_env,
                                                                           sample):
    # The contract's payment_received signal in the same window was logged "ignored".
    sender = HeldConfirmation()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-23 10:00"))
        await handle.signal("payment_received", pay("3600.00"))
        await asyncio.wait_for(sender.reached.wait(), timeout=30)
        await handle.signal("payment_received", pay("100.00"))
        sender.release.set()
        result = await handle.result()
        await keep_history(handle, "signalled_after_close")
    assert result.outcome is Outcome.PAID
    stored = await sample.fetch("SELECT amount FROM payments WHERE policy_number = $1 "
                                "ORDER BY amount", STANDARD)
    assert [r["amount"] for r in stored] == [Decimal("100.00"), Decimal("3600.00")]
