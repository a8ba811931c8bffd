"""The daily scan: start a journey for every policy at risk, never two per policy."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime

import asyncpg
from temporalio import activity

from domain.scan import ScanRequest, ScanSummary, SkipReason, classify
from infra import store
from infra.journeys import Journeys

log = logging.getLogger("lapse.scan")

Progress = Callable[[str, str], None]  # (policy number, what happened)


async def scan_policies(pool: asyncpg.Pool, journeys: Journeys, as_of: date, *,
                        concurrency: int = 20, time_scale: float = 1.0,
                        journey_start: datetime | None = None,
                        on_progress: Progress | None = None,
                        policy_numbers: list[str] | None = None) -> ScanSummary:
    """Classify every policy on `as_of` and start the journeys that are due.

    Starting is idempotent (USE_EXISTING on `lapse-{policy}`), so a re-run or two scans at
    once only find the journeys running. At most `concurrency` policies are in flight.
    """
    if policy_numbers is None:
        async with pool.acquire() as conn:
            policy_numbers = await store.policy_numbers(conn)
    started: Counter[str] = Counter()
    running: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    failed: list[str] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(number: str) -> None:
        async with gate:
            try:
                async with pool.acquire() as conn:
                    bundle = await store.load_policy(conn, number, with_members=False)
                found = classify(bundle.policy, bundle.product, as_of)
                if isinstance(found, SkipReason):
                    skipped[found.value] += 1
                    outcome = f"skipped: {found.value}"
                else:
                    result = await journeys.ensure(found, bundle.product.kind.value,
                                                   time_scale=time_scale,
                                                   journey_start=journey_start)
                    (started if result.started else running)[found.kind.value] += 1
                    outcome = "started" if result.started else "already running"
            except Exception as err:  # one bad policy must not stop the scan of the rest
                log.warning("scan failed for one policy", extra={
                    "policy_number": number, "error": type(err).__name__})
                failed.append(number)
                outcome = f"failed: {type(err).__name__}"
        if on_progress is not None:
            on_progress(number, outcome)

    await asyncio.gather(*(one(n) for n in policy_numbers))
    return ScanSummary(as_of=as_of, started=dict(started), already_running=dict(running),
                       skipped=dict(skipped), failed=sorted(failed))


class ScanActivities:
    """The scan as an activity, for the daily schedule's workflow."""

    def __init__(self, pool: asyncpg.Pool, time_scale: float = 1.0):
        self._pool = pool
        self._time_scale = time_scale

    @activity.defn
    async def scan_policies(self, req: ScanRequest) -> ScanSummary:
        info = activity.info()
        journeys = Journeys(activity.client(), info.task_queue)
        done = 0

        def beat(_number: str, _outcome: str) -> None:
            nonlocal done
            done += 1
            activity.heartbeat(done)

        summary = await scan_policies(self._pool, journeys, req.as_of,
                                      concurrency=req.concurrency,
                                      time_scale=self._time_scale, on_progress=beat)
        activity.logger.info("daily scan done", extra={
            "as_of": str(req.as_of), "started": sum(summary.started.values()),
            "already_running": sum(summary.already_running.values()),
            "failed": len(summary.failed)})
        return summary

    def all(self) -> list:
        return [self.scan_policies]
