"""`lapse list`: journeys found by visibility queries on their search attributes."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, time

from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowExecution

from commands.common import command, temporal
from domain.journey import WORKFLOW_TYPE, Stage
from domain.models import Segment
from domain.plan import TZ
from workflows import search_attributes as sa

MAX_ROWS = 1000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="find journeys by stage, segment or grace end",
                       description="List journeys from Temporal's visibility store (the "
                       "same search the Web UI runs; the query is printed with --verbose).")
    p.add_argument("--stage", choices=[s.value for s in Stage])
    p.add_argument("--segment", choices=[s.value for s in Segment if s is not Segment.STANDARD])
    p.add_argument("--grace-ends-before", type=date.fromisoformat, metavar="YYYY-MM-DD",
                   help="journeys whose grace ends (lapse time) before this day")
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
        limit = datetime.combine(grace_ends_before, time(), TZ)
        parts.append(f"{sa.GRACE_ENDS_AT.name} < '{limit.isoformat()}'")
    return " AND ".join(parts)


def row(execution: WorkflowExecution) -> dict:
    attrs = execution.typed_search_attributes
    grace = attrs.get(sa.GRACE_ENDS_AT)
    nxt = attrs.get(sa.NEXT_REMINDER_AT)
    outstanding = attrs.get(sa.OUTSTANDING_AMOUNT)
    return {
        "policy_number": attrs.get(sa.POLICY_NUMBER),
        "workflow_id": execution.id,
        "status": execution.status.name.lower() if execution.status else None,
        "stage": attrs.get(sa.LAPSE_STAGE),
        "trigger": attrs.get(sa.LAPSE_TRIGGER),
        "product_kind": attrs.get(sa.PRODUCT_KIND),
        "segments": attrs.get(sa.CUSTOMER_SEGMENT) or [],
        "grace_ends_at": grace.astimezone(TZ).isoformat() if grace else None,
        "next_reminder_at": nxt.astimezone(TZ).isoformat() if nxt else None,
        "outstanding": outstanding,
    }


async def list_journeys(client: Client, query: str, limit: int = MAX_ROWS) -> list[dict]:
    rows = [row(e) async for e in client.list_workflows(query, limit=limit)]
    return sorted(rows, key=lambda r: r["policy_number"] or "")


async def run_list(args: argparse.Namespace, settings) -> int:
    query = visibility_query(args.stage, args.segment, args.grace_ends_before,
                             running_only=not args.all)
    async with temporal(settings) as client:
        rows = await list_journeys(client, query, args.limit)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    console = Console()
    if args.verbose:
        console.print(f"query: {query}", markup=False)
    table = Table(title=f"{len(rows)} journeys")
    for col in ("policy", "stage", "trigger", "segments", "grace ends", "next reminder",
                "outstanding"):
        table.add_column(col, justify="right" if col == "outstanding" else "left")
    for r in rows:
        table.add_row(r["policy_number"] or r["workflow_id"],
                      r["stage"] + ("" if r["status"] == "running" else f" ({r['status']})"),
                      r["trigger"] or "-", ", ".join(r["segments"]) or "-",
                      (r["grace_ends_at"] or "-")[:16], (r["next_reminder_at"] or "-")[:16],
                      f"¥{r['outstanding']:,.2f}" if r["outstanding"] is not None else "-")
    console.print(table)
    return 0
