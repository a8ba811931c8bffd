"""Shared set-up for the operations tests: sample policies under ids unique to one test
(the dev server is shared), and `lapse` / `lapse-worker` run as processes."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError

from domain.policy_file import parse_policy_file
from infra import store
from tests.journey_helpers import SAMPLE, eventually  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
_CONFIGURED = ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_TLS_CERT",
               "TEMPORAL_TLS_KEY", "DATABASE_URL", "TEMPORAL_TASK_QUEUE", "LAPSE_TIME_SCALE",
               "LAPSE_METRICS_PORT", "LAPSE_DATA_DIR")  # fmt: skip


def unique_prefix() -> str:
    return uuid.uuid4().hex[:8].upper()


async def load_sample_as(pool: asyncpg.Pool, prefix: str, extra: list[str] = ()) -> list[str]:
    """The sample policies with numbers `{prefix}-P2026...`; returns the policy numbers."""
    text = SAMPLE.read_text(encoding="utf-8").replace('"P2026', f'"{prefix}-P2026')
    lines = text.splitlines() + [line.replace('"P2026', f'"{prefix}-P2026') for line in extra]
    parsed = parse_policy_file(lines)
    async with pool.acquire() as conn:
        await store.save_policy_file(conn, parsed)
        await store.ensure_calendar_seeded(conn)
    return sorted(parsed.policies)


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CONFIGURED}
    env.update(values)
    return env


async def run_lapse(*args: str, env: dict[str, str], limit: float = 60
                    ) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "starter.py", *args, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode, out.decode(), err.decode()


async def terminate_journeys(client: Client, numbers: list[str]) -> None:
    """End the journeys a test started on the shared dev server (closed ones are fine)."""
    for n in numbers:
        try:
            await client.get_workflow_handle(f"lapse-{n}").terminate("test over")
        except RPCError:
            pass
