"""`lapse scan` against raw client starts of the same journeys, on one dev server.

Loads N policies (a third at risk: overdue premiums, failed debits, unpaid renewals and a
few rescissions; a third paid; a third not yet due) into an embedded PostgreSQL, starts a
Temporal dev server (both deleted afterwards), and for each concurrency times:
- the baseline: the same journeys' starts straight from the client, `c` in flight at once:
  the very requests the scan sends (each journey's planned preparation in its input, its
  search attributes, the same clock), captured beforehand by a dry scan of the side's own
  database whose client records instead of starting, so that only the scan's own work
  (pages, rule, planning, the journeys' rows) tells the two sides apart;
- the scan: `activities.scan.scan_policies`, as `lapse scan` runs it (pages of the at-risk
  set, the rule, `c` starts in flight), on a pool of 4 connections as the command has.
No worker runs, so the server only records the starts. Every run starts journeys never
started before, as a day's scan does: its own copy of the policies under its own numbers
(the scan's in a database of its own); between runs every journey is terminated (not timed).
The dev server's CPU a start rises with the runs it holds (about 8 ms on a fresh server, 11
to 14 ms after 14,000 runs on this machine), so a side that runs later is slower for that
alone: the rounds alternate the order (baseline first, then scan first, ...), and the ratio is
of each side's total time over the rounds, in which both sides hold the same places (with
an even --rounds); each round's pair and each side's best run are printed too, and the CPU
a start of this process (the client: the scan's page queries, rows and rule, the starts'
payloads) and of the dev server, which the load moves less than the rates. It asserts
nothing: the figures depend on the machine and its load.

    .venv/bin/python bench/scan_bench.py                        # 6,000 policies, c=20 and 64
    .venv/bin/python bench/scan_bench.py --policies 30000 --concurrency 64 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.common import WorkflowIDConflictPolicy  # noqa: E402
from temporalio.service import RPCError  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.scan import scan_policies  # noqa: E402
from contract import WORKFLOW_TYPE, workflow_id  # noqa: E402
from domain.journey import JourneyInput, Preparation  # noqa: E402
from domain.models import Trigger  # noqa: E402
from domain.policy_file import parse_policy_file  # noqa: E402
from domain.scan import SkipReason, classify  # noqa: E402
from infra import store  # noqa: E402
from infra.codec import data_converter  # noqa: E402
from infra.db import connect_pool, create_database, dsn_with_database  # noqa: E402
from infra.embedded import TEMPORAL_BIN, EmbeddedPostgres  # noqa: E402
from infra.journeys import Journeys, Started  # noqa: E402
from infra.migrate import migrate  # noqa: E402
from infra.settings import parse_payload_keys  # noqa: E402
from infra.temporal import SEARCH_ATTRIBUTES  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample-policies.jsonl"
AS_OF = date(2026, 11, 27)
GOAL = 0.9  # the scan's starts per second over the baseline's, at the same concurrency
QUEUE = "bench-scan"  # no worker polls it


def policy_lines(count: int, prefix: str = "B") -> list[str]:
    """The sample's products and customers, and `count` policies copied from its own: a
    third at risk (the sample's at-risk policies in turn), a third paid, a third not due;
    numbered `prefix` and 9 characters more."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    records = [json.loads(x) for x in lines if x.strip() and not x.startswith("#")]
    parsed = parse_policy_file(lines)
    at_risk = [r for r in records if r["record"] == "policy"
               and not isinstance(classify(parsed.policies[r["policy_number"]],
                                           parsed.products[r["product_code"]], AS_OF),
                                  SkipReason)]
    ordinary = next(r for r in at_risk if not r.get("rescission") and r.get("dues"))
    out = [json.dumps(r, ensure_ascii=False) for r in records if r["record"] != "policy"]
    for n in range(count):
        number = f"{prefix}{n:0{10 - len(prefix)}d}"
        if n % 3 == 0:
            record = dict(at_risk[(n // 3) % len(at_risk)], policy_number=number)
        elif n % 3 == 1:  # paid in full: its due date has not moved on yet
            record = dict(ordinary, policy_number=number,
                          dues=[dict(d, paid_amount=d["amount"]) for d in ordinary["dues"]])
        else:
            record = dict(ordinary, policy_number=number, due_date="2027-03-01",
                          dues=[{"due_date": "2027-03-01", "amount": ordinary["premium"],
                                 "paid_amount": "0"}])
        out.append(json.dumps(record, ensure_ascii=False))
    return out


async def terminate_all(journeys: Journeys, numbers: list[str]) -> None:
    gate = asyncio.Semaphore(64)

    async def one(number: str) -> None:
        async with gate:
            try:
                await journeys.handle(number).terminate("bench run over")
            except RPCError:
                pass  # never started, or closed already

    await asyncio.gather(*(one(n) for n in numbers))


@dataclass(frozen=True)
class StartRequest:
    """One journey start as the scan asks for it (`Journeys.ensure`'s arguments)."""

    trigger: Trigger
    product_kind: str
    time_scale: float
    journey_start: datetime | None
    wall_anchor: datetime | None
    planned: Preparation | None


class RecordingJourneys(Journeys):
    """A journeys client that records the scan's starts instead of sending them: each
    start answers "already running", so the dry scan writes no journey row either."""

    def __init__(self, client, task_queue: str):
        super().__init__(client, task_queue)
        self.requests: list[StartRequest] = []

    async def ensure(self, trigger, product_kind, time_scale=1.0, journey_start=None,
                     wall_anchor=None, planned=None) -> Started:
        self.requests.append(StartRequest(trigger, product_kind, time_scale, journey_start,
                                          wall_anchor, planned))
        return Started(self.client.get_workflow_handle(workflow_id(trigger.policy_number)),
                       False)


async def baseline(journeys: Journeys, starts: list[StartRequest], concurrency: int) -> float:
    """Raw client starts of the scan's own requests, made ready beforehand; returns the
    seconds taken."""
    gate = asyncio.Semaphore(concurrency)
    client = journeys.client

    async def one(r: StartRequest) -> None:
        async with gate:
            await client.start_workflow(
                WORKFLOW_TYPE,
                JourneyInput(trigger=r.trigger, journey_start=r.journey_start,
                             wall_anchor=r.wall_anchor, time_scale=r.time_scale,
                             preparation=r.planned),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                **journeys.start_options(r.trigger, r.product_kind, r.planned,
                                         r.journey_start or r.wall_anchor))

    began = time.perf_counter()
    await asyncio.gather(*(one(r) for r in starts))
    return time.perf_counter() - began


async def scan(pool, journeys: Journeys, concurrency: int):
    began = time.perf_counter()
    summary = await scan_policies(pool, journeys, AS_OF, concurrency=concurrency)
    return time.perf_counter() - began, summary


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[20, 64])
    parser.add_argument("--rounds", type=int, default=2,
                        help="pairs of runs per concurrency, in alternating order (even: "
                             "both sides hold the same places); the sides' total times count")
    args = parser.parse_args()
    # A start the scan could not make is logged with its error's type (no personal data).
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s %(policy_number)s %(error)s"))
    logging.getLogger("lapse.scan").addHandler(handler)
    parent = Path(tempfile.mkdtemp(prefix="lapse-bench-scan-"))
    try:
        await run(args, parent)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@dataclass
class Side:
    """One timed run's own journeys: its policies' numbers, their starts (for the baseline)
    or the database holding them (for the scan)."""

    name: str
    numbers: list[str]
    starts: list[StartRequest]
    pool: asyncpg.Pool | None = None


async def prepare(postgres: EmbeddedPostgres, client, side: str, run: int,
                  count: int) -> Side:
    """A run's own policies in a database of its own; for the baseline, the scan's
    requests over them, recorded by a dry scan (the database is then closed)."""
    prefix = f"B{run:02d}-"
    parsed = parse_policy_file(policy_lines(count, prefix))
    expected = sorted(p.policy_number for p in parsed.policies.values()
                      if not isinstance(classify(p, parsed.products[p.product_code], AS_OF),
                                        SkipReason))
    database = f"{side}_{run:02d}"
    await create_database(postgres.server_dsn, database)
    dsn = dsn_with_database(postgres.server_dsn, database)
    await migrate(dsn)
    pool = await connect_pool(dsn, max_size=4)  # as `lapse scan` has
    async with pool.acquire() as conn:
        await store.save_policy_file(conn, parsed)
        await store.ensure_calendar_seeded(conn)
        await conn.execute("VACUUM ANALYZE")
    starts: list[StartRequest] = []
    if side == "baseline":
        recorder = RecordingJourneys(client, QUEUE)
        await scan_policies(pool, recorder, AS_OF)
        starts = recorder.requests
        assert sorted(r.trigger.policy_number for r in starts) == expected, "dry scan"
        assert all(r.planned is not None for r in starts), "a start the scan did not plan"
        await pool.close()
        pool = None
    return Side(side, expected, starts, pool)


async def run(args: argparse.Namespace, parent: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    converter = data_converter(parse_payload_keys("bench key", f"bench={key}"))
    async with EmbeddedPostgres(parent / "postgres", cleanup_mode="delete") as postgres:
        env = await WorkflowEnvironment.start_local(
            data_converter=converter, dev_server_existing_path=str(TEMPORAL_BIN),
            search_attributes=SEARCH_ATTRIBUTES)
        plan, sides = [], []
        try:
            began = time.perf_counter()
            for c in args.concurrency:
                for r in range(args.rounds):
                    for side in (("baseline", "scan") if r % 2 == 0 else ("scan", "baseline")):
                        plan.append((c, r, side))
            for k, (_, _, side) in enumerate(plan):
                sides.append(await prepare(postgres, env.client, side, k, args.policies))
            at_risk = len(sides[0].numbers)
            print(f"loaded {args.policies:,} policies ({at_risk:,} at risk on {AS_OF}) for each "
                  f"of {len(plan)} runs, each under its own numbers, in "
                  f"{time.perf_counter() - began:.1f} s")
            journeys = Journeys(env.client, QUEUE)
            # CPU a start, of this process (the client, and the scan's queries' rows and rule)
            # and of the dev server: what each side costs, whatever the load did to the rate.
            client = psutil.Process()
            server = [p for p in client.children(recursive=True) if "temporal" in p.name()]

            def cpu(processes: list[psutil.Process]) -> float:
                return sum(t.user + t.system for t in (p.cpu_times() for p in processes))

            load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
            results = []
            for c in args.concurrency:
                seconds: dict[tuple[int, str], float] = {}
                for (cc, r, name), side in zip(plan, sides, strict=True):
                    if cc != c:
                        continue
                    before = cpu([client]), cpu(server)
                    if name == "baseline":
                        seconds[r, name] = await baseline(journeys, side.starts, c)
                    else:
                        seconds[r, name], summary = await scan(side.pool, journeys, c)
                        started = sum(summary.started.values())
                        assert started == at_risk and not summary.failed, summary
                    used = [(cpu(p) - b) * 1000 / at_risk for p, b in zip(([client], server),
                                                                           before, strict=True)]
                    await terminate_all(journeys, side.numbers)
                    print(f"  c={c} round {r + 1} {name:8} {at_risk / seconds[r, name]:7.1f} "
                          f"starts/s, CPU a start: client {used[0]:.2f} ms, dev server "
                          f"{used[1]:.2f} ms  (load {os.getloadavg()[0]:.2f})")
                pairs = [seconds[r, "baseline"] / seconds[r, "scan"] for r in range(args.rounds)]
                results.append((c, summary, [v for (_, n), v in seconds.items() if n == "baseline"],
                                [v for (_, n), v in seconds.items() if n == "scan"], pairs))
            print(f"\nscan of {args.policies:,} policies on {AS_OF}: journeys started vs raw "
                  f"client starts of {at_risk:,} journeys ({args.rounds} rounds; ratio of the "
                  "sides' total times, then each round's pair, run back to back)")
            print(f"{'c':>4} {'read':>7} {'pages':>6} {'started':>8} {'baseline/s':>11} "
                  f"{'scan/s':>8} {'goal':>6} {'ratio':>6}  pairs; best/s baseline, scan")
            for c, summary, base_s, scan_s, pairs in results:
                ratio = sum(base_s) / sum(scan_s)
                print(f"{c:>4} {summary.read:>7,} {summary.pages:>6} "
                      f"{sum(summary.started.values()):>8,} "
                      f"{at_risk * len(base_s) / sum(base_s):>11.1f} "
                      f"{at_risk * len(scan_s) / sum(scan_s):>8.1f} {GOAL:>6.2f} {ratio:>6.2f}"
                      f"  {' '.join(f'{p:.2f}' for p in pairs)}; {at_risk / min(base_s):.1f}, "
                      f"{at_risk / min(scan_s):.1f}  {'met' if ratio >= GOAL else 'NOT met'}")
            print("both sides start the same requests (each journey planned, 5 KB or so of "
                  "input); the scan adds its pages, rule, planning and journeys' rows")
            print(f"policies read by the scan: the at-risk set only ({at_risk:,} of "
                  f"{args.policies:,}); one query per page")
            print(f"load average at the start {load_before} and now "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min; 2 cores "
                  "shared: the ratio, both sides back to back, is what counts)")
        finally:
            await env.shutdown()
            for side in sides:
                if side.pool is not None:
                    await side.pool.close()


if __name__ == "__main__":
    asyncio.run(main())
