"""The daily scan: counts per trigger, only the at-risk set read, in pages, idempotent
re-runs, a rescission told once, a retried activity resuming from its heartbeat, and its
Temporal Schedule."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import date, timedelta

from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy
from temporalio.testing import ActivityEnvironment

from activities.scan import ScanActivities, scan_pages, scan_policies
from commands.scan import install_schedule
from commands.schedules import schedule_info
from contract import workflow_id
from domain.ids import JourneyId
from domain.journey import Outcome
from domain.policy_file import parse_policy_file
from domain.scan import (
    ScanCursor,
    ScanInput,
    ScanProgress,
    ScanRange,
    ScanRequest,
    ScanSummary,
    SkipReason,
    classify,
)
from infra.journeys import Journeys
from tests.journey_helpers import SAMPLE, ProviderDouble, at, journey_worker
from tests.ops_helpers import load_sample_as, terminate_journeys, unique_prefix
from workflows.scan import DailyScanWorkflow

AS_OF = date(2026, 11, 27)
EXPECTED_STARTED = {"premium_overdue": 11, "debit_failed": 3, "renewal_unpaid": 2,
                    "rescission": 1}
AT_RISK = sum(EXPECTED_STARTED.values())
EXPECTED_SKIPPED = {"not_due": 2, "paid": 1, "not_in_force": 1}
RESCINDED = "P2026000005"


def _sample_line(number: str, **changes) -> str:
    """A copy of a sample policy under another number, with `changes`."""
    line = next(x for x in SAMPLE.read_text(encoding="utf-8").splitlines()
                if '"P2026000001"' in x)
    record = json.loads(line)
    record.update(policy_number=number, **changes)
    return json.dumps(record, ensure_ascii=False)


def _terminated_policy() -> str:
    """A copy of the first sample policy that is no longer in force."""
    return _sample_line("P2026000099", status="terminated")


def _not_due_policies(count: int) -> list[str]:
    """In-force policies whose premium falls due after the scan's day: not at risk."""
    return [_sample_line(f"P2026{9000 + k:06d}", due_date="2027-03-01",
                         dues=[{"due_date": "2027-03-01", "amount": "3600.00",
                                "paid_amount": "0"}])
            for k in range(count)]


def test_classify_the_sample_per_trigger_and_skip_reason():
    lines = SAMPLE.read_text(encoding="utf-8").splitlines() + [_terminated_policy()]
    parsed = parse_policy_file(lines)
    started: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for policy in parsed.policies.values():
        found = classify(policy, parsed.products[policy.product_code], AS_OF)
        if isinstance(found, SkipReason):
            skipped[found.value] = skipped.get(found.value, 0) + 1
        else:
            started[found.kind.value] = started.get(found.kind.value, 0) + 1
    assert started == EXPECTED_STARTED
    assert skipped == EXPECTED_SKIPPED


def test_a_rescission_already_served_is_not_told_again():
    parsed = parse_policy_file(SAMPLE.read_text(encoding="utf-8").splitlines())
    policy = parsed.policies[RESCINDED]
    product = parsed.products[policy.product_code]
    assert classify(policy, product, AS_OF).kind.value == "rescission"
    assert classify(policy, product, AS_OF, rescission_served=True) is SkipReason.RESCINDED


async def test_scan_reads_only_the_at_risk_set_in_pages_and_reruns_idempotently(dev_env, pool):
    prefix = unique_prefix()
    numbers = await load_sample_as(pool, prefix, [_terminated_policy(),
                                                  *_not_due_policies(40)])
    journeys = Journeys(dev_env.client, f"test-{uuid.uuid4().hex[:8]}")  # no worker needed
    seen: list[str] = []
    try:
        first = await scan_policies(pool, journeys, AS_OF, concurrency=4, page_size=4,
                                    on_progress=lambda n, _o: seen.append(n))
        assert first.started == EXPECTED_STARTED
        assert first.already_running == {} and first.failed == []
        # Read: the at-risk policies only, not the 40 not due, the paid or the terminated
        # one; in pages of 4: the one rescission, then four full pages of overdue policies
        # and the empty page that ends them.
        assert first.read == AT_RISK and first.skipped == {}
        assert first.pages == 6
        assert sorted(seen) == sorted(f"{prefix}-{n}" for n in _at_risk_numbers())
        # Each journey planned here has its row, under its run's id, once the scan is done
        # (written a batch at a time beside the starts).
        rows = {r["policy_number"]: r for r in await pool.fetch(
            "SELECT policy_number, journey_id, stage FROM journeys "
            "WHERE policy_number = ANY($1::text[])", numbers)}
        assert sorted(rows) == sorted(seen)
        run = (await journeys.handle(f"{prefix}-P2026000002").describe()).run_id
        assert rows[f"{prefix}-P2026000002"]["journey_id"] == str(
            JourneyId.of(workflow_id(f"{prefix}-P2026000002"), run))
        assert {r["stage"] for r in rows.values()} == {"at_risk"}

        again = await scan_policies(pool, journeys, AS_OF, concurrency=4)
        assert again.started == {}
        assert again.already_running == EXPECTED_STARTED
        assert (again.read, again.pages) == (AT_RISK, 2)

        handle = journeys.handle(f"{prefix}-P2026000002")
        history = [e async for e in handle.fetch_history_events()]
        assert len([e for e in history if e.HasField(
            "workflow_execution_started_event_attributes")]) == 1
    finally:
        await terminate_journeys(dev_env.client, numbers)


def _at_risk_numbers() -> list[str]:
    parsed = parse_policy_file(SAMPLE.read_text(encoding="utf-8").splitlines())
    return [n for n, p in parsed.policies.items()
            if not isinstance(classify(p, parsed.products[p.product_code], AS_OF), SkipReason)]


async def test_the_policies_named_are_judged_at_risk_or_not(dev_env, pool):
    prefix = unique_prefix()
    numbers = await load_sample_as(pool, prefix, [_terminated_policy()])
    journeys = Journeys(dev_env.client, f"test-{uuid.uuid4().hex[:8]}")
    try:
        summary = await scan_policies(pool, journeys, AS_OF, concurrency=4, page_size=8,
                                      policy_numbers=[*numbers, f"{prefix}-P2026000404"])
        assert summary.started == EXPECTED_STARTED
        assert summary.skipped == EXPECTED_SKIPPED
        assert summary.failed == [f"{prefix}-P2026000404"]  # not stored
    finally:
        await terminate_journeys(dev_env.client, numbers)


async def test_a_rescinded_policy_gets_one_rescission_journey(time_skipping_env, pool):
    """Load a rescission, scan, let its journey close, scan again: no second notice."""
    prefix = unique_prefix()
    numbers = await load_sample_as(pool, prefix)
    rescinded = f"{prefix}-{RESCINDED}"
    sender = ProviderDouble()
    async with journey_worker(time_skipping_env.client, pool, sender) as journeys:
        try:
            first = await scan_policies(pool, journeys, AS_OF, concurrency=4,
                                        journey_start=at("2026-11-27 09:00"))
            assert first.started["rescission"] == 1
            assert (await journeys.handle(rescinded).result()).outcome is Outcome.RESCINDED

            again = await scan_policies(pool, journeys, AS_OF, concurrency=4,
                                        journey_start=at("2026-11-27 09:00"))
            assert "rescission" not in again.started
            assert again.skipped == {"rescinded": 1}
        finally:
            await terminate_journeys(time_skipping_env.client, numbers)
    notices = [m for m in sender.sent if m.notification_id.split("/")[1] == "rescission_notice"]
    assert len(notices) == 4  # letter, e-mail, SMS and WeChat, once


async def test_a_retried_scan_activity_resumes_from_its_heartbeat(dev_env, pool):
    prefix = unique_prefix()
    numbers = await load_sample_as(pool, prefix)
    queue = f"test-{uuid.uuid4().hex[:8]}"
    journeys = Journeys(dev_env.client, queue)
    env = ActivityEnvironment(client=dev_env.client)
    beats: list[ScanProgress] = []
    env.on_heartbeat = lambda *details: beats.append(details[0])
    # The first attempt got through the rescissions, then its worker was lost.
    checkpoint = ScanProgress(summary=ScanSummary(as_of=AS_OF, read=1, pages=1,
                                                  started={"rescission": 1}),
                              cursor=ScanCursor(range=ScanRange.OVERDUE))
    env.info = dataclasses.replace(env.info, attempt=2, task_queue=queue,
                                   heartbeat_details=[checkpoint.model_dump(mode="json")])
    try:
        result = await env.run(ScanActivities(pool).scan_pages,
                               ScanRequest(as_of=AS_OF, concurrency=4, page_size=5))
        # Only the overdue range was read again; the counts carry the first attempt's.
        assert result.done and result.summary.started == EXPECTED_STARTED
        assert result.summary.read == AT_RISK
        assert not await _running(journeys, f"{prefix}-{RESCINDED}")
        # Each page done is a checkpoint: the cursor after it and the counts up to it (pages
        # of 5 after the first attempt's one; pages done together make one checkpoint).
        reads = [b.summary.read for b in beats]
        assert reads == sorted(reads) and set(reads) <= {6, 11, 16, 17} and reads[-1] == 17
        assert all(b.cursor.range is ScanRange.OVERDUE and b.cursor.due_date for b in beats)
        assert beats[-1].done and not any(b.done for b in beats[:-1])
    finally:
        await terminate_journeys(dev_env.client, numbers)


async def _running(journeys: Journeys, number: str) -> bool:
    return await journeys.is_running(number)


async def test_scan_pages_stops_after_max_pages_with_the_cursor_to_go_on(dev_env, pool):
    prefix = unique_prefix()
    numbers = await load_sample_as(pool, prefix)
    journeys = Journeys(dev_env.client, f"test-{uuid.uuid4().hex[:8]}")
    try:
        part = await scan_pages(pool, journeys, AS_OF, concurrency=4, page_size=5,
                                max_pages=2)
        assert not part.done and part.summary.read == 6 and part.summary.pages == 2
        rest = await scan_pages(pool, journeys, AS_OF, concurrency=4, page_size=5,
                                cursor=part.cursor)
        assert rest.done
        total = part.summary.plus(rest.summary)
        assert total.started == EXPECTED_STARTED and total.read == AT_RISK
    finally:
        await terminate_journeys(dev_env.client, numbers)


async def test_the_daily_schedule_is_installed_and_updated(dev_env):
    schedule_id = f"test-scan-{uuid.uuid4().hex[:8]}"
    queue = f"test-{uuid.uuid4().hex[:8]}"
    desc = await install_schedule(dev_env.client, queue, schedule_id=schedule_id)
    try:
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "DailyScanWorkflow"
        assert action.task_queue == queue
        assert desc.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        assert desc.schedule.policy.catchup_window == timedelta(days=1)
        assert desc.schedule.spec.time_zone_name == "Asia/Shanghai"
        # By default at 10:00, the default send time: the first reminders it starts are due.
        assert desc.schedule.spec.calendars[0].hour[0].start == 10
        info = schedule_info(desc)
        assert info["state"] == "active" and info["next_run"] is not None

        # Installing again updates in place: one schedule, the new hour.
        desc = await install_schedule(dev_env.client, queue, hour=9, schedule_id=schedule_id)
        assert desc.schedule.spec.calendars[0].hour[0].start == 9
        ids = [s.id async for s in await dev_env.client.list_schedules()]
        assert ids.count(schedule_id) <= 1
    finally:
        await dev_env.client.get_schedule_handle(schedule_id).delete()


async def test_the_scan_workflow_runs_the_pages_as_activities(dev_env, pool):
    prefix = unique_prefix()
    numbers = await load_sample_as(pool, prefix)
    try:
        async with journey_worker(dev_env.client, pool, ProviderDouble()) as journeys:
            queue = journeys.task_queue
            handle = await dev_env.client.start_workflow(
                DailyScanWorkflow.run, ScanInput(as_of=AS_OF, concurrency=5, page_size=3),
                id=f"test-scan-{uuid.uuid4().hex[:8]}", task_queue=queue,
                result_type=ScanSummary, execution_timeout=timedelta(seconds=120))
            summary = await handle.result()
        assert summary.as_of == AS_OF
        assert summary.started == EXPECTED_STARTED
        assert summary.read == AT_RISK and summary.skipped == {}
        # 1 rescission page, 16 overdue in pages of 3 (6 pages): 7 pages, one activity.
        assert summary.pages == 7
        events = [e async for e in handle.fetch_history_events()]
        assert len([e for e in events if e.HasField(
            "activity_task_scheduled_event_attributes")]) == 1
    finally:
        await terminate_journeys(dev_env.client, numbers)
