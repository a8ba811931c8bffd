"""`lapse-worker`: runs the journeys, the daily scan and the monthly bind-a-new-card
campaign until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from activities.bind_card import BindCardActivities
from activities.channels import LocalOutbox, Sender
from activities.journey import JourneyActivities
from activities.scan import ScanActivities
from activities.senders import build_senders, close_senders, rate_shares
from domain.branches import Branches
from domain.models import Channel
from infra import logging as log_lines
from infra.branches import load_branches
from infra.db import connect_pool
from infra.embedded import StackError, read_stack_file, resolve_endpoints
from infra.journeys import Journeys
from infra.metrics import MetricsConfigError, install_runtime, metrics_port
from infra.outbox import OutboxDrainer
from infra.settings import Settings, SettingsError
from infra.temporal import SearchAttributesError, connect_client, ensure_search_attributes
from workflows.bind_card import BindCardCampaignWorkflow
from workflows.policy_lapse import PolicyLapseWorkflow
from workflows.scan import DailyScanWorkflow

log = logging.getLogger("lapse.worker")


def default_senders() -> dict[Channel, Sender]:
    outbox = LocalOutbox()
    return {channel: outbox for channel in Channel}


def build_worker(client: Client, pool: asyncpg.Pool, task_queue: str,
                 senders: dict[Channel, Sender] | None = None,
                 extra_activities: Sequence = (), time_scale: float = 1.0,
                 branches: Branches | None = None, **options) -> Worker:
    """The one worker of the journeys: every workflow and activity on one task queue."""
    senders = senders or default_senders()
    activities = JourneyActivities(pool, senders, branches)
    scan = ScanActivities(pool, time_scale=time_scale)
    campaign = BindCardActivities(pool, senders)
    settings = {
        # Activities mostly wait on providers and the database: many fit in one process,
        # bounded so that the pool (max 20 connections) and the provider rate limits hold.
        "max_concurrent_activities": 50,
        "max_concurrent_workflow_tasks": 50,
        # Journeys sleep for weeks between milestones: keep few of them cached.
        "max_cached_workflows": 1000,
        # In-flight activities get this long to finish on shutdown before being cancelled;
        # what they had not finished is retried by another worker.
        "graceful_shutdown_timeout": timedelta(seconds=20),
    }
    # A test adds its own (a fault at an exact instant) after ours.
    interceptors = [log_lines.SendProgress(), *options.pop("interceptors", ())]
    settings.update(options)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PolicyLapseWorkflow, DailyScanWorkflow, BindCardCampaignWorkflow],
        activities=[*activities.all(), *scan.all(), *campaign.all(), *extra_activities],
        interceptors=interceptors,  # SendProgress: a log line for every message sent
        **settings,
    )


def sandbox_url(settings: Settings) -> str | None:
    """LAPSE_SANDBOX_URL when set, else the sandbox a running `lapse dev` serves."""
    if os.environ.get("LAPSE_SANDBOX_URL"):
        return settings.sandbox_url
    running = read_stack_file(settings.data_dir)
    return running.sandbox_url if running and running.sandbox_url else settings.sandbox_url


async def _listening(url: str) -> bool:
    parts = urlsplit(url)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port or 80), timeout=2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def run(settings: Settings, metrics: int | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Before the client, which takes the default runtime: the core's logs go through ours.
    if metrics is not None:
        install_runtime(metrics, logging=log_lines.core_logging())
    else:
        log_lines.route_core_logs()
    async with resolve_endpoints(settings) as endpoints:
        client = await connect_client(settings, endpoints.require_temporal())
        # A missing search attribute is a clear message now, not a failing workflow task
        # later (on Temporal Cloud the message says how to add them).
        await ensure_search_attributes(client, settings.temporal_namespace)
        pool = await connect_pool(endpoints.database_url, min_size=2, max_size=20)
        sandbox = sandbox_url(settings)
        if settings.providers_sandboxed and not await _listening(sandbox):
            # Sends would only be retried until it comes up: say so now.
            print(f"lapse-worker: warning: no sandbox providers answer at {sandbox}; run "
                  "`lapse dev` (it serves them) or `lapse sandbox`, or set the provider "
                  "credentials", file=sys.stderr, flush=True)
        senders = build_senders(
            settings, sandbox, pool,
            # With compressed journey time the wall-clock call window means nothing: the
            # planner's slots keep calls inside it in journey time.
            **({} if settings.time_scale == 1 else {"clock": None}))
        try:
            worker = build_worker(client, pool, settings.temporal_task_queue,
                                  branches=load_branches(settings.branches_file)
                                  if settings.branches_file else None,
                                  senders=senders, time_scale=settings.time_scale)
            log.info("worker started", extra={"task_queue": settings.temporal_task_queue,
                                               "metrics_port": metrics})
            # The send rates are shared with the other workers before the first send and
            # until the last. The worker delivers the signal outbox too (callbacks stored
            # while Temporal was down), beside the callback process: each row goes out once.
            async with rate_shares(pool, senders).running(), worker, OutboxDrainer(
                    pool, Journeys(client, settings.temporal_task_queue)).running():
                await stop.wait()
                # Leaving the block stops polling, lets activities in flight finish (up
                # to graceful_shutdown_timeout) and hands the rest back to the server.
                log.info("worker stopping: finishing work in flight")
            log.info("worker stopped")
        finally:
            await close_senders(senders)
            await pool.close()
    return 0


def main() -> None:
    try:
        log_lines.configure()
        settings = Settings.from_env()
        code = asyncio.run(run(settings, metrics_port()))
    except (SettingsError, StackError, MetricsConfigError, SearchAttributesError,
            log_lines.LogFormatError) as err:
        print(f"lapse-worker: {err}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
