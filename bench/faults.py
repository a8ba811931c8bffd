"""Nothing lost, nothing sent twice: a few hundred journeys through provider and database
outages and a worker killed mid-send, counted message by message (issue 10).

Each scenario runs on a fresh embedded stack (dev server, PostgreSQL, `lapse sandbox`, one
`lapse-worker` process) with N synthetic never-paying customers (SMS, e-mail, WeChat, a
postal address), started the way the daily scan starts them, in compressed time. Halfway
through the burst of first reminders (half of the first-reminder SMS attempted) the
scenario's fault begins:

  none        no fault: the baseline, which must count everything delivered
  sms_503     the SMS provider answers 503 for --outage-seconds (default 300)
  sms_429     the SMS provider answers 429 with Retry-After for --storm-seconds (default 60)
  db_outage   PostgreSQL stops (fast shutdown) and starts again on the same data folder and
              socket after --db-outage-seconds (default 300)
  worker_kill the SMS provider answers slowly (--slow-delay seconds, inside the client's
              timeout), the worker is killed with SIGKILL while sends are in flight, and a
              new worker starts --restart-after seconds later

When every journey has closed, each planned message (the planner's plan of each journey,
on the loaded policies: every milestone due by the journey's close, every channel, to the
policyholder) is looked up in the records and the sandbox's outbox:

  delivered   on record as sent or delivered
  failed      on record as failed or bounced, with its reason (and whether the milestone
              reached the customer on another channel)
  silent      never attempted and not on record, or left queued or sending
  unknown     on record as unknown (and how many of those the provider never got)
  sent twice  the outbox holds two messages or more for one notification reference

It exits 1 when any scenario counts a silent message or one sent twice (or a journey that
did not close in time).

    .venv/bin/python bench/faults.py                                  # the issue's figures
    .venv/bin/python bench/faults.py --journeys 40 --outage-seconds 60 --storm-seconds 20 \\
        --db-outage-seconds 60                                        # a few minutes
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BenchStack,
    Child,
    arguments,
    at_shanghai,
    gather_limited,
    machine,
    run,
    synthetic_policies,
    table,
    today,
)

from domain.calendar import BusinessCalendar  # noqa: E402
from domain.models import ACCEPTED  # noqa: E402
from domain.plan import JourneyPlan  # noqa: E402
from domain.planner import plan_journey  # noqa: E402
from domain.scan import SkipReason, classify  # noqa: E402
from domain.triggers import segments_for  # noqa: E402
from infra import store  # noqa: E402

SCENARIOS = ("none", "sms_503", "sms_429", "db_outage", "worker_kill")
REFUSED = ("failed", "bounced")
HOLDER_ROLES = ("policyholder", "group_employer")
_RECORDS = """
SELECT policy_number, milestone, channel, recipient_role, status, error_code, provider_ref
FROM notifications
"""


@dataclass
class Count:
    """What became of one scenario's planned messages."""

    journeys: int = 0
    still_running: int = 0
    planned: int = 0
    delivered: Counter[str] = field(default_factory=Counter)  # by status
    failed: Counter[str] = field(default_factory=Counter)  # by reason
    failed_reached_otherwise: int = 0
    silent: Counter[str] = field(default_factory=Counter)  # by state: no record, queued, sending
    silent_by_milestone: Counter[str] = field(default_factory=Counter)
    unknown: int = 0
    unknown_not_at_provider: int = 0
    ever_unknown: int = 0  # records that were 'unknown' at some point (a callback may settle)
    sent_twice: int = 0
    extra: Counter[str] = field(default_factory=Counter)  # records beyond the plan, by status
    tasks: Counter[str] = field(default_factory=Counter)
    fault_window: str = "-"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.silent and not self.sent_twice and not self.still_running


async def plans(stack: BenchStack, numbers: list[str], as_of, starts_at) -> dict[str,
                                                                                JourneyPlan]:
    """The plan each journey follows: the scan's rule and the planner on the loaded policies,
    from the same moment the journeys start at."""
    out = {}
    async with stack.pool.acquire() as conn:
        calendar = BusinessCalendar(await store.load_calendar_years(conn))
        for number in numbers:
            bundle = await store.load_policy(conn, number, with_members=False)
            trigger = classify(bundle.policy, bundle.product, as_of)
            if isinstance(trigger, SkipReason):
                raise RuntimeError(f"{number} is not at risk on {as_of}: {trigger.value}")
            segments = segments_for(bundle.policy, bundle.product, bundle.policyholder,
                                    starts_at.date())
            out[number] = plan_journey(trigger, bundle.product, segments, calendar,
                                       starts_at=starts_at)
    return out


async def first_sms_attempted(stack: BenchStack) -> int:
    return await stack.pool.fetchval(
        "SELECT count(*) FROM notifications WHERE milestone = 'first_reminder' "
        "AND channel = 'sms' AND status NOT IN ('queued', 'sending')")


async def halfway(stack: BenchStack, journeys: int) -> None:
    """Until half of the first-reminder SMS have been attempted: the middle of the burst."""
    while True:  # the records are in PostgreSQL: nothing to await but a query
        if await first_sms_attempted(stack) >= max(1, journeys // 2):
            return
        await asyncio.sleep(0.25)


class Driver:
    """Brings one scenario's fault at the middle of the burst, and takes it away."""

    def __init__(self, stack: BenchStack, args: argparse.Namespace, scenario: str):
        self.stack = stack
        self.args = args
        self.scenario = scenario
        self.window = "-"
        self.started = False
        self.workers: list[Child] = []

    async def run(self, journeys: int) -> None:
        if self.scenario == "none":
            return
        await halfway(self.stack, journeys)
        self.started = True
        began = time.monotonic()
        s = self.scenario
        if s == "sms_503":
            await self.stack.add_fault({"fault": "unavailable", "api": "sms"})
            await asyncio.sleep(self.args.outage_seconds)
            await self.stack.clear_faults()
        elif s == "sms_429":
            await self.stack.add_fault({"fault": "rate_limited", "api": "sms",
                                        "retry_after": self.args.retry_after})
            await asyncio.sleep(self.args.storm_seconds)
            await self.stack.clear_faults()
        elif s == "db_outage":
            await asyncio.to_thread(self.stack.stop_postgres)
            await asyncio.sleep(self.args.db_outage_seconds)
            await asyncio.to_thread(self.stack.start_postgres)
        elif s == "worker_kill":
            await self.stack.add_fault({"fault": "timeout", "api": "sms",
                                        "delay": self.args.slow_delay})
            await asyncio.sleep(self.args.kill_after)
            in_flight = await self.stack.pool.fetchval(
                "SELECT count(*) FROM notifications WHERE status = 'sending'")
            self.workers[0].kill()
            killed = time.monotonic() - began
            await asyncio.sleep(self.args.restart_after)
            self.workers.append(await self.stack.start_worker())
            await asyncio.sleep(max(0.0, self.args.slow_seconds - (time.monotonic() - began)))
            await self.stack.clear_faults()
            self.window = (f"slow SMS {time.monotonic() - began:.0f} s; SIGKILL at "
                           f"{killed:.0f} s with {in_flight} records 'sending', new worker "
                           f"{self.args.restart_after:g} s later")
            return
        self.window = f"{time.monotonic() - began:.0f} s"


def count(plans_by_policy: dict[str, JourneyPlan], journey_now: dict, records, outbox,
          tasks) -> Count:
    c = Count(journeys=len(plans_by_policy))
    mine = defaultdict(dict)  # policy -> (milestone, channel) -> record
    extra_records = []
    planned_keys = {(p, m.key, ch) for p, plan in plans_by_policy.items()
                    for m in plan.milestones for ch in m.channels}
    for r in records:
        key = (r["policy_number"], r["milestone"], r["channel"])
        if r["recipient_role"] in HOLDER_ROLES and key in planned_keys:
            mine[r["policy_number"]][(r["milestone"], r["channel"])] = r
        else:
            extra_records.append(r)
    refs = Counter(e["ref"] or f"{e['api']}|{e['to']}|{e['body']}" for e in outbox)
    at_provider = {ref for ref in refs if ref}
    c.sent_twice = sum(1 for n in refs.values() if n > 1)
    reached_elsewhere = set()
    for r in extra_records:
        c.extra[r["status"]] += 1
        if r["status"] in ACCEPTED:
            reached_elsewhere.add((r["policy_number"], r["milestone"]))
    for number, plan in plans_by_policy.items():
        now = journey_now.get(number)
        for m in plan.milestones:
            if now is not None and m.at > now:
                continue  # not due when the journey closed
            reached = any(mine[number].get((m.key, ch), {}).get("status") in ACCEPTED
                          for ch in m.channels)
            reached = reached or (number, m.key) in reached_elsewhere
            for ch in m.channels:
                c.planned += 1
                r = mine[number].get((m.key, ch))
                status = r["status"] if r else None
                if status in ACCEPTED:
                    c.delivered[status] += 1
                elif status in REFUSED:
                    c.failed[r["error_code"] or "no reason"] += 1
                    c.failed_reached_otherwise += reached
                elif status == "unknown":
                    c.unknown += 1
                    c.unknown_not_at_provider += r["provider_ref"] not in at_provider
                else:
                    c.silent[status or "no record"] += 1
                    c.silent_by_milestone[f"{m.key} {ch}"] += 1
    c.tasks.update({t["kind"]: t["n"] for t in tasks})
    return c


async def scenario(args: argparse.Namespace, name: str) -> Count:
    n = args.journeys
    day = today() - timedelta(days=1)
    starts_at = at_shanghai(day, 10)
    began = time.monotonic()
    async with BenchStack(f"faults-{name}", time_scale=args.time_scale) as stack:
        driver = Driver(stack, args, name)
        driver.workers.append(await stack.start_worker())
        lines, numbers = synthetic_policies(n, series=0, due_date=day - timedelta(days=10))
        await stack.load(lines)
        planned = await plans(stack, numbers, day, starts_at)
        fault = asyncio.create_task(driver.run(n))
        try:
            await stack.scan(numbers, day, starts_at, concurrency=args.concurrency)

            shown = [0.0]

            def progress(open_now: int) -> None:
                if time.monotonic() - shown[0] >= 30:
                    shown[0] = time.monotonic()
                    print(f"  {name}: {shown[0] - began:4.0f} s, {open_now} of {n} journeys "
                          "open", file=sys.stderr, flush=True)

            still_running = await stack.wait_closed(numbers, args.timeout, progress)
            if driver.started:
                await fault  # a fault longer than the journeys still ends before counting
            elif name != "none":
                driver.window = "never began: the burst ended before its middle was seen"
        finally:
            fault.cancel()
        await asyncio.sleep(3)  # the last delivery callbacks
        # The journey's own last status is its result: read from the close event, no replay.
        closed = [x for x in numbers if x not in still_running]
        statuses = await gather_limited((stack.journeys().handle(x).result() for x in closed),
                                        16)
        journey_now = {x: s.journey_now for x, s in zip(closed, statuses, strict=True)}
        records = await stack.pool.fetch(_RECORDS)
        tasks = await stack.pool.fetch(
            "SELECT kind, count(*) AS n FROM agent_tasks GROUP BY kind")
        ever_unknown = await stack.pool.fetchval(
            "SELECT count(DISTINCT notification_id) FROM notification_events "
            "WHERE status = 'unknown'")
        outbox = await stack.outbox()
    done = {x: p for x, p in planned.items() if x not in still_running}
    c = count(done, journey_now, records, outbox, tasks)
    c.still_running = len(still_running)
    c.ever_unknown = ever_unknown
    c.fault_window = driver.window
    c.seconds = time.monotonic() - began
    return c


def summary(results: dict[str, Count | str], args: argparse.Namespace) -> None:
    print(f"\n{args.journeys} journeys per scenario, time x{args.time_scale:,.0f}, fault from "
          f"the middle of the first-reminder burst ({machine()})\n")
    rows = []
    for name, c in results.items():
        if isinstance(c, str):
            rows.append([name, "-", "-", "-", "-", "-", "-", "-", "ERROR (above)"])
            continue
        verdict = "ok" if c.ok else "FAILS"
        if c.unknown_not_at_provider:
            verdict += f" ({c.unknown_not_at_provider} unknown never sent)"
        rows.append([name, c.journeys - c.still_running, c.planned, sum(c.delivered.values()),
                     sum(c.failed.values()), sum(c.silent.values()), c.sent_twice, c.unknown,
                     verdict])
    print(table(["scenario", "journeys", "planned", "delivered", "failed", "silent",
                 "sent twice", "unknown", "goal: 0 silent, 0 twice"], rows))


def details(name: str, c: Count, args: argparse.Namespace) -> None:
    print(f"\n{name} ({c.journeys} journeys, {c.seconds:.0f} s; fault {c.fault_window})")
    print(f"  planned     {c.planned}")
    print(f"  delivered   {_counts(c.delivered)}")
    print(f"  failed      {_counts(c.failed)}"
          + (f"; of them {c.failed_reached_otherwise} reached on another channel"
             if c.failed else ""))
    print(f"  silent      {_counts(c.silent)}"
          + (f"; by message: {_counts(c.silent_by_milestone, 6)}" if c.silent else ""))
    print(f"  unknown     {c.unknown}"
          + (f" ({c.unknown_not_at_provider} never reached the provider)" if c.unknown else "")
          + f"; {c.ever_unknown} records were unknown at some point")
    print(f"  sent twice  {c.sent_twice}")
    print(f"  beyond plan {_counts(c.extra)} (fallbacks, emergency contacts)")
    print(f"  tasks       {_counts(c.tasks)}")
    if c.still_running:
        print(f"  NOT CLOSED  {c.still_running} journeys still running after "
              f"{args.timeout:.0f} s (left out of the counts)")
    sys.stdout.flush()


def _counts(counter: Counter, most: int | None = None) -> str:
    if not counter:
        return "0"
    total = sum(counter.values())
    parts = ", ".join(f"{k} {v}" for k, v in counter.most_common(most))
    return f"{total} ({parts})"


async def bench(args: argparse.Namespace) -> int:
    results: dict[str, Count | str] = {}
    for name in args.scenarios:
        print(f"scenario {name}...", file=sys.stderr, flush=True)
        try:
            results[name] = await scenario(args, name)
        except Exception as err:  # one broken scenario must not hide the others' figures
            results[name] = f"{type(err).__name__}: {err}"[:200]
            print(f"\n{name}: {results[name]}", flush=True)
            continue
        details(name, results[name], args)  # each as it ends: a long run shows as it goes
    summary(results, args)
    return 0 if all(isinstance(c, Count) and c.ok for c in results.values()) else 1


def main() -> None:
    parser = arguments(__doc__, time_scale=86_400, time_scale_help=" (default: a day a "
                       "second)", concurrency=20, timeout=3600,
                       timeout_help="the journeys of a scenario to close")
    parser.add_argument("--journeys", type=int, default=300)
    parser.add_argument("--scenarios", type=lambda v: v.split(","), default=list(SCENARIOS),
                        help=f"comma-separated, of {', '.join(SCENARIOS)} (default all)")
    parser.add_argument("--outage-seconds", type=float, default=300, help="sms_503's length")
    parser.add_argument("--storm-seconds", type=float, default=60, help="sms_429's length")
    parser.add_argument("--retry-after", type=float, default=2,
                        help="sms_429's Retry-After, seconds")
    parser.add_argument("--db-outage-seconds", type=float, default=300)
    parser.add_argument("--slow-delay", type=float, default=8,
                        help="worker_kill: seconds the SMS provider takes to answer")
    parser.add_argument("--slow-seconds", type=float, default=30,
                        help="worker_kill: how long the SMS provider stays slow")
    parser.add_argument("--kill-after", type=float, default=10,
                        help="worker_kill: seconds into the slow answers of the SIGKILL")
    parser.add_argument("--restart-after", type=float, default=2,
                        help="worker_kill: seconds from the kill to the new worker")
    args = parser.parse_args()
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    run(lambda: bench(args))


if __name__ == "__main__":
    main()
