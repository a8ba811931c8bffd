"""Shared set-up for journey tests: sample data, a worker, and a stand-in for the providers."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import asyncpg
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError

from activities.channels import Outgoing, PermanentSendError, TransientSendError
from domain.models import Channel
from domain.plan import TZ
from domain.policy_file import parse_policy_file
from domain.triggers import detect_trigger
from infra import store
from infra.journeys import Journeys
from worker import build_worker
from workflows.policy_lapse import PolicyLapseWorkflow

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample-policies.jsonl"


class ProviderDouble:
    """Stands in for Twilio, SendGrid and WeChat here: the journey tests check what the
    workflow asks to send; the real clients are exercised by the channel tests.

    `permanent` addresses are refused for good (like Twilio 21211); `transient` addresses
    fail that many times first (like a 503); `refused` addresses are refused with the
    given code (`20003`: our credentials, not the customer's number).
    """

    provider = "provider-double"

    def __init__(self, permanent: set[str] = frozenset(),
                 transient: dict[str, int] | None = None,
                 refused: dict[str, str] | None = None):
        self.sent: list[Outgoing] = []
        self.permanent = set(permanent)
        self.transient = dict(transient or {})
        self.refused = dict(refused or {})

    async def send(self, message: Outgoing) -> str:
        if message.address in self.permanent:
            raise PermanentSendError("21211", "invalid number")
        if message.address in self.refused:
            raise PermanentSendError(self.refused[message.address], "refused")
        if self.transient.get(message.address, 0) > 0:
            self.transient[message.address] -= 1
            raise TransientSendError("503", "provider unavailable")
        self.sent.append(message)
        return f"double-{uuid.uuid4().hex[:12]}"

    def count(self) -> Counter:
        return Counter((m.notification_id.split("/")[1], m.channel.value) for m in self.sent)


async def load_sample(pool: asyncpg.Pool, extra_lines: list[str] = ()) -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines() + list(extra_lines)
    async with pool.acquire() as conn:
        await store.save_policy_file(conn, parse_policy_file(lines))
        await store.ensure_calendar_seeded(conn)


def at(text: str) -> datetime:
    """A Shanghai time from 'YYYY-MM-DD HH:MM'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=TZ)


@asynccontextmanager
async def journey_worker(client: Client, pool: asyncpg.Pool, sender: ProviderDouble,
                         task_queue: str | None = None, **options):
    queue = task_queue or f"test-{uuid.uuid4().hex[:8]}"
    worker = build_worker(client, pool, queue, senders={c: sender for c in Channel}, **options)
    async with worker:
        yield Journeys(client, queue)


async def begin_journey(journeys: Journeys, pool: asyncpg.Pool, policy_number: str,
                        start: datetime, time_scale: float = 1.0,
                        **trigger_changes) -> WorkflowHandle:
    """Start the stored policy's journey at `start`, on the trigger detected that day."""
    async with pool.acquire() as conn:
        bundle = await store.load_policy(conn, policy_number, with_members=False)
    trigger = detect_trigger(bundle.policy, bundle.product, start.date())
    assert trigger is not None, f"{policy_number} is not at risk on {start.date()}"
    if trigger_changes:
        trigger = trigger.model_copy(update=trigger_changes)
    return await journeys.start(trigger, bundle.product.kind.value, time_scale=time_scale,
                                journey_start=start)


async def start_journey(journeys: Journeys, pool: asyncpg.Pool, policy_number: str,
                        start: datetime, **trigger_changes) -> WorkflowHandle:
    """`begin_journey`, returning once the journey has planned."""
    handle = await begin_journey(journeys, pool, policy_number, start, **trigger_changes)
    await planned(handle)
    return handle


async def eventually(check, within: float = 20.0):
    """For what cannot be awaited (a workflow reacting to a signal, visibility catching
    up): ask until it holds or `within` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result or loop.time() > deadline:
            return result
        await asyncio.sleep(0.05)


async def planned(handle: WorkflowHandle):
    """The journey's status once it has planned: the status query refuses until then, and
    a test that asks at once would race the planning activity."""
    async def ask():
        try:
            return await handle.query(PolicyLapseWorkflow.status)
        except WorkflowQueryFailedError:
            return None
    status = await eventually(ask, within=60)
    assert status is not None, "the journey was not planned within 60 s"
    return status


async def holder_mobile(pool: asyncpg.Pool, policy_number: str) -> str:
    """The policyholder's mobile, for a provider double to refuse or accept."""
    return await pool.fetchval("SELECT mobile FROM customers WHERE customer_id = "
                               "(SELECT policyholder_id FROM policies "
                               " WHERE policy_number = $1)", policy_number)


async def sent_records(pool: asyncpg.Pool, policy_number: str) -> Counter:
    """(milestone, channel) -> how many records a provider accepted."""
    rows = await pool.fetch(
        "SELECT milestone, channel, count(*) AS n FROM notifications "
        "WHERE policy_number = $1 AND status = 'sent' GROUP BY milestone, channel",
        policy_number)
    return Counter({(r["milestone"], r["channel"]): r["n"] for r in rows})


async def policy_status(pool: asyncpg.Pool, policy_number: str) -> str:
    return await pool.fetchval("SELECT status FROM policies WHERE policy_number = $1",
                               policy_number)


HISTORIES = Path(__file__).resolve().parent / "histories"


async def keep_history(handle: WorkflowHandle, name: str) -> None:
    """With RECORD_HISTORIES=1, save the run's history for the replay tests."""
    if os.environ.get("RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json(), encoding="utf-8")
    # The workflow id is not in the events, and the journey's ids are built from it.
    (HISTORIES / f"{name}.id").write_text(history.workflow_id + "\n", encoding="utf-8")
