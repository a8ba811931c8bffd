"""The signal outbox: a provider's delivery failure reported while Temporal is down is
answered 2xx and stored, then delivered once Temporal is back (the journey falls back),
exactly once with two drainers; journeys that are not running settle their rows; and
`lapse callbacks` starts and stores callbacks while Temporal is unreachable."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from pydantic import BaseModel
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from twilio.request_validator import RequestValidator

import sandbox as sb
from activities.twilio_sender import status_callback_url
from domain.journey import DeliveryFailed, Payment
from domain.models import Channel
from infra.deliveries import provider_ref
from infra.embedded import TEMPORAL_BIN
from infra.embedded._temporal import free_ports
from infra.journeys import Journeys
from infra.outbox import Backoff, OutboxDrainer, enqueue
from infra.temporal import SEARCH_ATTRIBUTES
from tests.channel_helpers import eventually, sandbox_stack
from tests.codec_helpers import DATA_CONVERTER
from tests.journey_helpers import at, load_sample, start_journey
from tests.ops_helpers import ROOT, clean_env
from worker import build_worker

POLICY = "P2026000001"
MOBILE = "+8613800000001"


async def start_temporal(port: int, database: Path) -> WorkflowEnvironment:
    """A dev server on a fixed port keeping its state in a file: stopped and started again,
    it still has the journeys."""
    return await WorkflowEnvironment.start_local(
        port=port, data_converter=DATA_CONVERTER, dev_server_existing_path=str(TEMPORAL_BIN),
        dev_server_database_filename=str(database), search_attributes=SEARCH_ATTRIBUTES)


async def outbox_rows(pool) -> list:
    return await pool.fetch("SELECT * FROM signal_outbox ORDER BY outbox_id")


async def test_a_failure_reported_while_temporal_is_down_falls_back_once_it_is_back(
        pool, short_tmp):
    await load_sample(pool)
    [port] = free_ports(1)
    database = short_tmp / "temporal.sqlite"
    undelivered = sb.Fault(fault="undelivered", api="sms", match=MOBILE, times=1)
    server = await start_temporal(port, database)
    try:
        client = await Client.connect(f"127.0.0.1:{port}", data_converter=DATA_CONVERTER)
        # The callback app's drainer signals through this client, whose server goes away.
        async with sandbox_stack(pool, Journeys(client), faults=[undelivered]) as stack:
            stack.sandbox.pause_callbacks()  # Twilio reports the failure a little later
            queue = "test-outbox"
            async with build_worker(client, pool, queue, senders=stack.senders):
                handle = await start_journey(Journeys(client, queue), pool, POLICY,
                                             at("2026-11-23 10:00"))
                assert await eventually(lambda: _sent(pool, "first_reminder", "sms"))
                assert await eventually(lambda: _sent(pool, "first_reminder", "wechat"))
            await server.shutdown()  # Temporal is down when the callback comes

            stack.sandbox.resume_callbacks()
            await stack.sandbox.settle()
            [sms] = [e for e in stack.sandbox.outbox.entries if e.api == "sms"]
            answers = [what for _, what in sms.history if what.startswith("callback answered")]
            assert answers == []  # every callback answered 200: nothing for Twilio to lose
            failed = await _status(pool, "first_reminder", "sms")
            [row] = await outbox_rows(pool)  # the signal, stored with the event
            # The drainer tries, and keeps the row while Temporal does not answer.
            tried = await eventually(lambda: _tried(pool), within=60)

            server = await start_temporal(port, database)  # Temporal is back
            worker_drainer = OutboxDrainer(pool, Journeys(client))  # the worker's own
            async with (build_worker(client, pool, queue, senders=stack.senders),
                        worker_drainer.running()):
                # The formal demand must reach the policyholder provably: WeChat had it,
                # so the fallback goes on to e-mail, under the milestone's own key.
                fallback = await eventually(
                    lambda: _sent(pool, "first_reminder", "email"), within=120)
                await stack.sandbox.settle()
                settled = await eventually(lambda: pool.fetchrow(
                    "SELECT * FROM signal_outbox WHERE delivered_at IS NOT NULL"))
            history = await handle.fetch_history()
            await handle.terminate("test done")
            # A failure reported after the journey closed: settled, not retried for ever.
            async with pool.acquire() as conn:
                await enqueue(conn, handle.id, "delivery_failed", failure(1))
            after_close = await OutboxDrainer(pool, Journeys(client)).drain()
            late = (await outbox_rows(pool))[-1]
            fallback_ids = {r["provider_message_id"] for r in await pool.fetch(
                "SELECT provider_message_id FROM notifications WHERE milestone = "
                "'first_reminder' AND channel = 'email'")}
            in_outbox = [e for e in stack.sandbox.outbox.entries if e.id in fallback_ids]
    finally:
        await server.shutdown()
    assert failed == "failed"
    assert (row["signal_name"], row["delivered_at"]) == ("delivery_failed", None)
    assert tried["attempts"] >= 1 and tried["last_error"] in ("UNAVAILABLE", "CONNECT_FAILED")
    assert tried["delivered_at"] is None
    assert fallback
    assert in_outbox  # the fallback message reached the provider
    assert settled["outcome"] == "signalled" and settled["attempts"] > tried["attempts"]
    assert (after_close, late["outcome"], late["attempts"]) == (1, "not_running", 1)
    signalled = [e for e in history.events
                 if e.HasField("workflow_execution_signaled_event_attributes")
                 and e.workflow_execution_signaled_event_attributes.signal_name
                 == "delivery_failed"]
    assert len(signalled) == 1  # exactly once, with two drainers running


async def _sent(pool, milestone: str, channel: str | None) -> bool:
    return bool(await pool.fetchval(
        "SELECT count(*) FROM notifications WHERE milestone = $1 AND "
        "($2::text IS NULL OR channel = $2) AND status IN ('sent', 'delivered')",
        milestone, channel))


async def _status(pool, milestone: str, channel: str) -> str | None:
    return await pool.fetchval("SELECT status FROM notifications WHERE milestone = $1 AND "
                               "channel = $2", milestone, channel)


async def _tried(pool):
    return await pool.fetchrow("SELECT * FROM signal_outbox WHERE attempts >= 1")


@dataclass
class Counting:
    """The real signals, counting what each row's workflow was sent."""

    journeys: Journeys
    sent: Counter = field(default_factory=Counter)

    async def signal_workflow(self, journey_id: str, name: str, payload: BaseModel) -> bool:
        self.sent[journey_id] += 1
        return await self.journeys.signal_workflow(journey_id, name, payload)


def failure(n: int) -> DeliveryFailed:
    return DeliveryFailed(notification_id=f"lapse-none{n}@x/first_reminder/sms/C{n}",
                          channel=Channel.SMS, error_code="30003", permanent=True)


async def test_two_drainers_deliver_each_row_once_and_settle_journeys_not_running(
        dev_env, pool):
    ids = [f"lapse-outbox-test-{n}" for n in range(40)]  # no such journeys
    async with pool.acquire() as conn, conn.transaction():
        for n, journey in enumerate(ids):
            await enqueue(conn, journey, "delivery_failed", failure(n))
    counting = Counting(Journeys(dev_env.client))
    first, second = OutboxDrainer(pool, counting), OutboxDrainer(pool, counting)
    settled = await asyncio.gather(first.drain(), second.drain())
    rows = await outbox_rows(pool)
    assert sum(settled) == 40 and min(settled) >= 1  # both took part
    assert counting.sent == Counter(ids)  # each row sent once
    assert {(r["outcome"], r["attempts"]) for r in rows} == {("not_running", 1)}


async def test_while_temporal_is_unreachable_rows_wait_with_their_reason(pool):
    [port] = free_ports(1)  # nothing listens there
    client = await Client.connect(f"127.0.0.1:{port}", lazy=True,
                                  data_converter=DATA_CONVERTER)
    async with pool.acquire() as conn:
        await enqueue(conn, "lapse-P2026000001", "delivery_failed", failure(1))
        await enqueue(conn, "lapse-P2026000002", "delivery_failed", failure(2))
    drainer = OutboxDrainer(pool, Journeys(client), backoff=Backoff(
        first=timedelta(minutes=1)))
    assert await drainer.drain() == 0
    rows = await outbox_rows(pool)
    # The first row was tried and waits a minute; the second was left for when Temporal
    # answers again rather than tried against a server that is down.
    assert [(r["attempts"], r["last_error"], r["delivered_at"]) for r in rows] == [
        (1, "CONNECT_FAILED", None), (0, None, None)]
    assert rows[0]["next_attempt_at"] - rows[0]["created_at"] >= timedelta(seconds=59)


async def test_the_drainer_keeps_going_in_the_background_until_stopped(pool):
    [port] = free_ports(1)
    client = await Client.connect(f"127.0.0.1:{port}", lazy=True,
                                  data_converter=DATA_CONVERTER)
    drainer = OutboxDrainer(pool, Journeys(client), poll_every=0.05,
                            backoff=Backoff(first=timedelta(milliseconds=10)))
    async with pool.acquire() as conn:
        await enqueue(conn, "lapse-P2026000001", "delivery_failed", failure(1))
    async with drainer.running():
        retried = await eventually(lambda: pool.fetchval(
            "SELECT attempts >= 3 FROM signal_outbox"))
    assert retried


async def test_only_the_signals_it_knows_go_into_the_outbox(pool):
    payment = Payment(transaction_id="T1", amount="1.00", currency="CNY",
                      paid_at="2026-11-23T10:00:00+08:00")
    async with pool.acquire() as conn:
        with pytest.raises(ValueError, match="no signal 'payment_received'"):
            await enqueue(conn, "lapse-P2026000001", "payment_received", payment)
        with pytest.raises(ValueError, match="delivery_failed"):
            await enqueue(conn, "lapse-P2026000001", "delivery_failed", payment)
    assert await outbox_rows(pool) == []



async def test_lapse_callbacks_starts_and_stores_while_temporal_is_unreachable(
        db_url, pool, short_tmp):
    await load_sample(pool)
    nid = f"lapse-{POLICY}@0000abcd/first_reminder/sms/C0001"
    sid, ref = "SM" + "ab" * 16, provider_ref(nid)
    await pool.execute(
        "INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, "
        "channel, recipient_id, recipient_role, status, provider, provider_message_id, "
        "provider_ref, kind) VALUES ($1, 'lapse-x', $2, 'first_reminder', 'sms', 'C0001', "
        "'policyholder', 'sent', 'twilio', $3, $4, 'first_reminder')", nid, POLICY, sid, ref)
    nobody, port = free_ports(2)
    env = clean_env(TEMPORAL_ADDRESS=f"127.0.0.1:{nobody}", DATABASE_URL=db_url,
                    LAPSE_DATA_DIR=str(short_tmp), TWILIO_ACCOUNT_SID=sb.TWILIO_ACCOUNT_SID,
                    TWILIO_AUTH_TOKEN=sb.TWILIO_AUTH_TOKEN,
                    TWILIO_FROM_NUMBER=sb.TWILIO_FROM_NUMBER)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "starter.py", "callbacks", "--host", "127.0.0.1", "--port", str(port),
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        serving = await process.stdout.readline()  # printed once it serves, or EOF
        assert serving.startswith(b"callbacks on"), (await process.stderr.read()).decode()
        url = status_callback_url(f"http://127.0.0.1:{port}", ref)
        form = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003",
                "To": MOBILE}
        signature = RequestValidator(sb.TWILIO_AUTH_TOKEN).compute_signature(url, form)
        async with aiohttp.ClientSession() as http, http.post(
                url, data=form, headers={"X-Twilio-Signature": signature}) as response:
            answer = response.status
        tried = await eventually(lambda: _tried(pool))  # its drainer keeps the row
    finally:
        process.terminate()  # SIGTERM, as a service manager stops it
        code = await process.wait()
    assert answer == 200
    assert await pool.fetchval("SELECT status FROM notifications WHERE notification_id = $1",
                               nid) == "failed"
    assert (tried["signal_name"], tried["last_error"], tried["delivered_at"]) == (
        "delivery_failed", "CONNECT_FAILED", None)
    assert code == 0
