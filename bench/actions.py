"""Billable Temporal actions per journey kind, counted from the journeys' real histories.

Runs five sample journeys side by side on the embedded stack (dev server, PostgreSQL, the
sandbox providers, one `lapse-worker`) in compressed time, playing the customer as the
demo does: never paid (eight months to the last follow-up), paid in grace (after the
first reminder), lapsed and reinstated, a group policy (not renewed), a rescission. When
every journey has closed it reads every run of each journey's history and counts what
Temporal Cloud bills (docs.temporal.io/cloud/actions): the workflow start (each run: a
continue-as-new run is billed as a start), timers started, activities scheduled and each
retry, search-attribute upserts, signals and updates received, local-activity markers
(one per workflow task), child workflows (two each). Queries are billed too but never
reach a history; the bench's own status polling is not the journey's cost and is left out.

The journeys start as the daily Schedule starts them: at its hour (the default send time,
10:00 Shanghai) on the latest business day up to today, so the figures do not move with
the time of day the bench runs. One more never-paid journey starts that day at 06:00,
before the SMS window: its first reminder waits until 08:00, one timer and one upsert
more (a journey started by a debit failure at night, or on a day before its first
reminder's, has that shape).

    .venv/bin/python bench/actions.py [--time-scale 176400] [--timeout 900]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    SAMPLE,
    TZ,
    BenchStack,
    arguments,
    at_shanghai,
    run,
    table,
    verdict,
)
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402

from commands.demo_personas import (  # noqa: E402
    GROUP,
    NEVER_PAYS,
    PAY_IN_GRACE,
    REINSTATED,
    RESCINDED,
    Player,
    play,
)
from commands.scan import DEFAULT_HOUR  # noqa: E402
from contract import workflow_id  # noqa: E402
from domain.calendar import BusinessCalendar  # noqa: E402
from infra import store  # noqa: E402
from infra.journeys import PaymentSystem  # noqa: E402

EARLY_HOUR = 6  # before the SMS window (08:00): the first reminder waits for it
# (kind, sample policy, how its customer behaves, the hour its journey starts)
KINDS = (
    ("never paid (8 months)", "P2026000001", NEVER_PAYS, DEFAULT_HOUR),
    ("never paid, started 06:00", "P2026000002", NEVER_PAYS, EARLY_HOUR),
    ("paid in grace", "P2026000003", PAY_IN_GRACE, DEFAULT_HOUR),
    ("lapsed, reinstated", "P2026000008", REINSTATED, DEFAULT_HOUR),
    ("group, not renewed", "P2026000007", GROUP, DEFAULT_HOUR),
    ("rescission", "P2026000005", RESCINDED, DEFAULT_HOUR),
)
GOALS = {"never paid (8 months)": 30}
DEMO_SCALE = 176_400  # eight months in about two minutes, as the demo runs
COLUMNS = ("starts", "timers", "activities", "retries", "upserts", "signals", "updates",
           "markers", "children", "continue-as-new")


@dataclass
class Actions:
    counts: Counter[str] = field(default_factory=Counter)
    activity_types: Counter[str] = field(default_factory=Counter)
    runs: int = 0

    @property
    def total(self) -> int:
        # A continue-as-new is billed as the next run's start, already counted.
        return sum(n for k, n in self.counts.items() if k != "continue-as-new")


# The events that are one billable action each, by the column they count in.
_ONE_ACTION = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "starts",
    EventType.EVENT_TYPE_TIMER_STARTED: "timers",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "upserts",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals",
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "signals",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "updates",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED: "options updated",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continue-as-new",
}


def count_history(events, into: Actions) -> str | None:
    """Add one run's billable actions; the next run's id when it continued as new."""
    c = into.counts
    into.runs += 1
    marker_tasks = set()
    for e in events:
        t = e.event_type
        if t in _ONE_ACTION:
            c[_ONE_ACTION[t]] += 1
        if t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            into.activity_types[e.activity_task_scheduled_event_attributes.activity_type.name] += 1
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # Only the last attempt is in history; each earlier one was billed too.
            c["retries"] += max(0, e.activity_task_started_event_attributes.attempt - 1)
        elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker_tasks.add(e.marker_recorded_event_attributes.workflow_task_completed_event_id)
        elif t == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            c["children"] += 2
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            return e.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    c["markers"] += len(marker_tasks)
    return None


async def journey_actions(client: Client, policy_number: str) -> Actions:
    """Every run of the policy's journey, from the first, followed through continue-as-new."""
    wid = workflow_id(policy_number)
    desc = await client.get_workflow_handle(wid).describe()
    run_id = desc.raw_description.workflow_execution_info.first_run_id or desc.run_id
    actions = Actions()
    while run_id:
        history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
        run_id = count_history(history.events, actions)
    return actions


async def scan_day(stack: BenchStack):
    """The latest business day up to today in Shanghai, by the calendar the journeys use."""
    async with stack.pool.acquire() as conn:
        calendar = BusinessCalendar(await store.load_calendar_years(conn))
    return calendar.previous_business_day(datetime.now(TZ).date(), include_today=True)


async def bench(args: argparse.Namespace) -> int:
    async with BenchStack("actions", time_scale=args.time_scale) as stack:
        await stack.start_worker()
        await stack.load(SAMPLE.read_text(encoding="utf-8").splitlines())
        numbers = [number for _, number, _, _ in KINDS]
        day = await scan_day(stack)
        starts = {number: at_shanghai(day, hour) for _, number, _, hour in KINDS}
        began = time.monotonic()
        for hour in sorted({hour for *_, hour in KINDS}):
            await stack.scan([number for _, number, _, h in KINDS if h == hour], day,
                             at_shanghai(day, hour))
        players = [Player(number, role) for _, number, role, _ in KINDS]
        journeys = stack.journeys()
        payments = PaymentSystem(journeys, stack.pool, time_scale=args.time_scale)
        try:
            async with asyncio.timeout(args.timeout):
                await asyncio.gather(*(play(p, journeys, payments, stack.pool,
                                            starts[p.policy_number], args.time_scale)
                                       for p in players))
        except TimeoutError:
            print(f"actions: not every journey closed within {args.timeout:.0f} s",
                  file=sys.stderr)
            return 1
        failed = [p for p in players if p.error]
        if failed:
            print("actions: journeys failed: " + ", ".join(
                f"{p.policy_number} ({p.error})" for p in failed), file=sys.stderr)
            return 1
        await stack.wait_closed(numbers, 60)
        elapsed = time.monotonic() - began
        results = {kind: await journey_actions(stack.client, number)
                   for kind, number, _, _ in KINDS}
    print(f"billable Temporal actions per journey, from {len(KINDS)} real histories "
          f"(started {day} {DEFAULT_HOUR:02d}:00 as the daily scan starts them, one at "
          f"{EARLY_HOUR:02d}:00; time x{args.time_scale:,.0f}, {elapsed:.0f} s)\n")
    outcomes = {p.policy_number: p.status.outcome.value if p.status and p.status.outcome
                else "-" for p in players}
    rows = []
    for kind, number, _, _ in KINDS:
        a = results[kind]
        goal = GOALS.get(kind)
        rows.append([kind, outcomes[number], *(a.counts[c] for c in COLUMNS), a.total,
                     f"<= {goal}" if goal else "-",
                     f"{a.total / goal:.2f}" if goal else "-"])
    print(table(["journey", "outcome", *COLUMNS, "total", "goal", "ratio"], rows))
    print("\nactivities by type:")
    for kind, *_ in KINDS:
        types = results[kind].activity_types
        print(f"  {kind}: " + ", ".join(f"{name} {n}" for name, n in types.most_common()))
    never, goal = results[KINDS[0][0]].total, GOALS[KINDS[0][0]]
    print(f"\nnever-paid journey: figure {never}, goal <= {goal}, ratio {never / goal:.2f}   "
          f"{verdict(never <= goal)}")
    return 0


def main() -> None:
    args = arguments(__doc__, time_scale=DEMO_SCALE, time_scale_help=" (default: the demo's)",
                     timeout=900, timeout_help="every journey to close").parse_args()
    run(lambda: bench(args))


if __name__ == "__main__":
    main()
