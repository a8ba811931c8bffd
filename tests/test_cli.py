"""The payment system's client, and what agents run: `lapse pay`, `status`, `list`, `inquiry`."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from commands.listing import visibility_query
from domain.journey import DebitFailedSignal, Payment, Stage
from domain.models import DebitFailureReason
from domain.triggers import detect_trigger
from infra import store
from infra.journeys import PaymentRefused, PaymentSystem
from tests.journey_helpers import ProviderDouble, at, journey_worker, start_journey
from tests.ops_helpers import (
    clean_env,
    eventually,
    load_sample_as,
    run_lapse,
    terminate_journeys,
    unique_prefix,
)

FAST = 20_000  # journey seconds per second: the first reminder comes within a few seconds


def _payment(txn: str, amount: str, when: str = "2026-11-27 11:00") -> Payment:
    return Payment(transaction_id=txn, amount=Decimal(amount), currency="CNY",
                   paid_at=at(when))


async def test_a_payment_without_a_journey_is_recorded_not_refused(dev_env, pool):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-P2026000001"
    payments = PaymentSystem(dev_env.client, pool, "test-no-worker")
    result = await payments.payment_received(number, _payment("T-A1", "1000.00"))
    assert not result.journey_running
    assert result.outcome == "recorded_without_journey"
    assert result.outstanding == Decimal("2600.00")
    again = await payments.payment_received(number, _payment("T-A1", "1000.00"))
    assert again.outcome == "duplicate" and again.outstanding == Decimal("2600.00")
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE policy_number = $1",
                               number) == 1
    with pytest.raises(store.NotFound):
        await payments.payment_received(f"{prefix}-P2026999999", _payment("T-A2", "1.00"))
    with pytest.raises(PaymentRefused):
        await payments.payment_received(number, _payment("T-A3", "-5.00"))
    with pytest.raises(PaymentRefused):
        await payments.payment_received(number, Payment(
            transaction_id="T-A4", amount=Decimal("5.00"), currency="USD",
            paid_at=at("2026-11-27 11:00")))


async def test_a_debit_failure_starts_a_journey_with_signal_with_start(dev_env, pool):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-P2026000001"  # premium overdue, no journey yet
    try:
        async with journey_worker(dev_env.client, pool, ProviderDouble()) as journeys:
            payments = PaymentSystem(dev_env.client, pool, journeys._task_queue)
            failure = DebitFailedSignal(failed_at=at("2026-11-26 09:00"),
                                        amount=Decimal("3600.00"),
                                        reason_code=DebitFailureReason.CARD_EXPIRED,
                                        reason_text="card expired")
            first = await payments.debit_failed(number, failure)
            assert first.journey_started
            status = await eventually(lambda: _status(journeys, number))
            assert status.trigger == "debit_failed"
            later = failure.model_copy(update={"failed_at": at("2026-11-27 09:00")})
            second = await payments.debit_failed(number, later)
            assert not second.journey_started  # signalled the running one
            status = await eventually(
                lambda: _has_failure(journeys, number, at("2026-11-27 09:00")))
            assert status
            assert await pool.fetchval("SELECT count(*) FROM debit_attempts "
                                       "WHERE policy_number = $1 AND NOT succeeded",
                                       number) >= 2
            # A payment to the running journey goes through the validated update.
            paid = await payments.payment_received(number, _payment("T-B1", "3600.00"))
            assert paid.journey_running and paid.outcome == "paid_in_full"
            result = await journeys.handle(number).result()
            assert result.stage is Stage.CLOSED and result.outcome.value == "paid"
    finally:
        await terminate_journeys(dev_env.client, [number])


async def _status(journeys, number):
    try:
        return await journeys.status(number)
    except Exception:
        return None


async def _has_failure(journeys, number, failed_at) -> bool:
    s = await _status(journeys, number)
    return bool(s) and any(f.failed_at == failed_at for f in s.debit_failures)


async def test_status_card_list_and_inquiry_from_the_command_line(dev_env, pool, db_url):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    numbers = [f"{prefix}-P2026000006", f"{prefix}-P2026000001"]  # elderly, standard
    address = dev_env.client.service_client.config.target_host
    try:
        async with journey_worker(dev_env.client, pool, ProviderDouble()) as journeys:
            env = clean_env(TEMPORAL_ADDRESS=address, DATABASE_URL=db_url,
                            TEMPORAL_TASK_QUEUE=journeys._task_queue)
            for n in numbers:
                await start_journey(journeys, pool, n, at("2026-11-27 09:00"))
            # The elderly one at a high time scale, so that messages exist soon.
            await journeys.handle(numbers[0]).terminate("restart faster")
            async with pool.acquire() as conn:
                bundle = await store.load_policy(conn, numbers[0], with_members=False)
            trigger = detect_trigger(bundle.policy, bundle.product, date(2026, 11, 27))
            await journeys.start(trigger, "long_term", time_scale=FAST,
                                 journey_start=at("2026-11-27 09:00"))

            async def has_sent() -> bool:
                return bool(await pool.fetchval(
                    "SELECT count(*) FROM notifications WHERE policy_number = $1 "
                    "AND status = 'sent'", numbers[0]))
            assert await eventually(has_sent, 30)

            code, out, err = await run_lapse("status", numbers[0], env=env)
            assert code == 0, err
            assert f"{numbers[0]}" in out and "elderly" in out
            assert "first_reminder" in out and "Next" in out and "Messages" in out
            code, out, err = await run_lapse("status", numbers[0], "--json", env=env)
            card = json.loads(out)
            assert card["policy_number"] == numbers[0]
            assert card["deliveries"] and {d["status"] for d in card["deliveries"]} <= {
                "queued", "sending", "sent", "delivered", "failed", "bounced", "skipped"}

            code, out, err = await run_lapse("inquiry", numbers[1], "--kind", "hardship",
                                             "--id", "Q-TEST1", "--json", env=env)
            assert code == 0, err
            assert json.loads(out)["id"] == "Q-TEST1"

            async def listed() -> list[dict]:
                code, out, _ = await run_lapse("list", "--segment", "elderly", "--json",
                                               env=env)
                rows = [r for r in json.loads(out) if r["policy_number"] in numbers]
                return rows if code == 0 and rows else []
            rows = await eventually(listed, 20)
            assert [r["policy_number"] for r in rows] == [numbers[0]]
            assert rows[0]["stage"] in ("at_risk", "lapsed")

            async def hardship() -> bool:
                s = await _status(journeys, numbers[1])
                return bool(s) and any(i.inquiry_id == "Q-TEST1" for i in s.open_inquiries)
            assert await eventually(hardship)

            code, out, err = await run_lapse("list", "--stage", "at_risk",
                                             "--grace-ends-before", "2027-12-31", env=env)
            assert code == 0, err
            assert "journeys" in out

            code, _, err = await run_lapse("inquiry", f"{prefix}-P2026000012", env=env)
            assert code == 2 and "no running journey" in err
    finally:
        await terminate_journeys(dev_env.client, numbers)


def test_the_visibility_query_is_what_the_web_ui_takes():
    q = visibility_query("lapsed", "elderly", None)
    assert q == ("WorkflowType = 'PolicyLapseWorkflow' AND ExecutionStatus = 'Running' AND "
                 "LapseStage = 'lapsed' AND CustomerSegment = 'elderly'")
    assert "GraceEndsAt < '2027-01-01T00:00:00+08:00'" in visibility_query(
        None, None, date(2027, 1, 1), running_only=False)
