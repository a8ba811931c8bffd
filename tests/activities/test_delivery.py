"""The send path with the real senders, the sandbox providers and the callback endpoint.

Journeys on the time-skipping server: every message in the outbox and on record,
transient failures retried, permanent ones falling back, the unreachable path end to end.
Then the send activity itself (activities/delivery.py, issue 10.1, 10.2, 10.4, 15.1):
retried on Temporal's test server under the journey's send policy until `give_up_at`
and then failed on record (a provider outage, a database outage), Retry-After for one
attempt only, interrupted sends settled by the provider's look-up, content rules and
suppressed addresses on record, and member batches one record per member.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

import sandbox as sb
from activities.channels import Outgoing
from activities.journey import JourneyActivities
from domain.journey import Outcome, SendOutcome, SendRequest
from domain.models import Channel
from domain.report import build_report
from domain.suppression import address_key
from infra import deliveries
from infra.db import connect_pool
from infra.report_queries import fetch_records
from tests.channel_helpers import (
    LOST,
    attempt_env,
    eventually,
    journeys_with_sandbox,
    record,
    sandbox_stack,
    send_request,
)
from tests.journey_helpers import at, load_sample, start_journey
from workflows.policy_lapse import PolicyLapseWorkflow

STANDARD = "P2026000001"
NEVER_PAID = Counter({
    ("first_reminder", "sms"): 1, ("first_reminder", "wechat"): 1,
    ("second_reminder", "voice"): 1,
    ("lapse_notice", "email"): 1, ("lapse_notice", "sms"): 1, ("lapse_notice", "wechat"): 1,
    **{(f"follow_up_{k}", "sms"): 1 for k in range(1, 7)},
    ("follow_up_3", "email"): 1, ("follow_up_6", "email"): 1,
})
@pytest.fixture
async def sample(pool):
    await load_sample(pool, LOST)
    return pool


async def statuses(pool, policy: str) -> dict[tuple[str, str], str]:
    rows = await pool.fetch("SELECT milestone, channel, status FROM notifications "
                            "WHERE policy_number = $1", policy)
    return {(r["milestone"], r["channel"]): r["status"] for r in rows}


async def test_a_whole_journey_through_the_sandbox(time_skipping_env, sample):
    async with journeys_with_sandbox(time_skipping_env, sample) as (journeys, stack):
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        result = await handle.result()
        await stack.sandbox.settle()
        records = await statuses(sample, STANDARD)
    assert result.outcome is Outcome.FOLLOW_UP_ENDED
    assert Counter(records.keys()) == NEVER_PAID
    # Every message is in the outbox, and every record has its delivery status.
    apis = Counter(e.api for e in stack.sandbox.outbox.entries)
    assert apis == Counter({"sms": 8, "email": 3, "wechat": 2, "voice": 1})
    assert set(records.values()) <= {"delivered", "sent"}
    assert {s for (_, ch), s in records.items() if ch != "wechat"} == {"delivered"}
    letters = [a for e in stack.sandbox.outbox.entries for a in e.attachments]
    assert len(letters) == 1  # the formal lapse notice, not the care e-mails


async def test_transient_retried_and_permanent_falls_back(time_skipping_env, sample):
    faults = [sb.Fault(fault="unavailable", api="sms", times=1),  # first SMS: 503 once
              sb.Fault(fault="unsubscribed", api="voice")]  # every call refused (21610)
    async with journeys_with_sandbox(time_skipping_env, sample, faults) as (journeys, stack):
        handle = await start_journey(journeys, sample, STANDARD, at("2026-11-21 08:00"))
        await time_skipping_env.sleep(timedelta(days=50))  # past the second reminder
        await handle.terminate("test done")
        records = await statuses(sample, STANDARD)
        first_sms = await sample.fetch(
            "SELECT e.status, e.error_code FROM notification_events e JOIN notifications n "
            "USING (notification_id) WHERE n.milestone = 'first_reminder' AND n.channel = 'sms' "
            "ORDER BY e.event_id")
    assert [(e["status"], e["error_code"]) for e in first_sms][:4] == [
        ("sending", None), ("queued", "20503"), ("sending", None), ("sent", None)]
    assert records[("second_reminder", "voice")] == "failed"
    assert records[("second_reminder", "sms")] in ("sent", "delivered")  # the fallback
    assert stack.sandbox.requests["sms"] == 3  # 503, then the reminder, then the fallback


async def test_a_bounce_after_acceptance_falls_back(time_skipping_env, sample):
    bounce = sb.Fault(fault="bounce", match="customer0001@example.com")
    async with journeys_with_sandbox(time_skipping_env, sample, [bounce]) as (journeys, stack):
        handle = await start_journey(journeys, sample, STANDARD, at("2027-01-20 08:00"))
        await time_skipping_env.sleep(timedelta(hours=3))  # the lapse notice has gone out
        await stack.sandbox.settle()  # the bounce event was verified and put in the outbox

        # Once the outbox's drainer has signalled the journey: the formal written notice
        # could not go by e-mail, so it goes on paper.
        async def on_paper():
            return await _status(sample, "lapse_notice", "letter") in ("sent", "delivered")

        fallback = await eventually(on_paper)
        await handle.terminate("test done")
        email = await _status(sample, "lapse_notice", "email")
    assert email == "bounced"
    assert fallback


async def _status(pool, milestone: str, channel: str) -> str | None:
    return await pool.fetchval("SELECT status FROM notifications WHERE milestone = $1 AND "
                               "channel = $2", milestone, channel)


async def test_the_unreachable_path_end_to_end(time_skipping_env, sample):
    policy = "P2026000900"
    faults = [sb.Fault(fault="invalid_number", match="oSandboxLost01"),
              sb.Fault(fault="bounce", match="lost@example.com")]
    async with journeys_with_sandbox(time_skipping_env, sample, faults) as (journeys, stack):
        handle = await start_journey(journeys, sample, policy, at("2026-11-23 08:00"))
        await time_skipping_env.sleep(timedelta(hours=3))  # first reminder, e-mail fallback
        await stack.sandbox.settle()  # the bounce reaches the journey: it falls back again

        async def listed():
            return await sample.fetchval("SELECT count(*) FROM public_notices WHERE "
                                         "policy_number = $1 AND removed_at IS NULL", policy)

        assert await eventually(listed)
        status = await handle.query(PolicyLapseWorkflow.status)
        await stack.sandbox.settle()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{stack.url}/public/unreachable.json") as response:
                notice = await response.json()
            async with http.get(f"{stack.url}/public/unreachable") as response:
                page = await response.text()
        await handle.terminate("test done")
        records = await statuses(sample, policy)
        tasks = await sample.fetch("SELECT kind FROM agent_tasks WHERE policy_number = $1",
                                   policy)
    assert "unreachable" in [s.value for s in status.segments]
    assert records[("first_reminder", "sms")] == "failed"
    assert records[("first_reminder", "wechat")] == "failed"
    assert records[("first_reminder", "email")] == "bounced"
    assert records[("first_reminder", "letter")] == "failed"  # no postal address
    assert records[("first_reminder-emergency", "sms")] in ("sent", "delivered")
    assert [t["kind"] for t in tasks] == ["contact_repair"]
    [to_contact] = [e for e in stack.sandbox.outbox.entries if e.to == "+8613900000900"]
    assert "1800" not in to_contact.body and policy not in to_contact.body
    assert notice["entries"] == [{"policy": "P2****0900", "holder": "孙先生",
                                  "listed_on": notice["entries"][0]["listed_on"]}]
    assert "P2****0900" in page and "孙悟" not in page and policy not in page
    assert Channel.SMS in {n.channel for n in status.notifications}


# --- the send activity: retries, give-up, look-ups, content rules, suppression ------------

PHONE, MAIL = "+8613800000001", "customer0001@example.com"
DAY = date(2026, 11, 23)
MONTH = date(2026, 11, 1)


@workflow.defn(sandboxed=False)
class SendUntilGivenUp:
    """The send as the journey makes it: unlimited attempts, backoff capped at 5 minutes,
    and a schedule-to-close past `give_up_at`, so that the activity decides the end."""

    @workflow.run
    async def run(self, req: SendRequest, initial_seconds: float) -> SendOutcome:
        return await workflow.execute_activity_method(
            JourneyActivities.send_notifications, req,
            start_to_close_timeout=timedelta(minutes=2),
            schedule_to_close_timeout=req.give_up_at - workflow.now() + timedelta(hours=1),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=initial_seconds),
                                     maximum_interval=timedelta(minutes=5),
                                     non_retryable_error_types=["PermanentSendError"]))


class AttemptLog(Interceptor):
    """Each attempt of the activity as Temporal scheduled it (number, time), and an
    optional hook run before it (to end an outage at a given time)."""

    def __init__(self, before=None):
        self.attempts: list[tuple[int, datetime]] = []
        self.before = before

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        log = self

        class Logged(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput):
                info = activity.info()
                log.attempts.append((info.attempt, info.current_attempt_scheduled_time))
                if log.before is not None:
                    await log.before(info)
                return await super().execute_activity(input)

        return Logged(next)


async def send_until_given_up(env, stack, req: SendRequest, log: AttemptLog, pool=None, *,
                              initial: timedelta = timedelta(seconds=2)) -> SendOutcome:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    activities = JourneyActivities(pool or stack.pool, stack.senders)
    async with Worker(env.client, task_queue=queue, workflows=[SendUntilGivenUp],
                      activities=[activities.send_notifications], interceptors=[log]):
        return await env.client.execute_workflow(SendUntilGivenUp.run,
                                                 args=[req, initial.total_seconds()],
                                                 id=f"send-{uuid.uuid4().hex[:8]}",
                                                 task_queue=queue)


async def history(pool, nid: str) -> list[tuple[str, str | None, str | None]]:
    """The record's own events (the send's), without the provider's callbacks."""
    rows = await pool.fetch("SELECT status, error_code, detail FROM notification_events "
                            "WHERE notification_id = $1 AND provider_event_id IS NULL "
                            "ORDER BY event_id", nid)
    return [(r["status"], r["error_code"], r["detail"]) for r in rows]


def nid_of(req: SendRequest, recipient: str = "C0001") -> str:
    return f"{req.journey_id}/{req.milestone_key}/{req.channel.value}/{recipient}"


async def test_an_outage_past_give_up_at_ends_failed_on_record(time_skipping_env, sample):
    down = sb.Fault(fault="unavailable", api="sms")  # 503 for as long as it takes
    async with sandbox_stack(sample, faults=[down]) as stack:
        now = await time_skipping_env.get_current_time()
        req = (await send_request(sample, STANDARD, "first_reminder", Channel.SMS, DAY)
               ).model_copy(update={"give_up_at": now + timedelta(minutes=10)})
        log = AttemptLog()
        out = await send_until_given_up(time_skipping_env, stack, req, log)
        row = await record(sample, nid_of(req))
        events = await history(sample, nid_of(req))
    assert out.sent == 0 and out.failed == ["C0001"]
    assert out.reasons == {"C0001": "provider_unavailable"}
    assert (row["status"], row["error_code"]) == ("failed", "provider_unavailable")
    # Every attempt asked the provider, the last one before the deadline; the next one
    # would have started after it (backoff 2, 4 ... 256 s, then capped at 300 s).
    assert stack.sandbox.requests["sms"] == len(log.attempts) > 5
    assert all(at < req.give_up_at for _, at in log.attempts)
    assert log.attempts[-1][1] + timedelta(minutes=5) > req.give_up_at
    assert [e[:2] for e in events[-2:]] == [("sending", None), ("failed", "provider_unavailable")]
    assert "20503" in events[-1][2]  # the provider's last answer stays on record


async def test_retry_after_is_honoured_for_the_next_attempt_only(dev_env, sample):
    # On the dev server, in real time (the time-skipping test server applies an
    # activity's next_retry_delay one attempt late). A 429 asking for 6 s, then a storm
    # of 429s asking for 0.2 s each; the policy's backoff starts at 0.5 s.
    faults = [sb.Fault(fault="rate_limited", api="sms", times=1, retry_after=6),
              sb.Fault(fault="rate_limited", api="sms", times=3, retry_after=0.2)]
    async with sandbox_stack(sample, faults=faults) as stack:
        req = (await send_request(sample, STANDARD, "first_reminder", Channel.SMS, DAY)
               ).model_copy(update={"give_up_at": datetime.now(UTC) + timedelta(hours=1)})
        log = AttemptLog()
        out = await send_until_given_up(dev_env, stack, req, log,
                                        initial=timedelta(seconds=0.5))
        events = await history(sample, nid_of(req))
    times = [t for _, t in log.attempts]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert out.sent == 1 and out.failed == []
    assert [e[:2] for e in events] == [("sending", None), *[("queued", "20429"),
                                                            ("sending", None)] * 4,
                                       ("sent", None)]
    # The 6 s asked for, once; then the backoff of attempts 2, 3 and 4 (1, 2, 4 s),
    # longer than the 0.2 s asked for each time. (Each gap also holds the attempt's own
    # work and the server's dispatch: well under a second.)
    expected = [6, 1, 2, 4]
    assert len(gaps) == len(expected)
    assert all(e <= g < e + 1 for g, e in zip(gaps, expected, strict=True)), gaps


class Cable:
    """The connection between the worker and PostgreSQL (the embedded server listens on a
    Unix socket), which can be cut (a database outage: connections dropped, new ones
    refused) and mended."""

    def __init__(self, dsn: str, folder: Path):
        self._dsn = urlsplit(dsn)
        server = Path(parse_qs(self._dsn.query)["host"][0])
        self._socket = next(p for p in server.glob(".s.PGSQL.*") if p.suffix != ".lock")
        self._folder = folder
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def dsn(self) -> str:
        return self._dsn._replace(query=urlencode({"host": str(self._folder)})).geturl()

    async def mend(self) -> None:
        if self._server is None or not self._server.is_serving():
            self._server = await asyncio.start_unix_server(
                self._pipe, str(self._folder / self._socket.name))

    async def cut(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._open):
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(str(self._socket))
        self._open |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()
                self._open.discard(dst)

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


async def test_a_database_outage_past_give_up_at_ends_failed_on_record(time_skipping_env,
                                                                       sample, db_url,
                                                                       short_tmp):
    cable = Cable(db_url, short_tmp)
    await cable.mend()
    through = await connect_pool(cable.dsn(), min_size=0, max_size=2)
    try:
        async with sandbox_stack(sample) as stack:
            now = await time_skipping_env.get_current_time()
            req = (await send_request(sample, STANDARD, "first_reminder", Channel.SMS, DAY)
                   ).model_copy(update={"give_up_at": now + timedelta(minutes=10)})

            async def database_back_after_the_deadline(info) -> None:
                if info.current_attempt_scheduled_time >= req.give_up_at:
                    await cable.mend()

            await cable.cut()
            log = AttemptLog(database_back_after_the_deadline)
            out = await send_until_given_up(time_skipping_env, stack, req, log, through)
            row = await record(sample, nid_of(req))
            events = await history(sample, nid_of(req))
    finally:
        await through.close()
        await cable.cut()
    assert len(log.attempts) > 5  # failed while the database was down, and retried
    assert out.failed == ["C0001"] and out.reasons == {"C0001": "provider_unavailable"}
    assert (row["status"], row["error_code"]) == ("failed", "provider_unavailable")
    assert events == [("failed", "provider_unavailable",
                       "given up at the deadline: not sent in time")]
    assert stack.sandbox.requests["sms"] == 0  # nothing goes out after its deadline


class DiesAfterTheProviderAccepts:
    def __init__(self, sender):
        self.sender, self.provider = sender, sender.provider

    async def send(self, message: Outgoing) -> str:
        await self.sender.send(message)
        raise ProcessDied


class DiesBeforeTheRequestLeaves:
    def __init__(self, sender):
        self.sender, self.provider = sender, sender.provider

    async def send(self, message: Outgoing) -> str:
        raise ProcessDied


class ProcessDied(BaseException):
    """What a killed worker looks like from inside: nothing after this line runs."""


async def killed_then_retried(stack, pool, req, dying, *, minutes_later: float = 3):
    """The first attempt dies inside the provider call, leaving its record `sending`; the
    retry comes `minutes_later` (after the start-to-close timeout), on another worker."""
    with pytest.raises(ProcessDied):
        await attempt_env().run(stack.activities({**stack.senders, req.channel: dying})
                                .send_notifications, req)
    stuck = (await record(pool, nid_of(req)))["status"]
    await pool.execute("UPDATE notification_events SET occurred_at = occurred_at - $2::interval "
                       "WHERE notification_id = $1", nid_of(req),
                       timedelta(minutes=minutes_later))
    out = await attempt_env(2).run(stack.activities().send_notifications, req)
    return stuck, out


@pytest.mark.parametrize("dies", [DiesAfterTheProviderAccepts, DiesBeforeTheRequestLeaves])
async def test_a_send_killed_midway_is_settled_by_the_provider_look_up(sample, dies):
    async with sandbox_stack(sample) as stack:
        stack.sandbox.pause_callbacks()  # nothing but the look-up can tell
        try:
            req = await send_request(sample, STANDARD, "first_reminder", Channel.SMS, DAY)
            stuck, out = await killed_then_retried(stack, sample, req,
                                                   dies(stack.senders[Channel.SMS]))
            row = await record(sample, nid_of(req))
            events = await history(sample, nid_of(req))
            reviews = await sample.fetchval("SELECT count(*) FROM agent_tasks")
        finally:
            stack.sandbox.resume_callbacks()
    [entry] = stack.sandbox.outbox.entries  # one message either way
    assert stuck == "sending" and out.sent == 1 and reviews == 0
    assert (row["status"], row["provider_message_id"]) == ("sent", entry.id)
    assert stack.sandbox.requests["sms"] == 1
    if dies is DiesAfterTheProviderAccepts:  # Twilio has it: found, not sent again
        assert events[-1] == ("sent", None, "twilio has it: found by look-up")
    else:  # Twilio proves it never got it: sent again
        assert [e[:2] for e in events] == [("sending", None), ("queued", "not_received"),
                                           ("sending", None), ("sent", None)]


@pytest.mark.parametrize("minutes_later, status, failed", [
    (3, "sent", []),  # WeChat drops a repeat of the client_msg_id for 10 minutes
    (11, "failed", ["C0001"]),  # past that, decided: the journey falls back
])
async def test_an_interrupted_wechat_message_is_decided(sample, minutes_later, status,
                                                        failed):
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, STANDARD, "first_reminder", Channel.WECHAT, DAY)
        stuck, out = await killed_then_retried(
            stack, sample, req, DiesAfterTheProviderAccepts(stack.senders[Channel.WECHAT]),
            minutes_later=minutes_later)
        row = await record(sample, nid_of(req))
    assert stuck == "sending" and row["status"] == status and out.failed == failed
    assert len(stack.sandbox.outbox.entries) == 1  # never twice to the customer
    if failed:
        assert out.reasons == {"C0001": "unconfirmed"} and row["error_code"] == "unconfirmed"


async def test_a_message_a_content_rule_blocks_is_failed_on_record(sample):
    await sample.execute(
        "UPDATE products SET rules = jsonb_set(rules, '{sms_segment_budget}', '1') "
        "WHERE code = (SELECT product_code FROM policies WHERE policy_number = $1)", STANDARD)
    async with sandbox_stack(sample) as stack:
        req = (await send_request(sample, STANDARD, "first_reminder", Channel.SMS, DAY)
               ).model_copy(update={"journey_at": at("2026-11-23 10:00")})
        out = await attempt_env().run(stack.activities().send_notifications, req)
        row = await record(sample, nid_of(req))
    review = build_report(MONTH, await fetch_records(sample, MONTH))
    [sms] = [c for c in review.channels if c.channel == "sms"]
    assert out.sent == 0 and out.failed == ["C0001"]
    assert out.reasons == {"C0001": "sms_over_budget"}  # the workflow falls back on it
    assert (row["status"], row["error_code"]) == ("failed", "sms_over_budget")
    assert stack.sandbox.requests["sms"] == 0
    # The review shows it as not sent because of a content rule, not as a provider failure.
    assert (sms.records, sms.content_rule, sms.failed) == (1, 1, 0)


async def test_a_refused_address_is_not_used_again_until_the_contact_is_updated(sample):
    faults = [sb.Fault(fault="invalid_number", match=PHONE),  # Twilio 21211, at the send
              sb.Fault(fault="bounce", match=MAIL)]  # SendGrid, by its event webhook
    async with sandbox_stack(sample, faults=faults) as stack:
        async def send(message, channel, key):
            req = await send_request(sample, STANDARD, message, channel, DAY, key=key)
            out = await attempt_env().run(stack.activities().send_notifications, req)
            return out.reasons.get("C0001") or ("sent" if out.sent else None)

        refused = [await send("first_reminder", Channel.SMS, "first_reminder"),
                   await send("lapse_notice", Channel.EMAIL, "lapse_notice")]
        await stack.sandbox.settle()  # the bounce arrives: the e-mail address is closed
        asked = dict(stack.sandbox.requests)
        skipped = [await send("second_reminder", Channel.SMS, "second_reminder"),
                   await send("second_reminder", Channel.VOICE, "second_reminder"),
                   await send("lapse_notice", Channel.EMAIL, "lapse_notice-resend:1")]
        asked_again = dict(stack.sandbox.requests)
        closed = await sample.fetch("SELECT channel, address_hash, reason FROM suppressions "
                                    "ORDER BY channel")
        async with sample.acquire() as conn:
            cleared = await deliveries.clear_suppression(conn, STANDARD)
        stack.sandbox.faults.clear()  # the customer gave a number and address that work
        again = [await send("first_reminder", Channel.SMS, "first_reminder-resend:1"),
                 await send("lapse_notice", Channel.EMAIL, "lapse_notice-resend:2")]
    assert refused == ["21211", "sent"]
    assert skipped == ["suppressed"] * 3
    assert asked == asked_again == {"sms": 1, "email": 1}  # nobody asked a provider
    assert [(r["channel"], r["reason"]) for r in closed] == [
        ("email", "5.1.1"), ("sms", "21211"), ("voice", "21211")]
    # Kept under a hash of the address, never the address.
    assert {r["address_hash"] for r in closed} == {address_key(PHONE), address_key(MAIL)}
    assert cleared == 3 and again == ["sent", "sent"]


async def test_a_member_batch_given_up_keeps_one_record_per_member(sample):
    member_down = sb.Fault(fault="unavailable", match="+8613800000009")  # C0009's phone
    async with sandbox_stack(sample, faults=[member_down]) as stack:
        first = datetime.now(UTC)
        req = (await send_request(sample, "P2026000007", "first_reminder", Channel.SMS, DAY,
                                  scope="members")
               ).model_copy(update={"give_up_at": first + timedelta(minutes=30)})
        with pytest.raises(ApplicationError) as retried:
            await attempt_env(at=first).run(stack.activities().send_notifications, req)
        # The next attempt starts after the deadline (the provider stayed down meanwhile).
        out = await attempt_env(2, at=req.give_up_at, first=first).run(
            stack.activities().send_notifications, req)
        rows = await sample.fetch("SELECT recipient_id, status, error_code, attempts "
                                  "FROM notifications ORDER BY recipient_id")
    assert retried.value.type == "TransientSendError"
    assert out.sent == 1 and out.failed == ["C0009", "C0010"]
    assert out.reasons == {"C0009": "provider_unavailable", "C0010": "provider_unavailable"}
    reached, *given_up = [tuple(r) for r in rows]
    assert reached[0] == "C0008" and reached[1] in ("sent", "delivered")
    assert given_up == [("C0009", "failed", "provider_unavailable", 1),  # the 503
                        ("C0010", "failed", "provider_unavailable", 0)]  # never tried
    assert stack.sandbox.requests["sms"] == 2  # C0008, then C0009's 503; C0010 never tried
