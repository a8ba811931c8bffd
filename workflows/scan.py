"""DailyScanWorkflow: what the daily Schedule runs; the scan's pages are activities.

Each activity reads a run of pages of the at-risk set and starts their journeys, with its
checkpoint (the cursor after the last page done, and the counts so far) in its heartbeat,
so a retried activity resumes there instead of from the beginning. The workflow only
carries the cursor from one activity to the next, and continues as new when its history
grows long, so a scan of millions of policies keeps a short history.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.scan import ScanActivities
    from domain.plan import TZ
    from domain.scan import ScanInput, ScanProgress, ScanRequest, ScanSummary

SCHEDULE_ID = "lapse-daily-scan"
# Pages per activity: long enough that the activities are few, short enough that a retry
# after a lost worker repeats little (the heartbeat's checkpoint limits it to one page).
PAGES_PER_ACTIVITY = 40


@workflow.defn(name="DailyScanWorkflow")
class DailyScanWorkflow:
    @workflow.run
    async def run(self, inp: ScanInput) -> ScanSummary:
        # The schedule passes no day: the scan is for the day it fires, in Shanghai.
        as_of = inp.as_of or workflow.now().astimezone(TZ).date()
        summary = inp.so_far or ScanSummary(as_of=as_of)
        cursor = inp.cursor
        while True:
            part: ScanProgress = await workflow.execute_activity_method(
                ScanActivities.scan_pages,
                ScanRequest(as_of=as_of, concurrency=inp.concurrency,
                            page_size=inp.page_size, cursor=cursor,
                            max_pages=PAGES_PER_ACTIVITY),
                # Safe to retry: starting a journey that runs already is a no-op.
                start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5),
                                         maximum_attempts=10),
                summary=f"start the journeys of the policies at risk on {as_of}, "
                        f"page {summary.pages + 1} on")
            summary = summary.plus(part.summary)
            cursor = part.cursor
            if part.done:
                return summary
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(inp.model_copy(update={
                    "as_of": as_of, "cursor": cursor, "so_far": summary}))
