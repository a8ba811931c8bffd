"""`lapse list`: journeys found by visibility queries on their search attributes."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import date, datetime, time, timedelta

from rich import box
from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

import contract as sa  # the search-attribute keys
from commands.common import command, temporal
from contract import WORKFLOW_TYPE
from domain.journey import JourneyStatus, Stage
from domain.models import Segment
from domain.plan import TZ

MAX_ROWS = 1000
# Closed journeys without a LapseOutcome (closed before the workflow set it): their outcome
# is read from their result, this many at a time.
RESULT_READS = 8


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="find journeys by stage, segment or grace end",
                       description="List journeys from Temporal's visibility store (the "
                       "same search the Web UI runs; the query is printed with --verbose).")
    p.add_argument("--stage", choices=[s.value for s in Stage])
    p.add_argument("--segment", choices=[s.value for s in Segment if s is not Segment.STANDARD])
    p.add_argument("--grace-ends-before", type=date.fromisoformat, metavar="YYYY-MM-DD",
                   help="journeys whose last day of grace is before this day")
    p.add_argument("--all", action="store_true", help="closed journeys too")
    p.add_argument("--limit", type=int, default=200, metavar="N")
    p.add_argument("--verbose", action="store_true", help="print the visibility query")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=command(run_list))


def visibility_query(stage: str | None = None, segment: str | None = None,
                     grace_ends_before: date | None = None, running_only: bool = True) -> str:
    """The list filter, as typed in the Web UI's search box."""
    parts = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
    if running_only:
        parts.append("ExecutionStatus = 'Running'")
    if stage:
        parts.append(f"{sa.LAPSE_STAGE.name} = '{Stage(stage).value}'")
    if segment:
        parts.append(f"{sa.CUSTOMER_SEGMENT.name} = '{Segment(segment).value}'")
    if grace_ends_before:
        # GraceEndsAt is the moment grace ends: 00:00 after its last day.
        limit = datetime.combine(grace_ends_before, time(), TZ)
        parts.append(f"{sa.GRACE_ENDS_AT.name} <= '{limit.isoformat()}'")
    return " AND ".join(parts)


def last_day_of_grace(grace_ends_at: datetime) -> date:
    """The day `lapse status`, the messages and the console call "grace ends": the last
    day of grace, the day before the search attribute's moment (00:00 on the lapse day)."""
    return (grace_ends_at.astimezone(TZ) - timedelta(microseconds=1)).date()


def row(execution: WorkflowExecution) -> dict:
    attrs = execution.typed_search_attributes
    grace = attrs.get(sa.GRACE_ENDS_AT)
    nxt = attrs.get(sa.NEXT_REMINDER_AT)
    outstanding = attrs.get(sa.OUTSTANDING_AMOUNT)
    return {
        "policy_number": attrs.get(sa.POLICY_NUMBER),
        "workflow_id": execution.id,
        "run_id": execution.run_id,
        "status": execution.status.name.lower() if execution.status else None,
        "stage": attrs.get(sa.LAPSE_STAGE),
        "outcome": attrs.get(sa.LAPSE_OUTCOME),
        "trigger": attrs.get(sa.LAPSE_TRIGGER),
        "product_kind": attrs.get(sa.PRODUCT_KIND),
        "segments": attrs.get(sa.CUSTOMER_SEGMENT) or [],
        "grace_ends_at": last_day_of_grace(grace).isoformat() if grace else None,
        "lapses_at": grace.astimezone(TZ).isoformat() if grace else None,
        "next_reminder_at": nxt.astimezone(TZ).isoformat() if nxt else None,
        "outstanding": outstanding,
    }


async def list_journeys(client: Client, query: str, limit: int = MAX_ROWS) -> list[dict]:
    executions = [e async for e in client.list_workflows(query, limit=limit)]
    rows = [row(e) for e in executions]
    await _outcomes_from_results(client, [
        r for r, e in zip(rows, executions, strict=True)
        if r["outcome"] is None and e.status is WorkflowExecutionStatus.COMPLETED])
    return sorted(rows, key=lambda r: (r["policy_number"] or "", r["status"] != "running"))


async def _outcomes_from_results(client: Client, rows: list[dict]) -> None:
    """A completed journey returns its status, outcome included: read it where the search
    attribute is missing (journeys that closed before the workflow set LapseOutcome)."""
    reads = asyncio.Semaphore(RESULT_READS)

    async def one(r: dict) -> None:
        async with reads:
            try:
                result = await client.get_workflow_handle(
                    r["workflow_id"], run_id=r["run_id"], result_type=JourneyStatus
                ).result(follow_runs=False)
            except (RPCError, ValueError):  # gone past retention, or not a journey's result
                return
            r["outcome"] = result.outcome.value if result.outcome else None

    await asyncio.gather(*(one(r) for r in rows))


def stage_text(r: dict) -> str:
    """`at_risk`; a closed journey by its outcome (`closed: paid`); a run that did not
    close by itself by what ended it (`at_risk (terminated)`)."""
    stage = r["stage"] or "-"
    if r["status"] in ("running", None):
        return stage
    if r["outcome"]:
        return f"closed: {r['outcome']}"
    return f"{stage} ({r['status'].replace('_', ' ')})"


def _at(value: str | None) -> str:
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M") if value else "-"


def journeys_table(rows: list[dict]) -> Table:
    table = Table(title=f"{len(rows)} journeys", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for head in ("policy", "stage", "trigger", "segments", "grace ends", "next reminder"):
        table.add_column(head, no_wrap=True)
    table.add_column("outstanding", justify="right", no_wrap=True)
    for r in rows:
        table.add_row(r["policy_number"] or r["workflow_id"], stage_text(r),
                      r["trigger"] or "-", ", ".join(r["segments"]) or "-",
                      r["grace_ends_at"] or "-", _at(r["next_reminder_at"]), _money(r))
    return table


def journeys_lines(rows: list[dict]) -> str:
    """Three short lines a journey, for a terminal narrower than the table."""
    lines = [f"{len(rows)} journeys"]
    for r in rows:
        lines += [f"{r['policy_number'] or r['workflow_id']}  {stage_text(r)}",
                  f"  {r['trigger'] or '-'}; segments {', '.join(r['segments']) or '-'}",
                  f"  grace ends {r['grace_ends_at'] or '-'}; next reminder "
                  f"{_at(r['next_reminder_at'])}; outstanding {_money(r)}"]
    return "\n".join(lines)


def _money(r: dict) -> str:
    return f"¥{r['outstanding']:,.2f}" if r["outstanding"] is not None else "-"


def shown(rows: list[dict], console: Console) -> tuple[Table | str, Console]:
    """The journeys as this console can show them without cutting a value: the table as
    wide as it needs when piped or redirected (for grep and friends), on a terminal the
    table when it fits, else two lines a journey (a value wraps, none is cut)."""
    table = journeys_table(rows)
    width = Console(width=10_000).measure(table).maximum
    if not console.is_terminal:
        return table, Console(width=width, color_system=None)
    return (table if width <= console.width else journeys_lines(rows)), console


async def run_list(args: argparse.Namespace, settings) -> int:
    query = visibility_query(args.stage, args.segment, args.grace_ends_before,
                             running_only=not args.all)
    async with temporal(settings) as client:
        rows = await list_journeys(client, query, args.limit)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    table, console = shown(rows, Console())
    if args.verbose:
        console.print(f"query: {query}", markup=False, soft_wrap=True)
    console.print(table, markup=False, highlight=False)
    return 0
