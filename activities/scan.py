"""The daily scan: start a journey for every policy at risk, never two per policy.

The at-risk set is read a page at a time (infra/scan_queries.py: one query per page) while
the journeys of the pages before are being started: a reader fills a bounded queue, and
`concurrency` starters empty it, so starts never wait for a page and pages never run ahead
of the starts by more than the queue. A page is done when all its starts are; pages are
done in order, and each one done moves the checkpoint (the cursor after it and the counts
up to it) that a retried activity resumes from.

Each journey starts planned, as `prepare_journey` would plan it: what planning reads beyond
the page (the policyholders, the members, the open dues, recent payments) is read for the
whole page in two queries, and each starter plans its journey right before its start. The
journey then runs no plan of its own and starts with its search attributes as they will be
once what is due at once is done: two billable actions fewer per journey. The scan writes
the journey's row after the start (its id needs the run id). What cannot be planned here
starts unplanned and plans itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg
from pydantic import ValidationError
from temporalio import activity

from activities.journey import preparation
from domain.calendar import BusinessCalendar
from domain.ids import JourneyId
from domain.journey import Preparation
from domain.models import Customer, Policy, Product, Trigger
from domain.planner import PlanCache
from domain.scan import (
    ScanCursor,
    ScanProgress,
    ScanRequest,
    ScanSummary,
    SkipReason,
    classify,
)
from domain.verification import RECENT_PAYMENT_DAYS
from infra import journey_records, store
from infra.journeys import Journeys, Started
from infra.scan_queries import (
    Page,
    PlanningFacts,
    at_risk_pages,
    listed_pages,
    planning_facts,
    scan_row,
)

log = logging.getLogger("lapse.scan")

Progress = Callable[[str, str], None]  # (policy number, what happened)
Checkpoint = Callable[[ScanProgress], None]

DEFAULT_PAGE_SIZE = 500
_ROWS_PER_WRITE = 200  # journeys' rows in one statement


@dataclass
class _Page:
    """One page's counts while its starts are in flight."""

    after: ScanCursor | None
    last: bool
    read: int = 0
    waiting: int = 0  # starts not yet answered
    queued: bool = False  # every start of the page is in the queue
    started: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)

    def summary(self, as_of: date) -> ScanSummary:
        return ScanSummary(as_of=as_of, read=self.read, pages=1, started=dict(self.started),
                           already_running=dict(self.running), skipped=dict(self.skipped),
                           failed=self.failed)


@dataclass(frozen=True)
class _Facts:
    """What planning a journey reads besides its policy, read for the whole page at once."""

    holder: Customer
    more: PlanningFacts
    starts_at: datetime  # the moment the journey is planned from


@dataclass(frozen=True)
class _Start:
    page: _Page
    trigger: Trigger
    product: Product
    policy: Policy
    facts: _Facts | None = None  # None: the journey plans itself (`prepare_journey`)


async def scan_pages(pool: asyncpg.Pool, journeys: Journeys, as_of: date, *,
                     concurrency: int = 20, page_size: int = DEFAULT_PAGE_SIZE,
                     time_scale: float = 1.0, journey_start: datetime | None = None,
                     cursor: ScanCursor | None = None, max_pages: int | None = None,
                     policy_numbers: Sequence[str] | None = None,
                     on_progress: Progress | None = None,
                     on_checkpoint: Checkpoint | None = None) -> ScanProgress:
    """Start the journeys due on `as_of` of the at-risk set from `cursor` (None: the
    beginning), for at most `max_pages` pages; or of the policies named, at risk or not.

    Under compressed time every journey of the scan starts its clock at the scan's own
    moment, however long the starts take (a burst due at one instant stays one instant).

    Starting is idempotent (USE_EXISTING on `lapse-{policy}`), so a re-run, a retry or two
    scans at once only find the journeys running. At most `concurrency` starts are in flight.
    """
    wall_anchor = datetime.now(UTC)
    if time_scale != 1 and journey_start is None:
        journey_start = wall_anchor
    async with pool.acquire() as conn:
        products = await store.load_products(conn)
        calendar = BusinessCalendar(await store.load_calendar_years(conn))
    plans = PlanCache()  # journeys alike (kind, due date, product, segments) planned once
    pages = (listed_pages(pool, policy_numbers, page_size) if policy_numbers is not None
             else at_risk_pages(pool, as_of, cursor, page_size, max_pages))
    queue: asyncio.Queue[_Start | None] = asyncio.Queue(maxsize=page_size)
    in_flight: deque[_Page] = deque()
    done = ScanProgress(summary=ScanSummary(as_of=as_of), cursor=cursor)

    def report(number: str, outcome: str) -> None:
        if on_progress is not None:
            on_progress(number, outcome)

    def settle() -> None:
        """Move the checkpoint past every page whose starts are all answered, in order."""
        nonlocal done
        moved = False
        while in_flight and in_flight[0].queued and in_flight[0].waiting == 0:
            page = in_flight.popleft()
            done = ScanProgress(summary=done.summary.plus(page.summary(as_of)),
                                cursor=page.after, done=page.last)
            moved = True
        if moved and on_checkpoint is not None:
            on_checkpoint(done)

    async def read() -> None:
        seen: set[str] = set()
        async for found in pages:
            page = _Page(found.after, found.last, read=len(found.rows))
            in_flight.append(page)
            seen.update(r["policy_number"] for r in found.rows)
            if found.last and policy_numbers is not None:
                for number in sorted(set(policy_numbers) - seen):  # named, but not stored
                    page.failed.append(number)
                    report(number, "failed: unknown policy")
            starts = _judge(found, products, as_of, page, report)
            for start in await _with_facts(pool, starts, journey_start):
                page.waiting += 1
                await queue.put(start)
            page.queued = True
            settle()
        for _ in range(concurrency):
            await queue.put(None)

    def answered(page: _Page, number: str, outcome: str) -> None:
        page.waiting -= 1
        settle()
        report(number, outcome)

    # The rows of journeys planned here, written a batch at a time beside the starts: a
    # start's slot is free again at its answer, and a page counts as done (the checkpoint)
    # only once its rows are written.
    rows: asyncio.Queue[tuple[_Start, Started] | None] = asyncio.Queue()

    async def write() -> None:
        while True:
            batch = [await rows.get()]
            while not rows.empty() and len(batch) < _ROWS_PER_WRITE:
                batch.append(rows.get_nowait())
            items = [b for b in batch if b is not None]
            if items:
                try:
                    await _record_starts(pool, items)
                except Exception as err:
                    # The journeys run; each one's row is written by its first stage change.
                    log.warning("scan could not write its journeys' rows", extra={
                        "journeys": len(items), "error": type(err).__name__})
                    outcome = f"started; its row not written: {type(err).__name__}"
                else:
                    outcome = "started"
                for item, _ in items:
                    item.page.started[item.trigger.kind.value] += 1
                    answered(item.page, item.trigger.policy_number, outcome)
            if len(items) < len(batch):
                return

    async def start() -> None:
        while (item := await queue.get()) is not None:
            page, trigger = item.page, item.trigger
            try:
                # Planned here, between the starts' round trips: the journey runs no plan.
                planned = _planned(item, calendar, plans)
                result = await journeys.ensure(trigger, item.product.kind.value,
                                               time_scale=time_scale,
                                               journey_start=journey_start,
                                               wall_anchor=wall_anchor, planned=planned)
            except Exception as err:  # one bad start must not stop the scan of the rest
                log.warning("scan could not start a journey", extra={
                    "policy_number": trigger.policy_number, "error": type(err).__name__})
                page.failed.append(trigger.policy_number)
                answered(page, trigger.policy_number, f"failed: {type(err).__name__}")
                continue
            if result.started and planned is not None:
                await rows.put((item, result))
                continue
            (page.started if result.started else page.running)[trigger.kind.value] += 1
            answered(page, trigger.policy_number,
                     "started" if result.started else "already running")

    async with asyncio.TaskGroup() as group:
        group.create_task(read())
        group.create_task(write())
        starters = [group.create_task(start()) for _ in range(concurrency)]
        await asyncio.gather(*starters)
        await rows.put(None)
    return done


def _judge(found: Page, products: dict[str, Product], as_of: date, page: _Page,
           report: Progress) -> list[_Start]:
    """The page's starts; skips and policies that cannot be judged are counted on `page`."""
    starts = []
    for record in found.rows:
        number = record["policy_number"]
        try:
            row = scan_row(record)
            product = products[row.policy.product_code]
            verdict = classify(row.policy, product, as_of, row.rescission_served)
        except (ValidationError, KeyError, ValueError) as err:
            log.warning("scan could not judge a policy", extra={
                "policy_number": number, "error": type(err).__name__})
            page.failed.append(number)
            report(number, f"failed: {type(err).__name__}")
            continue
        if isinstance(verdict, SkipReason):
            page.skipped[verdict.value] += 1
            report(number, f"skipped: {verdict.value}")
        else:
            starts.append(_Start(page, verdict, product, row.policy))
    return starts


async def _with_facts(pool: asyncpg.Pool, starts: list[_Start],
                      journey_start: datetime | None) -> list[_Start]:
    """The page's starts with what planning their journeys reads, in two queries for the
    page. A page whose facts cannot be read starts unplanned: its journeys plan themselves."""
    if not starts:
        return starts
    starts_at = journey_start or datetime.now(UTC)
    try:
        async with pool.acquire() as conn:
            holders = await store.load_customers(
                conn, sorted({s.policy.policyholder_id for s in starts}))
            facts = await planning_facts(
                conn, [(s.trigger.policy_number, s.trigger.due_date) for s in starts],
                starts_at - timedelta(days=RECENT_PAYMENT_DAYS), starts_at)
    except (asyncpg.PostgresError, OSError, ValueError) as err:
        log.warning("scan could not read what planning a page needs: its journeys plan "
                    "themselves", extra={"error": type(err).__name__})
        return starts
    return [dataclasses.replace(s, facts=_Facts(holders[s.policy.policyholder_id],
                                                facts[s.trigger.policy_number], starts_at))
            if s.policy.policyholder_id in holders and s.trigger.policy_number in facts
            else s for s in starts]


def _planned(start: _Start, calendar: BusinessCalendar,
             plans: PlanCache) -> Preparation | None:
    """The journey's preparation, as `prepare_journey` would make it; None when it cannot
    be made here (the journey then plans itself, and retries as the activity does)."""
    if start.facts is None:
        return None
    f = start.facts
    try:
        return preparation(
            start.trigger, start.policy.model_copy(update={"member_ids": f.more.member_ids}),
            start.product, f.holder, members=len(f.more.member_ids),
            open_dues=f.more.open_dues, paid_recently=f.more.paid_recently,
            calendar=calendar, starts_at=f.starts_at, plans=plans)
    except ValueError as err:
        log.warning("scan could not plan a journey: it plans itself", extra={
            "policy_number": start.trigger.policy_number, "error": type(err).__name__})
        return None


async def _record_starts(pool: asyncpg.Pool, items: list[tuple[_Start, Started]]) -> None:
    """The rows of journeys planned here, which `prepare_journey` would have written: right
    after their starts, the first moment their ids are known (should a journey change stage
    first, `change_stage` writes its row)."""
    async with pool.acquire() as conn:
        await journey_records.start_journeys(conn, [
            journey_records.JourneyStart(
                str(JourneyId.of(started.handle.id, started.handle.result_run_id)),
                item.trigger.policy_number, item.trigger.kind.value, item.facts.starts_at)
            for item, started in items])


async def scan_policies(pool: asyncpg.Pool, journeys: Journeys, as_of: date, *,
                        concurrency: int = 20, page_size: int = DEFAULT_PAGE_SIZE,
                        time_scale: float = 1.0, journey_start: datetime | None = None,
                        on_progress: Progress | None = None,
                        policy_numbers: Sequence[str] | None = None) -> ScanSummary:
    """The whole scan of `as_of` in one call (the command, the demo); see `scan_pages`."""
    progress = await scan_pages(pool, journeys, as_of, concurrency=concurrency,
                                page_size=page_size, time_scale=time_scale,
                                journey_start=journey_start, policy_numbers=policy_numbers,
                                on_progress=on_progress)
    return progress.summary


class ScanActivities:
    """The scan as activities, for the daily schedule's workflow: each one reads a run of
    pages, heartbeating its checkpoint, and a retry resumes from the last checkpoint."""

    def __init__(self, pool: asyncpg.Pool, time_scale: float = 1.0):
        self._pool = pool
        self._time_scale = time_scale

    @activity.defn
    async def scan_pages(self, req: ScanRequest) -> ScanProgress:
        info = activity.info()
        resumed = (ScanProgress.model_validate(info.heartbeat_details[0])
                   if info.heartbeat_details else None)
        if resumed is not None and resumed.done:
            return resumed
        journeys = Journeys(activity.client(), info.task_queue)
        cursor = resumed.cursor if resumed is not None else req.cursor
        pages_left = req.max_pages - (resumed.summary.pages if resumed is not None else 0)
        before = resumed.summary if resumed is not None else ScanSummary(as_of=req.as_of)

        def beat(progress: ScanProgress) -> None:
            activity.heartbeat(ScanProgress(summary=before.plus(progress.summary),
                                            cursor=progress.cursor, done=progress.done))

        progress = await scan_pages(self._pool, journeys, req.as_of,
                                    concurrency=req.concurrency, page_size=req.page_size,
                                    time_scale=self._time_scale, cursor=cursor,
                                    max_pages=max(pages_left, 1), on_checkpoint=beat)
        result = ScanProgress(summary=before.plus(progress.summary), cursor=progress.cursor,
                              done=progress.done)
        activity.logger.info("scan pages done", extra={
            "as_of": str(req.as_of), "pages": result.summary.pages,
            "read": result.summary.read, "started": sum(result.summary.started.values()),
            "failed": len(result.summary.failed), "done": result.done})
        return result

    def all(self) -> list:
        return [self.scan_pages]
