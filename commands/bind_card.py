"""`lapse bind-card`: ask the customers whose debits keep failing to bind a new card, once
by hand or as a monthly Temporal Schedule."""

from __future__ import annotations

import argparse
from datetime import date, datetime, timedelta

from rich.console import Console
from rich.table import Table
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    ScheduleRange,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from commands.common import UserError, command, temporal
from commands.schedules import print_schedule, shanghai_schedule, upsert_schedule
from domain.campaign import CampaignInput, CampaignSummary, campaign_month
from domain.plan import TZ
from workflows.bind_card import SCHEDULE_ID, BindCardCampaignWorkflow

# A run missed while the cluster was down is still worth taking within a week: the
# campaign is idempotent per customer and month.
CATCHUP_WINDOW = timedelta(days=7)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bind-card", help="ask customers whose debits keep failing to bind a new card",
        description="Run the bind-a-new-card campaign on a worker and wait for it: the "
        "policyholders the monthly review lists (repeated debit failures) get one SMS and "
        "WeChat message a month, none in a running journey's quiet period.")
    p.add_argument("--month", type=_month, metavar="YYYY-MM",
                   help="the campaign month (default: this month in Shanghai)")
    p.add_argument("--schedule", action="store_true",
                   help="install or update the monthly Temporal Schedule instead of running")
    p.add_argument("--day", type=int, default=2, choices=range(1, 29), metavar="D",
                   help="with --schedule: the day of the month it runs on (default 2)")
    p.add_argument("--hour", type=int, default=10, choices=range(8, 21), metavar="H",
                   help="with --schedule: the hour (Shanghai, 8-20) it runs at (default 10)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=command(run_bind_card))


def _month(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise argparse.ArgumentTypeError("must be a month as YYYY-MM, e.g. 2026-12") from None


def monthly_schedule(task_queue: str, day: int = 2, hour: int = 10) -> Schedule:
    return shanghai_schedule(
        ScheduleActionStartWorkflow(
            BindCardCampaignWorkflow.run, CampaignInput(), id=SCHEDULE_ID,
            task_queue=task_queue,
            static_summary="Monthly campaign: ask customers whose debits keep failing to "
                           "bind a new card"),
        hour=hour, day_of_month=ScheduleRange(day),
        # SKIP: a campaign still running when the next month's is due is far behind;
        # the next one would ask the same customers.
        overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW)


async def install_schedule(client: Client, task_queue: str, day: int = 2, hour: int = 10,
                           schedule_id: str = SCHEDULE_ID) -> ScheduleDescription:
    return await upsert_schedule(client, schedule_id, monthly_schedule(task_queue, day, hour))


async def run_once(client: Client, task_queue: str, month: date) -> CampaignSummary:
    """Run the campaign of `month` on a worker and wait; a run of that month already
    under way is waited for instead of started again."""
    return await client.execute_workflow(
        BindCardCampaignWorkflow.run, CampaignInput(month=month),
        id=f"{SCHEDULE_ID}-{month:%Y-%m}", task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=f"Bind-a-new-card campaign of {month:%Y-%m}, run by hand")


async def run_bind_card(args: argparse.Namespace, settings) -> int:
    queue = settings.temporal_task_queue
    if args.schedule:
        async with temporal(settings) as client:
            desc = await install_schedule(client, queue, args.day, args.hour)
        print_schedule(desc, f"BindCardCampaignWorkflow on day {args.day} of every month at "
                       f"{args.hour:02d}:00 Asia/Shanghai", as_json=args.json)
        return 0
    this_month = campaign_month(datetime.now(TZ))
    month = args.month or this_month
    if month > this_month:
        raise UserError(f"{month:%Y-%m} is a future month: a campaign runs for this month "
                        "or one before it")
    async with temporal(settings) as client:
        summary = await run_once(client, queue, month)
    if args.json:
        print(summary.model_dump_json())
        return 0
    table = Table(title=f"bind-a-new-card campaign {summary.month:%Y-%m}: "
                        f"{summary.listed} customers listed by the review")
    table.add_column("customers")
    table.add_column("count", justify="right")
    for label, n in (("asked (a channel took it)", summary.result.sent),
                     ("in a journey's quiet period (not asked yet)", summary.result.quiet),
                     ("could not be asked", summary.result.failed)):
        table.add_row(label, str(n))
    Console().print(table)
    return 0
