"""`lapse scan`: start the journeys of every policy at risk, now or as a daily Schedule."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timedelta

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleOverlapPolicy,
)

from activities.scan import DEFAULT_PAGE_SIZE, scan_policies
from commands.common import command, database, temporal
from commands.schedules import print_schedule, shanghai_schedule, upsert_schedule
from domain.models import ProductRules
from domain.plan import TZ
from domain.scan import ScanInput, ScanSummary
from infra.journeys import Journeys
from workflows.scan import SCHEDULE_ID, DailyScanWorkflow

# A missed run (cluster down, schedule paused) is still taken within a day: the scan is
# idempotent, so catching up is safe, and after a day the next run covers the same ground.
CATCHUP_WINDOW = timedelta(days=1)

# The Schedule runs at the default send time (10:00): a policy due yesterday has its first
# reminder due as its journey starts, so the journey sends it at once instead of waiting
# for it (a timer and a search-attribute upsert: two billable actions a journey), and a
# premium paid that morning starts no journey at all.
DEFAULT_HOUR = ProductRules.model_fields["send_time"].default.hour


def _whole(low: int, high: int):
    """An argparse type: a whole number from `low` to `high` (the workflow input's bounds)."""
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}")
        return int(text)
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="start journeys for every policy at risk",
                       description="Start the journey of every policy at risk on a day "
                       "(overdue premium, unpaid renewal, failed debit, rescission); a "
                       "policy whose journey runs already keeps it.")
    p.add_argument("--as-of", type=date.fromisoformat, metavar="YYYY-MM-DD",
                   help="the day to scan (default: today in Shanghai)")
    p.add_argument("--schedule", action="store_true",
                   help="install or update the daily Temporal Schedule instead of scanning now")
    p.add_argument("--hour", type=int, default=DEFAULT_HOUR, choices=range(24), metavar="H",
                   help="with --schedule: the hour (Shanghai) it runs at (default "
                   f"{DEFAULT_HOUR}, the default send time)")
    p.add_argument("--concurrency", type=_whole(1, 500), default=20, metavar="N",
                   help="journey starts in flight at once (default 20)")
    p.add_argument("--page-size", type=_whole(1, 10_000), default=DEFAULT_PAGE_SIZE, metavar="N",
                   help=f"policies read per database query (default {DEFAULT_PAGE_SIZE})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=command(run_scan))


async def run_scan(args: argparse.Namespace, settings) -> int:
    if args.schedule:
        async with temporal(settings) as client:
            desc = await install_schedule(client, settings.temporal_task_queue, args.hour,
                                          args.concurrency, page_size=args.page_size)
        print_schedule(desc, f"DailyScanWorkflow every day at {args.hour:02d}:00 Asia/Shanghai",
                       as_json=args.json)
        return 0
    now = datetime.now(TZ)
    as_of = args.as_of or now.date()
    journey_start = datetime.combine(as_of, now.timetz()) if as_of != now.date() else None
    async with database(settings) as pool, temporal(settings) as client:
        journeys = Journeys(client, settings.temporal_task_queue)
        console = Console(stderr=True)
        # The at-risk set is not counted beforehand (that would read it twice): the bar
        # counts the policies done.
        with Progress(TextColumn("scanning {task.description}"), BarColumn(),
                      TextColumn("{task.completed} policies"), console=console,
                      transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task(str(as_of), total=None)
            summary = await scan_policies(
                pool, journeys, as_of, concurrency=args.concurrency,
                page_size=args.page_size, time_scale=settings.time_scale,
                journey_start=journey_start,
                on_progress=lambda _n, _o: progress.advance(task))
    if args.json:
        print(summary.model_dump_json())
    else:
        Console().print(summary_table(summary))
    if summary.failed:
        print(f"lapse scan: {len(summary.failed)} policies failed: "
              f"{', '.join(summary.failed)}; run the scan again", file=sys.stderr)
        return 1
    return 0


def summary_table(summary: ScanSummary) -> Table:
    table = Table(title=f"scan of {summary.as_of}: {summary.read} policies at risk read "
                        f"in {summary.pages} pages")
    table.add_column("result")
    table.add_column("why")
    table.add_column("policies", justify="right")
    for label, counts in (("started", summary.started),
                          ("already running", summary.already_running),
                          ("skipped", summary.skipped)):
        for why, n in sorted(counts.items()):
            table.add_row(label, why, str(n))
        if not counts:
            table.add_row(label, "-", "0")
    if summary.failed:
        table.add_row("failed", "see stderr", str(len(summary.failed)))
    return table


def daily_schedule(task_queue: str, hour: int = DEFAULT_HOUR, concurrency: int = 20,
                   page_size: int = DEFAULT_PAGE_SIZE) -> Schedule:
    return shanghai_schedule(
        ScheduleActionStartWorkflow(
            DailyScanWorkflow.run, ScanInput(concurrency=concurrency, page_size=page_size),
            id=SCHEDULE_ID, task_queue=task_queue,
            static_summary="Daily scan: start the journeys of policies at risk"),
        hour=hour,
        # SKIP: a scan still running when the next is due means the next one would only
        # find the same journeys running; buffering it would just pile up work.
        overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW)


async def install_schedule(client: Client, task_queue: str, hour: int = DEFAULT_HOUR,
                           concurrency: int = 20, schedule_id: str = SCHEDULE_ID,
                           page_size: int = DEFAULT_PAGE_SIZE) -> ScheduleDescription:
    """Create the daily scan schedule, or update it in place when it exists."""
    return await upsert_schedule(client, schedule_id, daily_schedule(task_queue, hour,
                                                                     concurrency, page_size))
