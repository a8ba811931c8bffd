"""A burst of first reminders due at one instant: messages per second per channel at the
provider, and CPU per message, with one worker process and with two (issue 14).

For each phase (one `lapse-worker`, then two) N synthetic standard customers (SMS and
WeChat for the first reminder) get their journeys started the way the daily scan starts
them, with the journey clock set so that every first reminder falls due --lead-seconds
after the scan begins (time to start and prepare them all first). From that instant the
bench watches the sandbox providers until every first reminder has been attempted, and
prints per channel the drain rate (accepted messages per second, first to last) against
the configured rate (`LAPSE_SEND_RATES`, default sms=100,wechat=100, shared by the
worker processes;
goal >= 90 %), when the first and the last arrived after the due instant, and the CPU
seconds per message of the worker processes, the dev server and PostgreSQL (psutil) over
the drain, with the sandbox's own (the provider's) beside them and the cores the whole
machine kept busy meanwhile (other people's work included: a machine with no core to
spare is the ceiling). The two-worker phase is compared with the one-worker phase of the
same run. Each phase has its own task queue and customers.

With `--worker-cpu CORES` every `lapse-worker` runs in a CPU cgroup of its own with a CFS
quota of that many cores, as a container's CPU limit gives it in production (root, cgroup
v1's `cpu` controller or v2's `cpu.max`; bench/_common.py). The worker is then the ceiling,
not the machine: with quota q and the worker's CPU per message c, one worker carries q / c
messages a second, two 2q / c. Per phase the bench prints beside the drain the cores each
worker used over it against its quota, the share of CFS periods its quota throttled and
the time throttled (cpu.stat: the quota, not the rate limit or the server, held it back),
the predicted ceiling per channel (workers x q / c / channels) and the drain against it,
and the two-worker drain against the one-worker drain (goal: close to 2, the second worker
raising the ceiling). Pick q so that the capped workers, the dev server, PostgreSQL and the
sandbox fit in the machine's cores, and rates (`--rates`) above the ceiling.

    .venv/bin/python bench/burst.py                        # 2,000 journeys per phase
    .venv/bin/python bench/burst.py --journeys 50 --lead-seconds 40
    .venv/bin/python bench/burst.py --journeys 300 --worker-cpu 0.3   # each worker 0.3 core
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BenchStack,
    Child,
    Throttling,
    add_worker_cpu,
    arguments,
    at_shanghai,
    busy_cores,
    check_worker_cpu,
    machine,
    parse_at,
    run,
    synthetic_policies,
    table,
    today,
)

from domain.calendar import BusinessCalendar  # noqa: E402
from domain.models import MessageKind  # noqa: E402
from domain.planner import plan_journey  # noqa: E402
from domain.scan import classify  # noqa: E402
from domain.triggers import segments_for  # noqa: E402
from infra import store  # noqa: E402

CHANNELS = ("sms", "wechat")
GOAL_SHARE = 0.9
GOAL_SCALING = 1.8  # capped workers: two carry at least 90 % of twice what one carries


@dataclass
class Phase:
    workers: int
    journeys: int
    start_seconds: float = 0.0  # the scan, from its first start to its last
    prepared_by_due: int = 0
    prepared_seconds: float | None = None  # from the scan's beginning to the last prepare
    drain: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # n, first, last
    attempted: int = 0
    cpu_workers: float = 0.0
    cpu_dev: float = 0.0
    cpu_postgres: float = 0.0
    cpu_sandbox: float = 0.0
    busy_cores: float = 0.0  # the whole machine's, over the drain (others' work included)
    drain_seconds: float = 0.0  # from the due instant to the last first reminder attempted
    worker_cpu: list[float] = field(default_factory=list)  # each worker's, over the drain
    throttling: list[Throttling] = field(default_factory=list)  # each capped worker's
    timed_out: bool = False

    def rate(self, channel: str) -> float:
        n, first, last = self.drain.get(channel, (0, 0.0, 0.0))
        return (n - 1) / (last - first) if n > 1 and last > first else float("nan")

    @property
    def messages(self) -> int:
        return max(1, sum(d[0] for d in self.drain.values()))

    def ceiling(self, cores: float) -> float:
        """Messages a second per channel that `workers` workers of `cores` each carry at
        this phase's worker CPU per message."""
        per_message = self.cpu_workers / self.messages
        return self.workers * cores / per_message / len(CHANNELS) if per_message else math.nan


async def first_reminder_at(stack: BenchStack, number: str, due_day):
    """When the planner puts the policy's first reminder, planned from the due day."""
    async with stack.pool.acquire() as conn:
        calendar = BusinessCalendar(await store.load_calendar_years(conn))
        bundle = await store.load_policy(conn, number, with_members=False)
    as_of = due_day + timedelta(days=1)
    trigger = classify(bundle.policy, bundle.product, as_of)
    segments = segments_for(bundle.policy, bundle.product, bundle.policyholder, as_of)
    plan = plan_journey(trigger, bundle.product, segments, calendar,
                        starts_at=at_shanghai(due_day, 0))
    first = next(m for m in plan.milestones if m.kind is MessageKind.FIRST_REMINDER)
    return first.at, first.day


async def count_rows(stack: BenchStack, sql: str, numbers: list[str]) -> int:
    return await stack.pool.fetchval(sql, numbers)


_PREPARED = "SELECT count(*) FROM journeys WHERE policy_number = ANY($1::text[])"
_ATTEMPTED = ("SELECT count(*) FROM notifications WHERE milestone = 'first_reminder' "
              "AND policy_number = ANY($1::text[]) AND status NOT IN ('queued', 'sending')")


async def phase(stack: BenchStack, args: argparse.Namespace, workers: int, series: int,
                due_day) -> Phase:
    n = args.journeys
    result = Phase(workers=workers, journeys=n)
    lines, numbers = synthetic_policies(n, series=series, due_date=due_day)
    await stack.load(lines)
    fr_at, fr_day = await first_reminder_at(stack, numbers[0], due_day)
    queue = f"{stack.task_queue}-{workers}w"
    procs: list[Child] = [await stack.start_worker(queue, cpu=args.worker_cpu)
                          for _ in range(workers)]
    await stack.clear_outbox()
    lead = args.lead_seconds or max(60.0, n / 4)
    journey_start = fr_at - timedelta(seconds=lead * args.time_scale)
    began = time.monotonic()
    due = began + lead  # when the first reminders fall due, if the clock starts at the scan
    scan = asyncio.create_task(stack.scan(numbers, fr_day, journey_start, task_queue=queue,
                                          concurrency=args.concurrency))
    scan.add_done_callback(lambda _t: setattr(result, "start_seconds",
                                              time.monotonic() - began))

    async def watch_prepares() -> None:
        while True:
            if await count_rows(stack, _PREPARED, numbers) >= n:
                result.prepared_seconds = time.monotonic() - began
                return
            await asyncio.sleep(1)

    prepares = asyncio.create_task(watch_prepares())
    await asyncio.sleep(max(0.0, due - time.monotonic()))
    result.prepared_by_due = await count_rows(stack, _PREPARED, numbers)
    cpu = (sum(p.cpu_seconds() for p in procs), stack.dev_server_cpu(),
           stack.sandbox.cpu_seconds(), stack.postgres_cpu())
    each = [p.cpu_seconds() for p in procs]
    throttled = [p.cpu_limit.stat() for p in procs if p.cpu_limit]
    wall_due = time.time()
    machine = psutil.cpu_times()
    deadline = time.monotonic() + args.timeout
    while True:  # the records are in PostgreSQL: nothing to await but a query
        stack.check_alive()
        result.attempted = await count_rows(stack, _ATTEMPTED, numbers)
        if result.attempted >= len(CHANNELS) * n:
            break
        if time.monotonic() > deadline:
            result.timed_out = True
            break
        await asyncio.sleep(0.5)
    result.drain_seconds = time.time() - wall_due
    result.worker_cpu = [p.cpu_seconds() - before for p, before in zip(procs, each, strict=True)]
    result.throttling = [p.cpu_limit.stat() - before
                         for p, before in zip([p for p in procs if p.cpu_limit], throttled,
                                              strict=True)]
    result.cpu_workers = sum(p.cpu_seconds() for p in procs) - cpu[0]
    result.cpu_dev = stack.dev_server_cpu() - cpu[1]
    result.cpu_sandbox = stack.sandbox.cpu_seconds() - cpu[2]
    result.cpu_postgres = stack.postgres_cpu() - cpu[3]
    result.busy_cores = busy_cores(machine, psutil.cpu_times())
    await scan
    prepares.cancel()
    for channel in CHANNELS:
        times = sorted(parse_at(e["at"]).timestamp() - wall_due
                       for e in await stack.outbox(channel))
        result.drain[channel] = (len(times), times[0], times[-1]) if times else (0, 0.0, 0.0)
    for p in procs:
        await p.stop(grace=10)
    return result


def report_capped(phases: list[Phase], cores: float) -> None:
    """Each capped worker's use of its quota over the drain, and the ceiling it predicts."""
    rows = []
    for p in phases:
        for i, (used, t) in enumerate(zip(p.worker_cpu, p.throttling, strict=True)):
            rows.append([f"{p.workers} worker{'s' if p.workers > 1 else ''}: worker {i + 1}",
                         p.drain_seconds, used / p.drain_seconds if p.drain_seconds else math.nan,
                         cores, f"{t.throttled}/{t.periods}", t.share, t.throttled_seconds])
    print(table(["CPU quota over the drain", "drain s", "cores used", "quota",
                 "throttled periods", "share", "throttled s"], rows))
    print()
    rows = []
    for p in phases:
        ceiling = p.ceiling(cores)
        rows.append([f"{p.workers} worker{'s' if p.workers > 1 else ''}",
                     p.cpu_workers / p.messages * 1000, p.workers * cores, ceiling]
                    + [p.rate(c) / ceiling for c in CHANNELS])
    print(table(["predicted ceiling", "worker CPU ms per message", "quota cores",
                 "per channel /s (quota / CPU per message / 2)"]
                + [f"{c} drain / ceiling" for c in CHANNELS], rows))


def report(phases: list[Phase], args: argparse.Namespace, rates: dict[str, float]) -> None:
    n = args.journeys
    capped = (f", each worker limited to {args.worker_cpu:g} core (CFS quota)"
              if args.worker_cpu else "")
    print(f"\n{n:,} first reminders due at one instant per phase, LAPSE_SEND_RATES "
          f"{args.rates} (shared by the workers){capped}, time x{args.time_scale:g} "
          f"({machine()})\n")
    rows = []
    for p in phases:
        for channel in CHANNELS:
            count, first, last = p.drain.get(channel, (0, 0.0, 0.0))
            configured = rates[channel]
            rate = p.rate(channel)
            rows.append([f"{p.workers} worker{'s' if p.workers > 1 else ''}: {channel}", count,
                         first, last, rate, configured, f">= {GOAL_SHARE * configured:g}",
                         rate / configured])
    print(table(["phase: channel", "messages", "first after due s", "last after due s",
                 "per second", "configured", "goal", "ratio"], rows))
    print()
    rows = []
    for p in phases:
        messages = p.messages
        rows.append([f"{p.workers} worker{'s' if p.workers > 1 else ''}",
                     p.cpu_workers / messages * 1000, p.cpu_dev / messages * 1000,
                     p.cpu_postgres / messages * 1000,
                     (p.cpu_workers + p.cpu_dev + p.cpu_postgres) / messages * 1000,
                     p.cpu_sandbox / messages * 1000,
                     f"{p.busy_cores:.1f} of {psutil.cpu_count()}", p.start_seconds,
                     f"{p.prepared_by_due}/{p.journeys}",
                     n / p.prepared_seconds if p.prepared_seconds else float("nan")])
    print(table(["CPU ms per message", "workers", "dev server", "PostgreSQL", "together",
                 "sandbox (provider)", "machine busy cores", "scan s", "prepared by due",
                 "prepared per s"], rows))
    if args.worker_cpu:
        print()
        report_capped(phases, args.worker_cpu)
    if len(phases) > 1:
        base = phases[0]
        for p in phases[1:]:
            ratios = ", ".join(f"{c} {p.rate(c) / base.rate(c):.2f}" for c in CHANNELS)
            goal = ""
            if args.worker_cpu:
                ok = all(p.rate(c) / base.rate(c) >= GOAL_SCALING * p.workers / base.workers / 2
                         for c in CHANNELS)
                goal = (f" (goal >= {GOAL_SCALING * p.workers / base.workers / 2:g}: the "
                        f"workers raise the ceiling)   {'ok' if ok else 'BELOW GOAL'}")
            print(f"\n{p.workers} workers against {base.workers} (same run): drain rate "
                  f"{ratios}{goal}")
    for p in phases:
        if p.timed_out:
            print(f"\n{p.workers} workers: only {p.attempted} of {len(CHANNELS) * n} first "
                  f"reminders attempted within {args.timeout:.0f} s")
    for p in phases:
        ok = all(p.rate(c) >= GOAL_SHARE * rates[c] for c in CHANNELS)
        print(f"{p.workers} worker{'s' if p.workers > 1 else ''}: "
              + ", ".join(f"{c} {p.rate(c):.1f}/s = {p.rate(c) / rates[c]:.0%} of "
                          f"{rates[c]:g}/s" for c in CHANNELS)
              + f"   {'ok' if ok else 'BELOW GOAL'}")


async def bench(args: argparse.Namespace) -> int:
    rates = {k: float(v) for k, v in (p.split("=") for p in args.rates.split(","))}
    missing = [c for c in CHANNELS if c not in rates]
    if missing:
        raise SystemExit(f"--rates must set {', '.join(missing)}")
    due_day = today() - timedelta(days=20)
    phases = []
    async with BenchStack("burst", time_scale=args.time_scale, send_rates=args.rates) as stack:
        for series, workers in enumerate(args.workers):
            print(f"phase: {workers} worker(s), {args.journeys} journeys...", file=sys.stderr,
                  flush=True)
            phases.append(await phase(stack, args, workers, series, due_day))
    report(phases, args, rates)
    return 1 if any(p.timed_out for p in phases) else 0


def main() -> None:
    parser = arguments(__doc__, time_scale=60, time_scale_help=" (low: the second reminder "
                       "stays weeks away)", concurrency=64, timeout=1800,
                       timeout_help="the burst to drain, from the due instant")
    parser.add_argument("--journeys", type=int, default=2000, help="first reminders per phase")
    parser.add_argument("--rates", default="sms=100,wechat=100",
                        help="LAPSE_SEND_RATES for the workers")
    parser.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1, 2], help="worker processes per phase (default 1,2)")
    parser.add_argument("--lead-seconds", type=float, default=None,
                        help="from the scan to the due instant (default journeys/4, >= 60)")
    add_worker_cpu(parser)
    args = parser.parse_args()
    if len(args.workers) > 6:
        parser.error("--workers: at most 6 phases")
    check_worker_cpu(parser, args.worker_cpu)
    run(lambda: bench(args))


if __name__ == "__main__":
    main()
