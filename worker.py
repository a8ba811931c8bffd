"""`lapse-worker`: runs PolicyLapseWorkflow and its activities until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from activities.channels import LocalOutbox, Sender
from activities.journey import JourneyActivities
from domain.models import Channel
from infra.db import connect_pool
from infra.embedded import StackError, resolve_endpoints
from infra.settings import Settings, SettingsError
from infra.temporal import connect_client
from workflows.policy_lapse import PolicyLapseWorkflow

log = logging.getLogger("lapse.worker")


def default_senders() -> dict[Channel, Sender]:
    outbox = LocalOutbox()
    return {channel: outbox for channel in Channel}


def build_worker(client: Client, pool: asyncpg.Pool, task_queue: str,
                 senders: dict[Channel, Sender] | None = None,
                 extra_activities: Sequence = (), **options) -> Worker:
    """The one worker of the journeys: every workflow and activity on one task queue."""
    activities = JourneyActivities(pool, senders or default_senders())
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PolicyLapseWorkflow],
        activities=[*activities.all(), *extra_activities],
        max_concurrent_activities=50,
        max_concurrent_workflow_tasks=50,
        # In-flight activities get this long to finish on shutdown before being cancelled;
        # what they had not finished is retried by another worker.
        graceful_shutdown_timeout=timedelta(seconds=20),
        **options,
    )


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with resolve_endpoints(settings) as endpoints:
        client = await connect_client(settings, endpoints.require_temporal())
        pool = await connect_pool(endpoints.database_url, min_size=2, max_size=20)
        try:
            worker = build_worker(client, pool, settings.temporal_task_queue)
            log.info("worker started", extra={"task_queue": settings.temporal_task_queue})
            print(f"lapse-worker: polling task queue {settings.temporal_task_queue!r} on "
                  f"{endpoints.temporal_address}; Ctrl-C or SIGTERM stops it", flush=True)
            async with worker:
                await stop.wait()
                print("lapse-worker: stopping, finishing work in flight...", flush=True)
        finally:
            await pool.close()
    return 0


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s "
                                                   "%(message)s")
    try:
        settings = Settings.from_env()
        code = asyncio.run(run(settings))
    except (SettingsError, StackError) as err:
        print(f"lapse-worker: {err}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
