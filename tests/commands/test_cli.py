"""The payment system's client, and what agents run: `lapse pay`, `status`, `list`, `inquiry`."""

from __future__ import annotations

import json
from datetime import date, time, timedelta
from decimal import Decimal

import pytest

from activities.agent_call import AgentCallQueue
from commands.listing import visibility_query
from domain.journey import (
    DebitFailedSignal,
    Outcome,
    Payment,
    ReinstatementApplied,
    ReinstatementDecided,
    Stage,
)
from domain.models import Channel, DebitFailureReason
from domain.plan import SendWindow
from infra import store
from infra.journeys import Journeys, PaymentRefused, PaymentSystem
from tests.journey_helpers import ProviderDouble, at, begin_journey, journey_worker, start_journey
from tests.ops_helpers import (
    clean_env,
    eventually,
    load_sample_as,
    run_lapse,
    terminate_journeys,
    unique_prefix,
)
from worker import build_worker

FAST = 20_000  # journey seconds per second: the first reminder comes within a few seconds


def _payment(txn: str, amount: str, when: str = "2026-11-27 11:00") -> Payment:
    return Payment(transaction_id=txn, amount=Decimal(amount), currency="CNY",
                   paid_at=at(when))


async def test_a_payment_without_a_journey_is_recorded_not_refused(dev_env, pool):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-P2026000001"
    payments = PaymentSystem(Journeys(dev_env.client, "test-no-worker"), pool)
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
            payments = PaymentSystem(journeys, pool)
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
            # A payment to the running journey goes through the validated update. This
            # journey runs on the wall clock: at night its confirmation waits for 08:00,
            # so the test reads the close from the status, not the workflow's end.
            paid = await payments.payment_received(number, _payment("T-B1", "3600.00"))
            assert paid.journey_running and paid.outcome == "paid_in_full"
            status = await journeys.status(number)
            assert status.stage is Stage.CLOSED and status.outcome.value == "paid"
    finally:
        await terminate_journeys(dev_env.client, [number])


async def test_a_payment_after_the_journey_completed_goes_to_the_ledger(dev_env, pool):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-P2026000001"
    try:
        async with journey_worker(dev_env.client, pool, ProviderDouble()) as journeys:
            handle = await start_journey(journeys, pool, number, at("2026-11-27 11:00"))
            payments = PaymentSystem(journeys, pool)
            paid = await payments.payment_received(number, _payment("T-C1", "3600.00"))
            assert paid.journey_running and paid.outcome == "paid_in_full"
            result = await handle.result()
            assert result.stage is Stage.CLOSED and result.outcome.value == "paid"
            # Completed: the update's NOT_FOUND sends the payment to the ledger, the same
            # one retried is a duplicate there.
            later = await payments.payment_received(number, _payment("T-C2", "100.00"))
            assert (later.journey_running, later.outcome) == (False,
                                                              "recorded_without_journey")
            retried = await payments.payment_received(number, _payment("T-C1", "3600.00"))
            assert (retried.journey_running, retried.outcome) == (False, "duplicate")
            assert await pool.fetchval("SELECT count(*) FROM payments WHERE policy_number "
                                       "= $1", number) == 2
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
                            TEMPORAL_TASK_QUEUE=journeys.task_queue)
            for n in numbers:
                await start_journey(journeys, pool, n, at("2026-11-27 09:00"))
            # The elderly one at a high time scale, so that messages exist soon.
            await journeys.handle(numbers[0]).terminate("restart faster")
            await begin_journey(journeys, pool, numbers[0], at("2026-11-27 09:00"), FAST)

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
    # Grace ending before 2027-01-01: its last day is 2026-12-31 at the latest, so its
    # GraceEndsAt (00:00 after the last day) is 2027-01-01 00:00 at the latest.
    assert "GraceEndsAt <= '2027-01-01T00:00:00+08:00'" in visibility_query(
        None, None, date(2027, 1, 1), running_only=False)


def _env(dev_env, db_url, journeys, **more) -> dict[str, str]:
    return clean_env(TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
                     DATABASE_URL=db_url, TEMPORAL_TASK_QUEUE=journeys.task_queue, **more)


async def test_status_reads_provider_codes_and_dates_messages_by_journey_time(
        dev_env, pool, db_url):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-P2026000009"  # the provider refuses its number; nothing else
    mobile = await pool.fetchval("SELECT c.mobile FROM customers c JOIN policies p ON "
                                 "p.policyholder_id = c.customer_id WHERE p.policy_number = $1",
                                 number)
    try:
        async with journey_worker(dev_env.client, pool,
                                  ProviderDouble(permanent={mobile})) as journeys:
            await begin_journey(journeys, pool, number, at("2026-11-18 08:00"), FAST)

            async def refused() -> bool:
                return bool(await pool.fetchval(
                    "SELECT count(*) FROM notifications WHERE policy_number = $1 AND "
                    "milestone = 'first_reminder' AND channel = 'sms' AND status = 'failed'",
                    number))
            assert await eventually(refused, 30)
            code, out, err = await run_lapse("status", number,
                                             env=_env(dev_env, db_url, journeys))
    finally:
        await terminate_journeys(dev_env.client, [number])
    assert code == 0, err
    assert "21211 号码无效 / invalid number" in out
    assert "no_address 客户资料中无该渠道地址 / no address for this channel" in out  # WeChat
    # Dated when the journey sent it (its first reminder day), not when the record changed.
    [sms] = [line for line in out.splitlines() if " first_reminder " in line and " sms " in line]
    assert sms.split()[:2] == ["2026-11-18", "10:00"], sms


async def test_list_keeps_the_policy_number_whole_and_shows_outcomes_and_the_grace_end(
        dev_env, pool, db_url):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    paid, running = f"{prefix}-P2026000001", f"{prefix}-P2026000008"
    try:
        async with journey_worker(dev_env.client, pool, ProviderDouble()) as journeys:
            env = _env(dev_env, db_url, journeys, COLUMNS="80")
            await begin_journey(journeys, pool, paid, at("2026-11-23 09:00"))
            await begin_journey(journeys, pool, running, at("2026-11-23 09:00"))
            await journeys.pay(paid, _payment("T-L1", "3600.00", "2026-11-23 09:30"))
            await journeys.handle(paid).result()
            status = await journeys.status(running)

            async def listed() -> str:
                code, out, _ = await run_lapse("list", "--all", env=env)
                return out if code == 0 and paid in out and running in out else ""
            out = await eventually(listed, 20)
            code, raw, err = await run_lapse("list", "--all", "--json", env=env)
    finally:
        await terminate_journeys(dev_env.client, [paid, running])
    lines = {line.split()[0]: line for line in out.splitlines()
             if line.strip().startswith(prefix)}
    assert "closed: paid" in lines[paid]  # its outcome, not "closed (completed)"
    assert " at_risk " in lines[running]
    # Grace ends on its last day, the day `lapse status` gives (not 00:00 the day after).
    assert f" {status.grace_ends_at} " in lines[running]
    rows = {r["policy_number"]: r for r in json.loads(raw) if r["policy_number"] in lines}
    assert rows[paid]["outcome"] == "paid" and rows[running]["outcome"] is None
    assert rows[running]["grace_ends_at"] == status.grace_ends_at.isoformat()
    assert rows[running]["lapses_at"].startswith(status.lapses_at.date().isoformat())


def test_list_on_a_narrow_terminal_wraps_values_and_cuts_none():
    from rich.console import Console

    from commands.listing import shown
    row = {"policy_number": "ABCDEF12-P2026000001", "workflow_id": "lapse-x", "run_id": "r",
           "status": "completed", "stage": "closed", "outcome": "follow_up_ended",
           "trigger": "premium_overdue", "segments": ["elderly", "unreachable"],
           "grace_ends_at": "2027-01-19", "lapses_at": "2027-01-20T00:00:00+08:00",
           "next_reminder_at": None, "outstanding": 13600.0, "product_kind": "long_term"}
    for width in (60, 80, 100, 160):
        console = Console(width=width, force_terminal=True, color_system=None, record=True)
        table, console = shown([row], console)
        console.print(table)
        text = console.export_text()
        for value in ("ABCDEF12-P2026000001", "closed: follow_up_ended", "premium_overdue",
                      "2027-01-19", "¥13,600.00"):
            assert value in text, (width, text)
        assert "…" not in text and max(map(len, text.splitlines())) <= width


async def test_start_shows_the_running_journey_even_after_it_lapsed_the_policy(
        dev_env, pool, db_url):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-P2026000001"  # grace ends 2027-01-19: lapsed an hour after this
    try:
        async with journey_worker(dev_env.client, pool, ProviderDouble()) as journeys:
            await begin_journey(journeys, pool, number, at("2027-01-19 23:00"), FAST)
            lapsed = await eventually(lambda: _lapsed(journeys, number), 30)
            assert lapsed
            code, out, err = await run_lapse("start", number, "--trigger", "premium_overdue",
                                             env=_env(dev_env, db_url, journeys))
            code_json, raw, _ = await run_lapse("start", number, "--trigger",
                                                "premium_overdue", "--json",
                                                env=_env(dev_env, db_url, journeys))
    finally:
        await terminate_journeys(dev_env.client, [number])
    assert code == 0, err
    assert f"journey lapse-{number} is already running" in out and "stage lapsed" in out
    assert code_json == 0 and json.loads(raw)["already_running"] is True


async def test_status_of_a_reinstated_policy_shows_the_back_premium_and_interest_paid(
        dev_env, pool, db_url):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-P2026000008"  # ¥1,980.00, grace ends 2027-01-18
    try:
        async with journey_worker(dev_env.client, pool, ProviderDouble()) as journeys:
            await begin_journey(journeys, pool, number, at("2027-01-18 23:00"), FAST)

            async def quoted():
                s = await _status(journeys, number)
                return s if s and s.stage is Stage.LAPSED and s.reinstatement else None
            s = await eventually(quoted, 30)
            assert s, "the journey did not lapse with a reinstatement quote"
            quote = s.reinstatement
            # What the customer pays: the quote, back premium and interest, as the demo's
            # reinstated customer does before applying.
            paid_at = s.journey_now
            answer = await journeys.pay(number, Payment(
                transaction_id=f"T-{prefix}-R", amount=quote.total, currency="CNY",
                paid_at=paid_at))
            assert answer.outcome == "after_lapse"
            await journeys.reinstatement_applied(number, ReinstatementApplied(
                application_id="R-1", applied_at=paid_at))
            await journeys.reinstatement_decided(number, ReinstatementDecided(
                application_id="R-1", approved=True, decided_at=paid_at))
            closed = await journeys.handle(number).result()
            assert closed.outcome is Outcome.REINSTATED
            code, out, err = await run_lapse("status", number,
                                             env=_env(dev_env, db_url, journeys))
    finally:
        await terminate_journeys(dev_env.client, [number])
    assert code == 0, err
    assert quote.interest > 0 and quote.back_premium == Decimal("1980.00")
    [money] = [line for line in out.splitlines() if line.startswith("Money")]
    assert (f"paid ¥{quote.total:,.2f} (back premium ¥1,980.00 + interest "
            f"¥{quote.interest:,.2f})") in money, money
    assert "outstanding ¥0.00" in money, money
    assert "closed (reinstated)" in out


async def _lapsed(journeys, number) -> bool:
    s = await _status(journeys, number)
    return bool(s) and s.stage is Stage.LAPSED


async def test_as_of_after_tomorrow_is_refused_unless_the_sandbox_runs_compressed_time(
        dev_env, pool, db_url):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-P2026000001"
    journeys_env = clean_env(TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
                             DATABASE_URL=db_url, TEMPORAL_TASK_QUEUE="test-as-of-no-worker")
    try:
        for far in ("9999-12-31", (date.today() + timedelta(days=3)).isoformat()):
            code, out, err = await run_lapse("start", number, "--trigger", "premium_overdue",
                                             "--as-of", far, env=journeys_env)
            assert code == 2 and out == ""
            assert err.startswith("lapse start: --as-of must be no later than "), err
            assert "LAPSE_TIME_SCALE" in err
        assert not await Journeys(dev_env.client, "test-as-of-no-worker").is_running(number)
        # Compressed time on the sandbox providers: a later day is a rehearsal, allowed.
        code, out, err = await run_lapse(
            "start", number, "--trigger", "premium_overdue", "--as-of",
            (date.today() + timedelta(days=3)).isoformat(),
            env={**journeys_env, "LAPSE_TIME_SCALE": "1000"})
        assert code == 0, err
        # So is today, and a past day (a journey that should have started then).
        code, _, err = await run_lapse("start", f"{prefix}-P2026000008", "--trigger",
                                       "premium_overdue", "--as-of", "2026-11-21",
                                       env=journeys_env)
        assert code == 0, err
    finally:
        await terminate_journeys(dev_env.client, [number, f"{prefix}-P2026000008"])


async def test_taking_a_task_of_a_closed_journey_says_so_and_reads_out_no_script(
        dev_env, pool, db_url):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-P2026000006"  # elderly: an agent call at the second reminder
    double = ProviderDouble()
    senders = {**{c: double for c in Channel},
               Channel.AGENT_CALL: AgentCallQueue(pool, SendWindow(start=time(9), end=time(21)))}
    queue = f"test-{unique_prefix()}"
    try:
        async with build_worker(dev_env.client, pool, queue, senders=senders):
            journeys = Journeys(dev_env.client, queue)
            env = _env(dev_env, db_url, journeys)
            # A minute before the second reminder, at ten journey seconds a second.
            await begin_journey(journeys, pool, number, at("2026-12-25 09:59"), time_scale=10)

            async def call_task() -> str | None:
                return await pool.fetchval("SELECT task_id FROM agent_tasks WHERE "
                                           "policy_number = $1 AND kind = 'outbound_call'",
                                           number)
            task_id = await eventually(call_task, 90)
            assert task_id
            script = await pool.fetchval(
                "SELECT n.body FROM agent_tasks t JOIN notifications n USING "
                "(notification_id) WHERE t.task_id = $1", task_id)
            status = await journeys.status(number)
            await journeys.pay(number, _payment("T-K1", str(status.outstanding),
                                                "2026-12-25 10:30"))
            await journeys.handle(number).result()
            # Closing the journey cancelled its task: it is listed only among the cancelled.
            code, listed, _ = await run_lapse("task", "list", "--policy", number,
                                              "--status", "cancelled", env=env)
            code_take, out, err = await run_lapse("task", "take", task_id, "--agent", "wang",
                                                  env=env)
    finally:
        await terminate_journeys(dev_env.client, [number])
    assert code == 0 and "JOURNEY CLOSED (paid)" in listed
    assert code_take == 2 and out == ""
    assert f"task {task_id} was cancelled: journey closed: paid" in err
    assert script and script[:20] not in out + err
    assert await pool.fetchval("SELECT status FROM agent_tasks WHERE task_id = $1",
                               task_id) == "cancelled"
