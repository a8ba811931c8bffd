"""What sealing payloads costs: payloads per second encoded and decoded, and the codec's share
of a journey's total activity time (goal: under 5%).

Payload rates are measured on payloads like those the journey exchanges (its input, a
status, a small record), against copying the same payloads without the codec in the same
run. The journey share runs the never-paid journey (26 activities, 17 messages) on the
time-skipping server with an embedded PostgreSQL (a fresh database each run), without the
codec (the baseline) and with it, timing every activity and every codec call. It prints
figures and asserts none.

    .venv/bin/python bench/codec_bench.py [--payloads 20000] [--journeys 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Sequence
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import verdict  # noqa: E402
from temporalio.api.common.v1 import Payload  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.converter import DataConverter  # noqa: E402
from temporalio.runtime import (  # noqa: E402
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import (  # noqa: E402
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from domain.journey import JourneyInput  # noqa: E402
from domain.models import Channel  # noqa: E402
from domain.plan import TZ  # noqa: E402
from domain.policy_file import parse_policy_file  # noqa: E402
from domain.triggers import detect_trigger  # noqa: E402
from infra import store  # noqa: E402
from infra.codec import EncryptionCodec, data_converter, new_payload_key  # noqa: E402
from infra.db import connect_pool, create_database, dsn_with_database  # noqa: E402
from infra.embedded import BIN_DIR, EmbeddedPostgres  # noqa: E402
from infra.journeys import Journeys  # noqa: E402
from infra.migrate import migrate  # noqa: E402
from infra.settings import parse_payload_keys  # noqa: E402
from infra.temporal import ensure_search_attributes  # noqa: E402
from worker import build_worker  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample-policies.jsonl"
POLICY = "P2026000001"
START = datetime(2026, 11, 21, 8, 0, tzinfo=TZ)
PAYLOAD_GOAL = 10_000  # payloads a second, each way: far above what a worker exchanges
SHARE_GOAL = 0.05
# The SDK core warns about the test server's capabilities on every worker start.
QUIET = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
    filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))


class TimedCodec(EncryptionCodec):
    """The project's codec, adding up the time it spends."""

    def __init__(self, keys) -> None:
        super().__init__(keys)
        self.seconds = 0.0

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._timed(super().encode(payloads))

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._timed(super().decode(payloads))

    async def _timed(self, work: Awaitable[list[Payload]]) -> list[Payload]:
        began = time.perf_counter()
        try:
            return await work
        finally:
            self.seconds += time.perf_counter() - began


class ActivityClock(Interceptor):
    """Adds up the time spent inside activities."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        clock = self

        class Timed(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput):
                began = time.perf_counter()
                try:
                    return await self.next.execute_activity(input)
                finally:
                    clock.seconds += time.perf_counter() - began
                    clock.count += 1

        return Timed(next)


def sample_values(trigger) -> list:
    journey_input = JourneyInput(trigger=trigger, journey_start=START)
    status = {"policy_number": POLICY, "stage": "lapsed", "notifications": [
        {"id": f"lapse-{POLICY}/follow_up_{k}/sms/policyholder", "milestone": f"follow_up_{k}",
         "channel": Channel.SMS.value, "status": "sent", "at": START.isoformat()}
        for k in range(1, 18)]}
    return [journey_input, status, {"policy_number": POLICY, "note_id": str(uuid.uuid4())}]


async def payload_rates(values: list, count: int) -> None:
    keys = parse_payload_keys("bench", new_payload_key("bench"))
    codec = EncryptionCodec(keys)
    plain = pydantic_data_converter.payload_converter.to_payloads(values * (count // 3))
    sizes = sorted(len(p.SerializeToString()) for p in plain[:3])

    async def rate(convert, payloads) -> tuple[float, list]:
        began = time.perf_counter()
        out = await convert(payloads)
        return len(payloads) / (time.perf_counter() - began), out

    async def convert_only(payloads):  # the baseline: what any converter does anyway
        return [Payload.FromString(p.SerializeToString()) for p in payloads]

    base, _ = await rate(convert_only, plain)
    enc, sealed = await rate(codec.encode, plain)
    dec, _ = await rate(codec.decode, sealed)
    print(f"payloads of {sizes[0]}-{sizes[-1]} bytes, {len(plain):,} each way")
    print(f"  {'':22}{'figure':>14}{'goal':>14}{'baseline':>14}{'ratio':>8}")
    for label, figure in (("encoded per second", enc), ("decoded per second", dec)):
        print(f"  {label:22}{figure:>14,.0f}{'>= ' + f'{PAYLOAD_GOAL:,}':>14}{base:>14,.0f}"
              f"{figure / base:>8.2f}   {'ok' if figure >= PAYLOAD_GOAL else 'BELOW GOAL'}")


async def fresh_database(postgres: EmbeddedPostgres):
    """A new database with the sample policies, so that every run starts from the same state."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    await create_database(postgres.server_dsn, name)
    dsn = dsn_with_database(postgres.server_dsn, name)
    await migrate(dsn)
    pool = await connect_pool(dsn, max_size=10)
    async with pool.acquire() as conn:
        await store.save_policy_file(conn, parse_policy_file(
            SAMPLE.read_text(encoding="utf-8").splitlines()))
        await store.ensure_calendar_seeded(conn)
    return pool


async def journey_times(converter: DataConverter, postgres: EmbeddedPostgres, trigger,
                        kind: str, runs: int) -> tuple[float, float, int, float]:
    """(activity seconds, wall seconds, activities, codec seconds) of the journey run with
    the least activity time of `runs`."""
    codec = converter.payload_codec
    best = None
    for _ in range(runs):
        if isinstance(codec, TimedCodec):
            codec.seconds = 0.0
        pool = await fresh_database(postgres)
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=converter, runtime=QUIET,
            test_server_existing_path=str(BIN_DIR / "temporal-test-server"))
        try:
            await ensure_search_attributes(env.client, env.client.namespace)
            clock = ActivityClock()
            queue = f"bench-{uuid.uuid4().hex[:6]}"
            async with build_worker(env.client, pool, queue, interceptors=[clock]):
                began = time.perf_counter()
                handle = await Journeys(env.client, queue).start(trigger, kind, journey_start=START)
                result = await handle.result()
                wall = time.perf_counter() - began
            assert result.outcome.value == "follow_up_ended", result.outcome
        finally:
            await env.shutdown()
            await pool.close()
        if best is None or clock.seconds < best[0]:
            best = (clock.seconds, wall, clock.count,
                    codec.seconds if isinstance(codec, TimedCodec) else 0.0)
    return best


async def journey_share(runs: int, trigger, kind: str, parent: Path) -> None:
    async with EmbeddedPostgres(parent / "pg", database="postgres",
                                cleanup_mode="delete") as postgres:
        await journey_times(pydantic_data_converter, postgres, trigger, kind, 1)  # warm-up
        base_activity, base_wall, count, _ = await journey_times(
            pydantic_data_converter, postgres, trigger, kind, runs)
        keys = parse_payload_keys("bench", new_payload_key("bench"))
        sealed = dataclasses.replace(data_converter(keys), payload_codec=TimedCodec(keys))
        activity, wall, _, codec_per_journey = await journey_times(
            sealed, postgres, trigger, kind, runs)
    share = codec_per_journey / activity
    print(f"\nthe never-paid journey ({count} activities), best of {runs}")
    print(f"  activity time without codec (baseline) {base_activity * 1000:8.1f} ms, "
          f"journey {base_wall * 1000:.0f} ms")
    print(f"  activity time with codec               {activity * 1000:8.1f} ms, "
          f"journey {wall * 1000:.0f} ms (ratio {wall / base_wall:.2f})")
    print(f"  codec time per journey                 {codec_per_journey * 1000:8.2f} ms")
    print(f"  codec share of activity time: figure {share:.2%}, goal < {SHARE_GOAL:.0%}, "
          f"ratio to baseline activity time {codec_per_journey / base_activity:.2%}   "
          f"{verdict(share < SHARE_GOAL)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payloads", type=int, default=30_000)
    parser.add_argument("--journeys", type=int, default=3)
    args = parser.parse_args()
    parsed = parse_policy_file(SAMPLE.read_text(encoding="utf-8").splitlines())
    policy = parsed.policies[POLICY]
    product = parsed.products[policy.product_code]
    trigger = detect_trigger(policy, product, START.date())
    await payload_rates(sample_values(trigger), args.payloads)
    parent = Path(tempfile.mkdtemp(prefix="lapse-codec-bench-"))
    try:
        await journey_share(args.journeys, trigger, product.kind.value, parent)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
