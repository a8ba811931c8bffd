"""DailyScanWorkflow: what the daily Schedule runs; the scan itself is one activity."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.scan import ScanActivities
    from domain.plan import TZ
    from domain.scan import ScanInput, ScanRequest, ScanSummary

SCHEDULE_ID = "lapse-daily-scan"


@workflow.defn(name="DailyScanWorkflow")
class DailyScanWorkflow:
    @workflow.run
    async def run(self, inp: ScanInput) -> ScanSummary:
        # The schedule passes no day: the scan is for the day it fires, in Shanghai.
        as_of = inp.as_of or workflow.now().astimezone(TZ).date()
        return await workflow.execute_activity_method(
            ScanActivities.scan_policies,
            ScanRequest(as_of=as_of, concurrency=inp.concurrency),
            # Safe to retry: starting a journey that runs already is a no-op.
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5),
                                     maximum_attempts=5),
            summary=f"start the journeys of the policies at risk on {as_of}")
