"""Payment latency on running journeys: paid in full through the payment client, paced and
all at once, from the payment call to the journey being closed.

Starts 2 x N journeys (synthetic long-term policies, one premium unpaid, first reminders
sent) on the embedded stack with one `lapse-worker` (or a phase per `--workers` count,
each on its own task queue) and the default send rates, then pays
N of them in full paced (default 5 a second) and the other N all at once, each through
`PaymentSystem.payment_received` (infra/journeys.py), as the payment system does. For
every payment it times the call's answer, the journey reported closed (the first
`status` query after the answer that says `closed`) and the workflow completed, and
prints p50/p95/p99 of each with the goal (closed: p99 < 2 s in a burst, < 1 s paced) and
the ratio, and the burst's p99 against the paced one measured in the same run. For the
burst it prints the CPU it cost per payment (the workers, the dev server, PostgreSQL) from
its first call to its last journey completed, the machine's busy cores meanwhile, and the
ceilings that CPU sets, the fewest seconds its work can take: all of it over the machine's
cores, the dev server's alone as one lane (its SQLite takes one writer at a time) and,
with a quota, the workers' over their quota; the closed p99 against the highest. The
journeys' completion also waits for the confirmations, sent through the SMS rate limit
(`LAPSE_SEND_RATES`, 10 a second by default).

`--worker-cpu CORES` runs each `lapse-worker` in a CPU cgroup of its own limited to that
many cores, as a container's CPU limit (bench/_common.py, root), and prints the share of
CFS periods the quota throttled each worker during the burst.

    .venv/bin/python bench/payments.py [--payments 200] [--rate 5] [--time-scale 60]
                                       [--workers 1,2] [--worker-cpu 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from _common import (  # noqa: E402
    TZ,
    BenchStack,
    Throttling,
    add_worker_cpu,
    arguments,
    at_shanghai,
    busy_cores,
    check_worker_cpu,
    machine,
    percentile,
    run,
    synthetic_policies,
    table,
    today,
    verdict,
)

from domain.journey import Payment, Stage  # noqa: E402
from infra.journeys import Journeys, PaymentSystem  # noqa: E402

PREMIUM = "3600.00"
GOALS = {"paced": 1.0, "burst": 2.0}  # p99 seconds, payment call -> journey closed


@dataclass
class Sample:
    answered: float  # seconds from the call
    closed: float
    completed: float
    outcome: str


async def pay(payments: PaymentSystem, journeys: Journeys, number: str,
              at: float | None = None) -> Sample:
    if at is not None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
    began = time.perf_counter()
    result = await payments.payment_received(number, Payment(
        transaction_id=f"T-{number}", amount=Decimal(PREMIUM), currency="CNY",
        paid_at=datetime.now(TZ)))
    answered = time.perf_counter() - began
    while True:  # a query asks the journey itself; nothing to await but its answer
        if (await journeys.status(number)).stage is Stage.CLOSED:
            break
        await asyncio.sleep(0.05)
    closed = time.perf_counter() - began
    await journeys.handle(number).result()
    return Sample(answered, closed, time.perf_counter() - began, result.outcome)


async def first_reminders_out(stack: BenchStack, numbers: list[str], within: float) -> None:
    """Wait until every first reminder of these policies has left (or failed): the payments
    then meet journeys that are sleeping towards their next milestone, not a start-up
    burst. Standard customers: SMS and WeChat per first reminder."""
    expected = 2 * len(numbers)
    deadline = time.monotonic() + within
    while True:  # the records are in PostgreSQL: nothing to await but a query
        stack.check_alive()
        done = await stack.pool.fetchval(
            "SELECT count(*) FROM notifications WHERE milestone = 'first_reminder' "
            "AND policy_number = ANY($1::text[]) AND status NOT IN ('queued', 'sending')",
            numbers)
        if done >= expected:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {expected} first reminders left within "
                               f"{within:.0f} s")
        await asyncio.sleep(1)


@dataclass
class BurstCost:
    """What the burst cost, from its first call to its last journey completed."""

    seconds: float
    workers: float  # CPU seconds of the worker processes
    dev_server: float
    postgres: float
    busy_cores: float  # the whole machine's (others' work included)

    def floor(self, cores: float) -> float:
        """The fewest seconds the burst's CPU can take on `cores`: no payment of it can be
        settled later than this after the first call if every core did only this work."""
        return (self.workers + self.dev_server + self.postgres) / cores


@dataclass
class Phase:
    workers: int
    paced: list[Sample]
    burst: list[Sample]
    cpu: dict[str, float]
    throttling: list[Throttling]  # each capped worker's, over the burst
    cost: BurstCost


async def phase(stack: BenchStack, args: argparse.Namespace, workers: int,
                series: int) -> Phase:
    """2 x N journeys on their own task queue polled by `workers` worker processes; N paid
    paced, then N at once."""
    n = args.payments
    day = today() - timedelta(days=1)
    queue = f"{stack.task_queue}-{workers}w"
    procs = [await stack.start_worker(queue, cpu=args.worker_cpu) for _ in range(workers)]

    def cpu_now() -> float:
        return sum(p.cpu_seconds() for p in procs) + stack.dev_server_cpu()

    lines, numbers = synthetic_policies(2 * n, series=series, due_date=day - timedelta(days=10),
                                        premium=PREMIUM)
    await stack.load(lines)
    began = time.monotonic()
    await stack.scan(numbers, day, at_shanghai(day, 10), task_queue=queue,
                     concurrency=args.concurrency)
    await first_reminders_out(stack, numbers, args.timeout)
    print(f"{workers} worker(s): {len(numbers)} journeys running, first reminders out, in "
          f"{time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    journeys = stack.journeys(queue)
    payments = PaymentSystem(journeys, stack.pool, time_scale=args.time_scale)
    paced_numbers, burst_numbers = numbers[:n], numbers[n:]
    cpu: dict[str, float] = {}
    start = time.perf_counter() + 1
    before = cpu_now()
    paced = await asyncio.gather(*(pay(payments, journeys, number, start + i / args.rate)
                                   for i, number in enumerate(paced_numbers)))
    cpu["paced"] = cpu_now() - before
    await asyncio.sleep(5)  # the paced confirmations' callbacks settle
    before = cpu_now()
    throttled = [p.cpu_limit.stat() for p in procs if p.cpu_limit]
    parts = (sum(p.cpu_seconds() for p in procs), stack.dev_server_cpu(), stack.postgres_cpu())
    cores_before, began = psutil.cpu_times(), time.perf_counter()
    burst = await asyncio.gather(*(pay(payments, journeys, number)
                                   for number in burst_numbers))
    cpu["burst"] = cpu_now() - before
    after = (sum(p.cpu_seconds() for p in procs), stack.dev_server_cpu(), stack.postgres_cpu())
    cost = BurstCost(time.perf_counter() - began, *(a - b for a, b in zip(after, parts,
                                                                          strict=True)),
                     busy_cores=busy_cores(cores_before, psutil.cpu_times()))
    throttling = [p.cpu_limit.stat() - t
                  for p, t in zip([p for p in procs if p.cpu_limit], throttled, strict=True)]
    for p in procs:
        await p.stop(grace=10)
    return Phase(workers, list(paced), list(burst), cpu, throttling, cost)


async def bench(args: argparse.Namespace) -> int:
    n = args.payments
    async with BenchStack("payments", time_scale=args.time_scale) as stack:
        phases = [await phase(stack, args, workers, series)
                  for series, workers in enumerate(args.workers)]
        load = machine()
    capped = (f", each worker limited to {args.worker_cpu:g} core (CFS quota)"
              if args.worker_cpu else "")
    print(f"\n{n} payments paced at {args.rate:g}/s and {n} at once, paid in full on running "
          f"journeys (default send rates{capped}; {load})\n")
    rows = []
    for p in phases:
        label = f"{p.workers} worker{'s' if p.workers > 1 else ''}"
        for mode, samples in (("paced", p.paced), ("burst", p.burst)):
            for what in ("answered", "closed", "completed"):
                values = [getattr(s, what) for s in samples]
                p99 = percentile(values, 99)
                goal = GOALS[mode] if what == "closed" else None
                rows.append([f"{label}, {mode}: payment -> {what}", percentile(values, 50),
                             percentile(values, 95), p99, f"< {goal:g} s" if goal else "-",
                             f"{p99 / goal:.2f}" if goal else "-"])
    print(table(["seconds", "p50", "p95", "p99", "goal (p99)", "ratio"], rows))
    outcomes = sorted({s.outcome for p in phases for s in p.paced + p.burst})
    print(f"\noutcomes: {', '.join(outcomes)}; CPU per payment (workers and dev server): "
          + "; ".join(f"{p.workers}w " + ", ".join(f"{mode} {p.cpu[mode] / n * 1000:.0f} ms"
                                                   for mode in ("paced", "burst"))
                      for p in phases))
    cores = os.cpu_count() or 1
    rows = []
    for p in phases:
        c = p.cost
        closed_p99 = percentile([s.closed for s in p.burst], 99)
        quota = p.workers * args.worker_cpu if args.worker_cpu else None
        floors = [c.floor(cores), c.dev_server, c.workers / quota if quota else 0.0]
        rows.append([f"{p.workers} worker{'s' if p.workers > 1 else ''}",
                     c.workers / n * 1000, c.dev_server / n * 1000, c.postgres / n * 1000,
                     c.seconds, f"{c.busy_cores:.1f} of {cores}", floors[0], floors[1],
                     f"{floors[2]:.1f}" if quota else "-", closed_p99,
                     closed_p99 / max(floors)])
    print("\nThe burst's CPU (first call to last journey completed) and the ceilings it sets, "
          f"the fewest seconds its work can take: all of it on the {cores} cores; the dev "
          "server's as one lane (its SQLite takes one writer); the workers' on their quota")
    print(table(["burst", "worker ms/payment", "dev server ms", "PostgreSQL ms", "burst s",
                 "machine busy", f"floor s, {cores} cores", "floor s, dev server lane",
                 "floor s, workers' quota", "closed p99 s", "p99 / highest floor"], rows))
    for p in phases:
        if p.throttling:
            print(f"{p.workers}w burst, CFS periods throttled by the quota: "
                  + ", ".join(f"worker {i + 1} {t.throttled}/{t.periods} "
                              f"({t.throttled_seconds:.1f} s)"
                              for i, t in enumerate(p.throttling)))
    ok = True
    base = None
    for p in phases:
        burst_p99 = percentile([s.closed for s in p.burst], 99)
        paced_p99 = percentile([s.closed for s in p.paced], 99)
        met = burst_p99 < GOALS["burst"] and paced_p99 < GOALS["paced"]
        ok = ok and met
        line = (f"{p.workers} worker(s) closed p99: burst {burst_p99:.2f} s (goal < "
                f"{GOALS['burst']:g} s), paced {paced_p99:.2f} s (goal < {GOALS['paced']:g} s); "
                f"burst / paced (baseline) {burst_p99 / paced_p99:.1f}")
        if base is None:
            base = burst_p99
        else:
            line += f"; burst p99 against {phases[0].workers} worker(s): {burst_p99 / base:.2f}"
        print(f"{line}   {verdict(met)}")
    return 0


def main() -> None:
    parser = arguments(__doc__, time_scale=60, time_scale_help=" (the journeys must not "
                       "reach their second reminder during the bench)", concurrency=20,
                       timeout=1800, timeout_help="the first reminders")
    parser.add_argument("--payments", type=int, default=200, help="payments per mode")
    parser.add_argument("--rate", type=float, default=5.0, help="paced payments per second")
    parser.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1], help="worker processes per phase, e.g. 1,2 (a phase "
                        "each, on its own task queue, in one run)")
    add_worker_cpu(parser)
    args = parser.parse_args()
    check_worker_cpu(parser, args.worker_cpu)
    run(lambda: bench(args))


if __name__ == "__main__":
    main()
