"""`lapse scan` against raw client starts of the same journeys, on one dev server.

Loads N policies (a third at risk: overdue premiums, failed debits, unpaid renewals and a
few rescissions; a third paid; a third not yet due) into an embedded PostgreSQL, starts a
Temporal dev server (both deleted afterwards), and for each concurrency times:
- the baseline: the journeys' starts straight from the client, their inputs computed
  beforehand (no database, no rule), `c` in flight at once;
- the scan: `activities.scan.scan_policies`, as `lapse scan` runs it (pages of the at-risk
  set, the rule, `c` starts in flight), on a pool of 4 connections as the command has.
No worker runs, so the server only records the starts. Between runs every journey is
terminated (not timed), so each run starts the same journeys anew. It prints policies
read, journeys started, starts per second of both, the goal and the ratio; it asserts
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
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.common import WorkflowIDConflictPolicy  # noqa: E402
from temporalio.service import RPCError  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.scan import scan_policies  # noqa: E402
from contract import WORKFLOW_TYPE  # noqa: E402
from domain.journey import JourneyInput  # noqa: E402
from domain.policy_file import parse_policy_file  # noqa: E402
from domain.scan import SkipReason, classify  # noqa: E402
from infra import store  # noqa: E402
from infra.codec import data_converter  # noqa: E402
from infra.db import connect_pool  # noqa: E402
from infra.embedded import TEMPORAL_BIN, EmbeddedPostgres  # noqa: E402
from infra.journeys import Journeys  # noqa: E402
from infra.migrate import migrate  # noqa: E402
from infra.settings import parse_payload_keys  # noqa: E402
from infra.temporal import SEARCH_ATTRIBUTES  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample-policies.jsonl"
AS_OF = date(2026, 11, 27)
GOAL = 0.9  # the scan's starts per second over the baseline's, at the same concurrency
QUEUE = "bench-scan"  # no worker polls it


def policy_lines(count: int) -> list[str]:
    """The sample's products and customers, and `count` policies copied from its own: a
    third at risk (the sample's at-risk policies in turn), a third paid, a third not due."""
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
        number = f"B{n:09d}"
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


async def baseline(journeys: Journeys, starts: list[tuple], concurrency: int) -> float:
    """Raw client starts of the journeys, inputs ready; returns the seconds taken."""
    gate = asyncio.Semaphore(concurrency)
    client = journeys.client

    async def one(trigger, kind) -> None:
        async with gate:
            await client.start_workflow(
                WORKFLOW_TYPE, JourneyInput(trigger=trigger),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                **journeys.start_options(trigger, kind))

    began = time.perf_counter()
    await asyncio.gather(*(one(t, k) for t, k in starts))
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
                        help="pairs of runs per concurrency, in alternating order; the best "
                             "of each side counts")
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


async def run(args: argparse.Namespace, parent: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    converter = data_converter(parse_payload_keys("bench key", f"bench={key}"))
    async with EmbeddedPostgres(parent / "postgres", cleanup_mode="delete") as postgres:
        await migrate(postgres.dsn)
        pool = await connect_pool(postgres.dsn, max_size=4)  # as `lapse scan` has
        env = await WorkflowEnvironment.start_local(
            data_converter=converter, dev_server_existing_path=str(TEMPORAL_BIN),
            search_attributes=SEARCH_ATTRIBUTES)
        try:
            began = time.perf_counter()
            parsed = parse_policy_file(policy_lines(args.policies))
            async with pool.acquire() as conn:
                await store.save_policy_file(conn, parsed)
                await store.ensure_calendar_seeded(conn)
                await conn.execute("ANALYZE")
            found = [(p.policy_number, classify(p, parsed.products[p.product_code], AS_OF))
                     for p in parsed.policies.values()]
            starts = [(t, parsed.products[parsed.policies[n].product_code].kind.value)
                      for n, t in found if not isinstance(t, SkipReason)]
            numbers = [t.policy_number for t, _ in starts]
            print(f"loaded {len(parsed.policies):,} policies, {len(starts):,} at risk on "
                  f"{AS_OF}, in {time.perf_counter() - began:.1f} s")
            journeys = Journeys(env.client, QUEUE)
            load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
            results = []
            for c in args.concurrency:
                base_runs, scan_runs = [], []
                for r in range(args.rounds):
                    for side in (("baseline", "scan") if r % 2 == 0 else ("scan", "baseline")):
                        if side == "baseline":
                            seconds = await baseline(journeys, starts, c)
                            base_runs.append(seconds)
                        else:
                            seconds, summary = await scan(pool, journeys, c)
                            scan_runs.append(seconds)
                            started = sum(summary.started.values())
                            assert started == len(starts) and not summary.failed, summary
                        await terminate_all(journeys, numbers)
                        print(f"  c={c} {side:8} {len(starts) / seconds:7.1f} starts/s")
                results.append((c, summary, min(base_runs), min(scan_runs)))
            print(f"\nscan of {len(parsed.policies):,} policies on {AS_OF}: journeys started "
                  f"vs raw client starts of the same {len(starts):,} journeys (best of "
                  f"{args.rounds} each)")
            print(f"{'c':>4} {'read':>7} {'pages':>6} {'started':>8} {'baseline/s':>11} "
                  f"{'scan/s':>8} {'goal':>6} {'ratio':>6}")
            for c, summary, base_s, scan_s in results:
                ratio = base_s / scan_s
                print(f"{c:>4} {summary.read:>7,} {summary.pages:>6} "
                      f"{sum(summary.started.values()):>8,} {len(starts) / base_s:>11.1f} "
                      f"{len(starts) / scan_s:>8.1f} {GOAL:>6.2f} {ratio:>6.2f}"
                      f"  {'met' if ratio >= GOAL else 'NOT met'}")
            print(f"policies read by the scan: the at-risk set only ({len(starts):,} of "
                  f"{len(parsed.policies):,}); one query per page")
            print(f"load average at the start {load_before} and now "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min; 2 cores "
                  "shared: the ratio, both sides back to back, is what counts)")
        finally:
            await env.shutdown()
            await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
