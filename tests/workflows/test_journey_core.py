"""The journey under hostile input (issue 10) and the data check before the first message
(issue 16.1), on the time-skipping server with the real activities and PostgreSQL."""

from __future__ import annotations

import ast
import json
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import contract as sa
from activities.journey import JourneyActivities
from activities.scan import scan_policies
from domain.ids import JourneyId
from domain.journey import (
    DataVerified,
    DeliveryFailed,
    InquiryKind,
    InquiryReceived,
    Outcome,
    Payment,
    Stage,
    StageChange,
    VerificationOutcome,
)
from domain.models import Channel, TriggerKind
from domain.plan import TZ
from infra import agent_tasks, journey_records, tasks
from infra.journeys import Journeys, PaymentRefused, PaymentSystem
from tests.channel_helpers import attempt_env, eventually
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
OTHER = "P2026000002"
GROUP = "P2026000007"  # a group policy with members
HELD = "P2026009001"
# The ID number says born 1985-03-12; the record says 1985-03-13: someone typed one wrong.
HELD_LINES = [
    json.dumps({"record": "customer", "customer_id": "C9001", "name": "赵敏",
                "birth_date": "1985-03-13", "gender": "F", "id_number": "11010119850312101X",
                "mobile": "+8613800009001", "email": "c9001@example.com",
                "wechat_openid": "oSandbox009001"}, ensure_ascii=False),
    json.dumps({"record": "policy", "policy_number": HELD, "product_code": "LT-WL01",
                "policyholder_id": "C9001", "effective_date": "2020-01-01",
                "premium": "3600.00", "due_date": "2026-11-20",
                "payment_method": {"kind": "manual"},
                "dues": [{"due_date": "2026-11-20", "amount": "3600.00", "paid_amount": "0"}]},
               ensure_ascii=False),
]


def pay(amount: str, txn: str | None = None) -> Payment:
    return Payment(transaction_id=txn or f"T{uuid.uuid4().hex[:10]}", amount=Decimal(amount),
                   currency="CNY", paid_at=at("2026-11-25 12:00"))


@pytest.fixture
async def sample(pool):
    await load_sample(pool, HELD_LINES)
    return pool


async def test_another_policys_transaction_is_refused_with_and_without_a_journey(
        time_skipping_env, sample):
    payments = PaymentSystem(Journeys(time_skipping_env.client, "unused"), sample)
    taken = pay("3600.00", "T-SHARED")
    # No journey runs for OTHER: stored there, for the whole amount.
    first = await payments.payment_received(OTHER, taken)
    assert first.outcome == "recorded_without_journey"
    with pytest.raises(PaymentRefused, match="another policy"):
        await payments.payment_received(STANDARD, taken)  # no journey either
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        payments = PaymentSystem(journeys, sample)
        with pytest.raises(PaymentRefused, match="another policy"):
            await payments.payment_received(STANDARD, taken)
        status = await handle.query(PolicyLapseWorkflow.status)
        assert (status.stage, status.amount_paid) == (Stage.AT_RISK, Decimal("0"))
        await handle.terminate("test done")
    assert await sample.fetchval("SELECT policy_number FROM payments "
                                 "WHERE transaction_id = 'T-SHARED'") == OTHER
    assert (await sent_records(sample, STANDARD))[("payment_confirmation", "sms")] == 0


async def test_without_a_journey_the_answer_is_what_the_ledger_says_is_owed(
        time_skipping_env, sample):
    # A policy whose file lists no dues owes its premium: a part-payment leaves the rest.
    await load_sample(sample, [*HELD_LINES, json.dumps({
        "record": "policy", "policy_number": "P2026009002", "product_code": "LT-WL01",
        "policyholder_id": "C0001", "effective_date": "2020-11-20", "premium": "3600.00",
        "due_date": "2026-11-20", "payment_method": {"kind": "manual"}})])
    payments = PaymentSystem(Journeys(time_skipping_env.client, "unused"), sample)
    first = await payments.payment_received("P2026009002", pay("1000.00", "T-ND1"))
    assert (first.journey_running, first.outcome, first.outstanding) == (
        False, "recorded_without_journey", Decimal("2600.00"))
    again = await payments.payment_received("P2026009002", pay("1000.00", "T-ND1"))
    assert (again.outcome, again.outstanding) == ("duplicate", Decimal("2600.00"))
    rest = await payments.payment_received("P2026009002", pay("2600.00", "T-ND2"))
    assert rest.outstanding == Decimal("0")


async def test_a_crafted_failure_never_sends_another_customers_details(time_skipping_env,
                                                                         sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, GROUP, at("2026-11-17 08:00"))
        await time_skipping_env.sleep(timedelta(days=3))  # after the first reminder
        journey = JourneyId.of(handle.id, handle.first_execution_run_id)
        before = len(sender.sent)
        # C0001 is STANDARD's policyholder, not a member of the group policy.
        for recipient in ("C0001", "C0002"):
            await handle.signal("delivery_failed", DeliveryFailed(
                notification_id=f"{journey}/first_reminder/wecom/{recipient}",
                channel=Channel.WECOM, error_code="30005", permanent=True))
        await time_skipping_env.sleep(timedelta(hours=1))
        status = await handle.query(PolicyLapseWorkflow.status)
        await handle.terminate("test done")
    assert status.stage is Stage.AT_RISK
    strangers = [m for m in sender.sent[before:] if m.recipient_id in ("C0001", "C0002")]
    assert strangers == []


async def test_two_journeys_of_one_policy_have_their_own_records(dev_env, sample):
    """Within a minute, UUIDv7 run ids share their first characters: the journey id keeps
    the whole run id, so the second journey's first reminder is its own and goes out."""
    sender = ProviderDouble()

    async def first_reminder_sent(journey_id: str):
        return await sample.fetchval(
            "SELECT true FROM notifications WHERE journey_id = $1 AND status = 'sent' "
            "AND milestone = 'first_reminder' AND channel = 'sms'", journey_id)

    async with journey_worker(dev_env.client, sample, sender) as journeys:
        ids = []
        for _ in range(2):
            handle = await start_journey(journeys, sample, STANDARD, at("2026-11-23 10:00"))
            ids.append(str(JourneyId.of(handle.id, handle.first_execution_run_id)))
            assert await eventually(lambda: first_reminder_sent(ids[-1]), 60)
            await handle.terminate("next journey")
    assert ids[0] != ids[1]


def test_the_workflow_never_reads_templates():
    source = Path(__file__).resolve().parents[2] / "workflows" / "policy_lapse.py"
    imported = {node.module for node in ast.walk(ast.parse(source.read_text()))
                if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m and m.startswith("domain.content")}


async def test_closing_a_journey_cancels_its_open_tasks(time_skipping_env, sample):
    async with journey_worker(time_skipping_env.client, sample, ProviderDouble()) as journeys:
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-23 08:00"))
        await handle.signal("inquiry_received", InquiryReceived(
            inquiry_id="Q-OPEN", kind=InquiryKind.QUESTION, received_at=at("2026-11-23 09:00")))
        await time_skipping_env.sleep(timedelta(days=2))  # unanswered for a business day
        async with sample.acquire() as conn:
            open_before = await agent_tasks.list_tasks(conn, policy_number=STANDARD)
        await handle.signal("payment_received", pay("3600.00"))
        result = await handle.result()
    assert result.outcome is Outcome.PAID
    assert {t.kind for t in open_before} == {"inquiry_escalation"}
    async with sample.acquire() as conn:
        assert await agent_tasks.list_tasks(conn, policy_number=STANDARD) == []
        cancelled = await agent_tasks.list_tasks(conn, status="cancelled", policy_number=STANDARD)
        assert {t.task_id for t in cancelled} == {t.task_id for t in open_before}
        assert all(t.closed_reason == "journey closed: paid" for t in cancelled)
        with pytest.raises(agent_tasks.TaskError, match="cancelled: journey closed: paid"):
            await tasks.take_task(conn, open_before[0].task_id, "agent.li")


async def _held(env, journeys, sample, sender):
    handle = await start_journey(journeys, sample, HELD, at("2026-11-23 08:00"))
    await env.sleep(timedelta(days=2))
    status = await handle.query(PolicyLapseWorkflow.status)
    assert status.stage is Stage.HELD
    assert status.held_rules == ["id_number_birth_date"]
    assert [m for m in sender.sent if m.policy_number == HELD] == []
    async with sample.acquire() as conn:
        [task] = await agent_tasks.list_tasks(conn, policy_number=HELD)
    return handle, task


async def test_a_journey_with_wrong_data_is_held_until_verified(time_skipping_env, sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle, task = await _held(time_skipping_env, journeys, sample, sender)
        assert (task.kind, task.rules) == ("data_verification", ["id_number_birth_date"])
        # Past the hold's deadline (1 business day) it escalates to the top priority.
        assert task.priority == 1
        async with sample.acquire() as conn:
            await conn.execute("UPDATE customers SET birth_date = '1985-03-12' "
                               "WHERE customer_id = 'C9001'")
        await handle.signal("data_verified", DataVerified(
            verified_by="ops.wang", verified_at=at("2026-11-25 10:00"),
            outcome=VerificationOutcome.PROCEED))
        await time_skipping_env.sleep(timedelta(hours=1))
        status = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "held_then_verified")
        await handle.terminate("test done")
    assert status.stage is Stage.AT_RISK
    sent = await sent_records(sample, HELD)
    assert sent[("first_reminder", "sms")] == 1  # what fell due while held goes out now
    async with sample.acquire() as conn:
        assert await agent_tasks.list_tasks(conn, policy_number=HELD) == []  # settled by the signal


async def test_a_journey_verified_at_night_sends_what_fell_due_in_the_morning(
        time_skipping_env, sample):
    # Operations verify the data at 22:00: the first reminder that fell due while held
    # is caught up then, in the SMS's and WeChat's quiet hours, so it goes at 08:00 (as
    # would a milestone a worker down all day catches up at night).
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle, _ = await _held(time_skipping_env, journeys, sample, sender)
        async with sample.acquire() as conn:
            await conn.execute("UPDATE customers SET birth_date = '1985-03-12' "
                               "WHERE customer_id = 'C9001'")
        await time_skipping_env.sleep(timedelta(hours=14))  # 2026-11-25 22:00
        await handle.signal("data_verified", DataVerified(
            verified_by="ops.wang", verified_at=at("2026-11-25 22:00"),
            outcome=VerificationOutcome.PROCEED))
        await time_skipping_env.sleep(timedelta(hours=1))
        night = await handle.query(PolicyLapseWorkflow.status)
        sent_at_night = [m for m in sender.sent if m.policy_number == HELD]
        await time_skipping_env.sleep(timedelta(hours=10))  # 2026-11-26 09:00
        morning = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "verified_at_night")
        await handle.terminate("test done")
    assert (night.stage, night.next_milestone.name, sent_at_night) == (
        Stage.AT_RISK, "first_reminder", [])
    first = [(n.channel.value, f"{n.at.astimezone(TZ):%Y-%m-%d %H:%M}")
             for n in morning.notifications if n.milestone == "first_reminder"]
    assert sorted(first) == [("sms", "2026-11-26 08:00"), ("wechat", "2026-11-26 08:00")]


async def test_a_held_journey_cancelled_sends_nothing(time_skipping_env, sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        handle, task = await _held(time_skipping_env, journeys, sample, sender)
        done = await tasks.complete_task(sample, journeys, task.task_id, "cancel", "ops.wang")
        assert done.signal == "data_verified"
        result = await handle.result()
    assert result.outcome is Outcome.CANCELLED
    assert [m for m in sender.sent if m.policy_number == HELD] == []


async def test_a_journey_the_scan_planned_with_wrong_data_starts_held(time_skipping_env,
                                                                       sample):
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, sample, sender) as journeys:
        scanned = await scan_policies(sample, journeys, date(2026, 11, 23),
                                      journey_start=at("2026-11-23 08:00"),
                                      policy_numbers=[HELD])
        assert scanned.started == {"premium_overdue": 1}
        desc = await journeys.handle(HELD).describe()
        assert desc.typed_search_attributes.get(sa.LAPSE_STAGE) == "held"
        await time_skipping_env.sleep(timedelta(days=2))
        status = await journeys.status(HELD)
        async with sample.acquire() as conn:
            [task] = await agent_tasks.list_tasks(conn, policy_number=HELD)
        await keep_history(journeys.handle(HELD), "held_planned")
        await journeys.handle(HELD).terminate("test done")
    assert (status.stage, status.held_rules) == (Stage.HELD, ["id_number_birth_date"])
    assert (task.kind, task.rules) == ("data_verification", ["id_number_birth_date"])
    assert [m for m in sender.sent if m.policy_number == HELD] == []
    assert await sample.fetchval("SELECT stage FROM journeys WHERE policy_number = $1",
                                 HELD) == "held"


async def test_a_stage_change_writes_the_journeys_row_its_starter_has_not_yet(sample):
    # The scan writes a planned journey's row right after the start; the journey may get
    # to its first stage change before that (a hold), or the scan may die in between.
    journey = f"lapse-{HELD}@0190f3c4-aaaa-7bbb-8ccc-000000000001"
    change = StageChange(journey_id=journey, policy_number=HELD, stage=Stage.HELD,
                         at=at("2026-11-23 08:00"), trigger=TriggerKind.PREMIUM_OVERDUE,
                         started_at=at("2026-11-23 08:00"))
    await attempt_env().run(JourneyActivities(sample, {}).change_stage, change)
    row = await sample.fetchrow("SELECT trigger, started_at, stage FROM journeys "
                                "WHERE journey_id = $1", journey)
    assert dict(row) == {"trigger": "premium_overdue", "started_at": at("2026-11-23 08:00"),
                         "stage": "held"}
    # The starter's row, written late, changes nothing.
    async with sample.acquire() as conn:
        await journey_records.start_journey(conn, journey, HELD, "premium_overdue",
                                            at("2026-11-23 08:00"))
    assert await sample.fetchval("SELECT stage FROM journeys WHERE journey_id = $1",
                                 journey) == "held"


ELDERLY = "P2026000006"  # the policyholder is 76: calls, paper letters


async def _until_sent(env, sender, key: str, channel: Channel,
                      within: timedelta = timedelta(days=80),
                      step: timedelta = timedelta(hours=6)):
    for _ in range(int(within / step)):
        found = [m for m in sender.sent if m.channel is channel
                 and m.notification_id.split("/")[1] == key]
        if found:
            return found[-1]
        await env.sleep(step)
    raise AssertionError(f"{key} never went out by {channel}")


async def test_an_unanswered_call_is_redialled_then_an_elderly_customer_gets_a_visit(
        time_skipping_env, sample):
    sender = ProviderDouble()
    env = time_skipping_env
    async with journey_worker(env.client, sample, sender) as journeys:
        handle = await start_journey(journeys, sample, ELDERLY, at("2026-11-11 08:00"))
        call = await _until_sent(env, sender, "second_reminder", Channel.VOICE)
        dialled = [call]
        for attempt in range(1, 7):
            await handle.signal("delivery_failed", DeliveryFailed(
                notification_id=dialled[-1].notification_id, channel=Channel.VOICE,
                error_code="no-answer", permanent=True))
            if attempt == 6:
                break
            dialled.append(await _until_sent(env, sender, f"second_reminder-redial:{attempt}",
                                             Channel.VOICE, timedelta(hours=2),
                                             timedelta(minutes=10)))
        await env.sleep(timedelta(hours=2))
        status = await handle.query(PolicyLapseWorkflow.status)
        await keep_history(handle, "redialled")
        await handle.terminate("test done")
    times = [r["created_at"] for r in await sample.fetch(
        "SELECT created_at FROM notifications WHERE policy_number = $1 AND channel = 'voice' "
        "AND milestone LIKE 'second_reminder%' ORDER BY created_at", ELDERLY)]
    assert len(times) == 6  # the first call and five redials: six dial attempts in a day
    assert all(b - a >= timedelta(minutes=30) for a, b in zip(times, times[1:], strict=False))
    assert len({t.date() for t in times}) == 1
    assert status.stage is Stage.AT_RISK
    async with sample.acquire() as conn:
        visits = await agent_tasks.list_tasks(conn, kind="home_visit", policy_number=ELDERLY)
        branch = await conn.fetchval("SELECT branch_code FROM agent_tasks WHERE kind = "
                                     "'home_visit' AND policy_number = $1", ELDERLY)
    assert len(visits) == 1 and branch


async def test_a_stored_row_that_no_longer_validates_never_shows_its_values(sample):
    from infra import store

    async with sample.acquire() as conn:
        await conn.execute("UPDATE customers SET mobile = '13800000002' "
                           "WHERE customer_id = 'C0002'")
        with pytest.raises(store.StoredRecordInvalid) as err:
            await store.load_policy(conn, OTHER, with_members=False)
    assert "customer C0002" in str(err.value) and "mobile" in str(err.value)
    assert "13800000002" not in str(err.value)
