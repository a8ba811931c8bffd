"""Issue 10 points 5 and 6: no input freezes a journey. A genuine bounce on a follow-up, a
signal with two payloads or none or one that does not validate, and a malformed update all
leave the journey answering: no workflow task fails, payments are still answered and
`status` still answers.

Real parts: the time-skipping server, the embedded PostgreSQL, the worker with the real
Twilio/SendGrid/WeChat clients and the sandbox providers (whose delivery callbacks signal
the journey, as in production), the codec data converter. Payloads go through the client's
raw API, as `temporal workflow signal --input ...` sends them.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowUpdateFailedError

import sandbox as sb
from domain.journey import Payment, PaymentAnswer, Stage
from tests.channel_helpers import eventually, journeys_with_sandbox
from tests.hostile_helpers import (
    FROZEN,
    MALFORMED,
    SIGNALS,
    UPDATE,
    accepted_updates,
    freeze_watch,
    fresh_policy,
    malformed_args,
    task_failures,
    terminate,
    valid_payload,
)
from tests.journey_helpers import at, load_sample, start_journey
from workflows.policy_lapse import PolicyLapseWorkflow

STANDARD = "P2026000001"  # long-term, due 2026-11-20, ¥3,600.00, lapses 2027-01-20
START = "2026-11-21 08:00"


def pay(amount: str) -> Payment:
    return Payment(transaction_id=f"T{uuid.uuid4().hex[:10]}", amount=Decimal(amount),
                   currency="CNY", paid_at=at("2027-03-03 12:00"))


async def _failures(watch, handle) -> list[str]:
    """Why workflow tasks failed: the history's WorkflowTaskFailed events, and what the
    worker reported for a task whose failure a termination overtook."""
    return sorted(set(await task_failures(handle) + watch.reasons.get(handle.id, [])))


async def test_a_bounce_on_a_follow_up_leaves_the_journey_answering(time_skipping_env, pool):
    lines, policy, person = fresh_policy(STANDARD, 1)
    await load_sample(pool, lines)
    # Every SMS to the customer is accepted and then reported undelivered (30003), every
    # e-mail bounces: each milestone falls back, and so do its fallbacks.
    faults = [sb.Fault(fault="undelivered", api="sms", match=person.mobile),
              sb.Fault(fault="bounce", api="email", match=person.email)]
    env = time_skipping_env
    with freeze_watch() as watch:
        async with journeys_with_sandbox(env, pool, faults) as (journeys, stack):
            handle = await start_journey(journeys, pool, policy, at(START))
            # To journey time 2027-03-03: both reminders, the lapse notice, follow-up 1 (02-22).
            for days in (3, 45, 20, 30, 4):
                if await watch.guard(handle, env.sleep(timedelta(days=days))) is FROZEN:
                    break
                await stack.sandbox.settle()  # the failure reports reach the journey

            async def follow_up_failed_twice() -> bool:
                # follow_up_1 by SMS undelivered, then its fallback bounced (or the journey
                # froze on the first report).
                n = await pool.fetchval(
                    "SELECT count(*) FROM notifications WHERE policy_number = $1 AND "
                    "milestone LIKE 'follow_up_1%' AND status IN ('failed', 'bounced')", policy)
                return n >= 2 or watch.frozen(handle.id)

            await eventually(follow_up_failed_twice)
            await stack.sandbox.settle()
            answer = status = FROZEN
            if await watch.guard(handle, env.sleep(timedelta(hours=1))) is not FROZEN:
                answer = await watch.guard(handle, handle.execute_update(
                    "record_payment", pay("3600.00"), result_type=PaymentAnswer))
            if answer is not FROZEN:
                status = await watch.guard(handle, handle.query(PolicyLapseWorkflow.status))
            failures = await _failures(watch, handle)
            await terminate(handle, "test done")
    assert failures == []
    assert answer is not FROZEN, "the payment was never answered: the journey froze"
    assert (answer.accepted, answer.outcome) == (True, "after_lapse")
    assert status.stage is Stage.LAPSED
    assert status.amount_paid == Decimal("3600.00")


@pytest.mark.parametrize("kind", ["two_payloads", "no_payload", "null", "wrong_type",
                                  "missing_field"])
async def test_a_malformed_signal_leaves_the_journey_answering(time_skipping_env, pool, kind):
    """Every signal name of CONTRACT.md (data_verified included), each on its own journey."""
    made = [fresh_policy(STANDARD, i) for i in range(1, len(SIGNALS) + 1)]
    await load_sample(pool, [line for lines, _, _ in made for line in lines])
    frozen: dict[str, list[str]] = {}
    unanswered: list[str] = []
    with freeze_watch() as watch:
        async with journeys_with_sandbox(time_skipping_env, pool) as (journeys, _):
            for name, (_, policy, _) in zip(SIGNALS, made, strict=True):
                handle = await start_journey(journeys, pool, policy, at(START))
                args = malformed_args(kind, valid_payload(name, at(START)))
                await handle.signal(name, args=args)
                # The update comes after the signal in history: answered only if the signal
                # left the journey working.
                answer = await watch.guard(handle, handle.execute_update(
                    "record_payment", pay("100.00"), result_type=PaymentAnswer))
                status = FROZEN
                if answer is not FROZEN:
                    status = await watch.guard(handle, handle.query(PolicyLapseWorkflow.status))
                failures = await _failures(watch, handle)
                if failures:
                    frozen[name] = failures
                if answer is FROZEN or status is FROZEN or status.amount_paid != Decimal("100"):
                    unanswered.append(name)
                await terminate(handle, "test done")
    assert frozen == {}
    assert unanswered == []


async def test_a_malformed_update_is_rejected_before_history(time_skipping_env, pool):
    lines, policy, _ = fresh_policy(STANDARD, 1)
    await load_sample(pool, lines)
    broken = {kind: malformed_args(kind, valid_payload(UPDATE, at(START))) for kind in MALFORMED}
    # Well-formed but refused by the rules: the validator's own reasons.
    broken["negative_amount"] = [valid_payload(UPDATE, at(START), amount="-5.00")]
    broken["wrong_currency"] = [valid_payload(UPDATE, at(START)) | {"currency": "USD"}]
    outcomes = {}
    with freeze_watch() as watch:
        async with journeys_with_sandbox(time_skipping_env, pool) as (journeys, _):
            handle = await start_journey(journeys, pool, policy, at(START))
            for kind, args in broken.items():
                try:
                    got = await watch.guard(handle, handle.execute_update(UPDATE, args=args))
                    outcomes[kind] = "frozen" if got is FROZEN else "answered"
                except WorkflowUpdateFailedError:
                    outcomes[kind] = "rejected"
                if outcomes[kind] == "frozen":
                    break
            answer = status = FROZEN
            if not watch.frozen(handle.id):
                answer = await watch.guard(handle, handle.execute_update(
                    "record_payment", pay("100.00"), result_type=PaymentAnswer))
                status = await watch.guard(handle, handle.query(PolicyLapseWorkflow.status))
            accepted = await accepted_updates(handle)
            failures = await _failures(watch, handle)
            await terminate(handle, "test done")
    assert outcomes == dict.fromkeys(broken, "rejected")
    assert failures == []
    assert accepted == 1  # only the valid payment entered history
    assert answer is not FROZEN and (answer.accepted, answer.outcome) == (True, "recorded")
    assert status is not FROZEN and status.amount_paid == Decimal("100.00")
