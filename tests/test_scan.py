"""The daily scan: counts per trigger, idempotent re-runs, and its Temporal Schedule."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta

from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from activities.scan import scan_policies
from commands.scan import install_schedule, schedule_info
from domain.policy_file import parse_policy_file
from domain.scan import ScanInput, ScanSummary, SkipReason, classify
from infra.journeys import Journeys
from tests.journey_helpers import SAMPLE, ProviderDouble, journey_worker
from tests.ops_helpers import load_sample_as, terminate_journeys, unique_prefix
from workflows.scan import DailyScanWorkflow

AS_OF = date(2026, 11, 27)
EXPECTED_STARTED = {"premium_overdue": 11, "debit_failed": 3, "renewal_unpaid": 2,
                    "rescission": 1}
EXPECTED_SKIPPED = {"not_due": 2, "paid": 1, "not_in_force": 1}


def _terminated_policy() -> str:
    """A copy of the first sample policy that is no longer in force."""
    line = next(x for x in SAMPLE.read_text(encoding="utf-8").splitlines()
                if '"P2026000001"' in x)
    record = json.loads(line)
    record.update(policy_number="P2026000099", status="terminated")
    return json.dumps(record, ensure_ascii=False)


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


async def test_scan_starts_one_journey_per_policy_and_reruns_idempotently(dev_env, pool):
    prefix = unique_prefix()
    numbers = await load_sample_as(pool, prefix, [_terminated_policy()])
    journeys = Journeys(dev_env.client, f"test-{uuid.uuid4().hex[:8]}")  # no worker needed
    seen: list[str] = []
    try:
        first = await scan_policies(pool, journeys, AS_OF, concurrency=4,
                                    on_progress=lambda n, _o: seen.append(n))
        assert first.started == EXPECTED_STARTED
        assert first.already_running == {}
        assert first.skipped == EXPECTED_SKIPPED
        assert first.failed == []
        assert sorted(seen) == numbers

        again = await scan_policies(pool, journeys, AS_OF, concurrency=4)
        assert again.started == {}
        assert again.already_running == EXPECTED_STARTED
        assert again.skipped == EXPECTED_SKIPPED

        handle = journeys.handle(f"{prefix}-P2026000002")
        history = [e async for e in handle.fetch_history_events()]
        assert len([e for e in history if e.HasField(
            "workflow_execution_started_event_attributes")]) == 1
    finally:
        await terminate_journeys(dev_env.client, numbers)


async def test_the_daily_schedule_is_installed_and_updated(dev_env):
    schedule_id = f"test-scan-{uuid.uuid4().hex[:8]}"
    queue = f"test-{uuid.uuid4().hex[:8]}"
    desc = await install_schedule(dev_env.client, queue, hour=7, schedule_id=schedule_id)
    try:
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "DailyScanWorkflow"
        assert action.task_queue == queue
        assert desc.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        assert desc.schedule.policy.catchup_window == timedelta(days=1)
        assert desc.schedule.spec.time_zone_name == "Asia/Shanghai"
        assert desc.schedule.spec.calendars[0].hour[0].start == 7
        info = schedule_info(desc)
        assert info["state"] == "active" and info["next_run"] is not None

        # Installing again updates in place: one schedule, the new hour.
        desc = await install_schedule(dev_env.client, queue, hour=9, schedule_id=schedule_id)
        assert desc.schedule.spec.calendars[0].hour[0].start == 9
        ids = [s.id async for s in await dev_env.client.list_schedules()]
        assert ids.count(schedule_id) <= 1
    finally:
        await dev_env.client.get_schedule_handle(schedule_id).delete()


async def test_the_scan_workflow_runs_the_scan_as_an_activity(dev_env, pool):
    prefix = unique_prefix()
    numbers = await load_sample_as(pool, prefix)
    try:
        async with journey_worker(dev_env.client, pool, ProviderDouble()) as journeys:
            queue = journeys._task_queue
            summary = await dev_env.client.execute_workflow(
                DailyScanWorkflow.run, ScanInput(as_of=AS_OF, concurrency=5),
                id=f"test-scan-{uuid.uuid4().hex[:8]}", task_queue=queue,
                result_type=ScanSummary, execution_timeout=timedelta(seconds=60))
        assert summary.as_of == AS_OF
        assert summary.started == EXPECTED_STARTED
        assert summary.skipped == {"not_due": 2, "paid": 1}
    finally:
        await terminate_journeys(dev_env.client, numbers)
