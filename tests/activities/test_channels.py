"""Each channel with its real client against the sandbox, through the send activity and
its records: success, transient failure then success, permanent failure, no double sends,
the telephone rules and the rate limits."""

from __future__ import annotations

import io
import socket
from datetime import date, datetime, timedelta

import pytest
from pypdf import PdfReader
from temporalio.exceptions import ApplicationError

import sandbox as sb
from activities.channels import Outgoing, TransientSendError
from activities.lookup import CANNOT_TELL, Lookup
from activities.rate_limit import FORMAL, RateLimited, TokenBucket
from activities.senders import build_senders, close_senders
from domain.models import Channel
from domain.plan import TZ
from infra.agent_tasks import list_tasks
from infra.settings import Settings, SettingsError
from infra.tasks import complete_task
from tests.channel_helpers import (
    FakeJourneys,
    attempt_env,
    events,
    eventually,
    fixed_clock,
    record,
    sandbox_stack,
    send_request,
)
from tests.journey_helpers import load_sample

STANDARD = "P2026000001"  # 张伟, every channel known; due 2026-11-20
ELDERLY = "P2026000006"  # 赵建国, 76, no e-mail or WeChat, a postal address
MOBILE, EMAIL, OPENID = "+8613800000001", "customer0001@example.com", "oSandbox000001"
DAY = date(2026, 11, 23)


@pytest.fixture
async def sample(pool):
    await load_sample(pool)
    return pool


def nid(req) -> str:
    return f"{req.journey_id}/{req.milestone_key}/{req.channel.value}/C0001"


async def send(stack, req, senders=None):
    return await attempt_env().run(stack.activities(senders).send_notifications, req)


@pytest.mark.parametrize("message, channel", [
    ("first_reminder", Channel.SMS), ("second_reminder", Channel.VOICE),
    ("lapse_notice", Channel.EMAIL)])
async def test_twilio_and_sendgrid_send_then_callbacks_mark_delivered(sample, message, channel):
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, STANDARD, message, channel, DAY)
        stack.sandbox.pause_callbacks()  # the usual order: the answer, then the callbacks
        out = await send(stack, req)
        stack.sandbox.resume_callbacks()
        await stack.sandbox.settle()  # the provider's callbacks have been answered
        row = await record(sample, nid(req))
        history = await events(sample, nid(req))
    assert (out.sent, out.failed) == (1, [])
    [entry] = stack.sandbox.outbox.entries
    assert entry.to == {Channel.SMS: MOBILE, Channel.VOICE: MOBILE, Channel.EMAIL: EMAIL}[channel]
    assert entry.body == row["body"]  # the exact text on record is what the provider got
    assert row["status"] == "delivered" and row["provider_message_id"] == entry.id
    assert history[:2] == ["sending", "sent"] and history[-1] == "delivered"
    # Providers see the opaque reference, never the notification id (policy, customer).
    assert entry.ref == row["provider_ref"] and STANDARD not in (entry.callback_url or "")
    if channel is Channel.VOICE:
        assert '<Say language="zh-CN">' in entry.twiml
    if channel is Channel.EMAIL:
        [pdf] = entry.attachments
        assert pdf.filename.endswith(".pdf") and pdf.mime_type == "application/pdf"
        text = "".join(p.extract_text() for p in PdfReader(_bytes(pdf.content)).pages)
        assert "效力中止" in text and "张伟" in text


def _bytes(content: bytes) -> io.BytesIO:
    return io.BytesIO(content)


async def test_wechat_template_message_with_a_cached_token(sample):
    async with sandbox_stack(sample) as stack:
        first = await send_request(sample, STANDARD, "first_reminder", Channel.WECHAT, DAY)
        lapse = await send_request(sample, STANDARD, "lapse_notice", Channel.WECHAT, DAY,
                                   journey_id=first.journey_id)
        await send(stack, first)
        await send(stack, lapse)
        wechat = stack.senders[Channel.WECHAT].sender
        row = await record(sample, nid(first))
    entries = stack.sandbox.outbox.entries
    assert [e.to for e in entries] == [OPENID, OPENID]
    assert entries[0].fields and "thing1" in entries[1].fields
    assert entries[0].link.startswith("https://pay.")
    assert row["status"] == "sent" and row["provider"] == "wechat"
    assert wechat.tokens_fetched == 1


async def test_wechat_token_refreshed_when_wechat_says_it_expired(sample):
    expired = sb.Fault(fault="token_expired", times=1)
    async with sandbox_stack(sample, faults=[expired]) as stack:
        req = await send_request(sample, STANDARD, "first_reminder", Channel.WECHAT, DAY)
        out = await send(stack, req)
    assert out.sent == 1 and stack.senders[Channel.WECHAT].sender.tokens_fetched == 2


@pytest.mark.parametrize("channel, fault, code", [
    (Channel.SMS, sb.Fault(fault="rate_limited", times=1, retry_after=7), "20429"),
    (Channel.EMAIL, sb.Fault(fault="rate_limited", times=1, retry_after=7), "429"),
    (Channel.WECHAT, sb.Fault(fault="unavailable", times=1), "503"),
])
async def test_transient_failure_is_retried_then_sent_once(sample, channel, fault, code):
    async with sandbox_stack(sample, faults=[fault]) as stack:
        message = "lapse_notice" if channel is Channel.EMAIL else "first_reminder"
        req = await send_request(sample, STANDARD, message, channel, DAY)
        with pytest.raises(ApplicationError) as failure:
            await send(stack, req)
        after_failure = await record(sample, nid(req))
        out = await send(stack, req)  # what Temporal's retry does
        row = await record(sample, nid(req))
    assert failure.value.type == "TransientSendError" and not failure.value.non_retryable
    if fault.fault == "rate_limited":
        assert failure.value.next_retry_delay == timedelta(seconds=7)  # Retry-After honoured
    assert (after_failure["status"], after_failure["error_code"]) == ("queued", code)
    assert out.sent == 1 and row["status"] in ("sent", "delivered") and row["attempts"] == 2
    assert len(stack.sandbox.outbox.entries) == 1


@pytest.mark.parametrize("channel, fault, code", [
    (Channel.SMS, None, "21211"),  # the sandbox refuses the sample's invalid number
    (Channel.SMS, sb.Fault(fault="unsubscribed", match=MOBILE), "21610"),
    (Channel.VOICE, sb.Fault(fault="invalid_number", api="voice"), "21211"),
    (Channel.WECHAT, sb.Fault(fault="unsubscribed", match=OPENID), "43004"),
])
async def test_permanent_failure_is_recorded_with_the_provider_code(sample, channel, fault,
                                                                    code):
    policy = "P2026000009" if fault is None else STANDARD
    async with sandbox_stack(sample, faults=[fault] if fault else []) as stack:
        message = "second_reminder" if channel is Channel.VOICE else "first_reminder"
        req = await send_request(sample, policy, message, channel, DAY)
        out = await send(stack, req)
        rows = await sample.fetch("SELECT status, error_code, recipient_id FROM notifications")
    assert out.sent == 0 and out.failed == [rows[0]["recipient_id"]]
    assert [(r["status"], r["error_code"]) for r in rows] == [("failed", code)]
    assert stack.sandbox.outbox.entries == []


class ProcessDied(BaseException):
    """What a killed worker looks like from inside: nothing after this line runs."""


class DiesAfterProviderAccepts:
    def __init__(self, sender):
        self.sender, self.provider = sender, sender.provider
        self.idempotent = getattr(sender, "idempotent", False)

    async def send(self, message: Outgoing) -> str:
        await self.sender.send(message)
        raise ProcessDied


class CannotTell:
    """A provider that keeps nothing to ask (as SendGrid without its Email Activity add-on)."""

    def __init__(self, sender):
        self.sender, self.provider = sender, sender.provider

    async def send(self, message: Outgoing) -> str:
        return await self.sender.send(message)

    async def lookup(self, message: Outgoing, *, since=None) -> Lookup:
        return CANNOT_TELL


async def test_a_crash_the_provider_cannot_tell_about_is_reviewed_never_sent_twice(sample):
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, STANDARD, "first_reminder", Channel.SMS, DAY)
        dying = {**stack.senders,
                 Channel.SMS: DiesAfterProviderAccepts(stack.senders[Channel.SMS])}
        stack.sandbox.pause_callbacks()
        with pytest.raises(BaseException):  # noqa: B017 - the worker process is gone
            await send(stack, req, dying)
        stuck = await record(sample, nid(req))
        # Temporal retries the activity on another worker, whose provider cannot tell.
        out = await send(stack, req, {**stack.senders,
                                      Channel.SMS: CannotTell(stack.senders[Channel.SMS])})
        unknown = await record(sample, nid(req))
        async with sample.acquire() as conn:
            review = await list_tasks(conn, kind="delivery_review")
        stack.sandbox.resume_callbacks()
        await stack.sandbox.settle()  # then Twilio's status callback arrives for it
        settled = await record(sample, nid(req))
        done = await sample.fetchval("SELECT outcome FROM agent_tasks WHERE kind = "
                                     "'delivery_review'")
    assert stuck["status"] == "sending"
    assert out.sent == 1 and unknown["status"] == "unknown"
    assert stack.sandbox.requests["sms"] == 1 and len(stack.sandbox.outbox.entries) == 1
    assert [t.notification_id for t in review] == [nid(req)]
    assert settled["status"] == "delivered"  # found by its reference, not by a provider id
    assert settled["provider_message_id"] == stack.sandbox.outbox.entries[0].id
    assert done == "settled by twilio: sent"  # the first callback settles the review


class SlowToAnswer:
    """The provider's callbacks arrive before its answer reaches the activity."""

    def __init__(self, sender, sandbox):
        self.sender, self.provider, self.sandbox = sender, sender.provider, sandbox

    async def send(self, message: Outgoing) -> str:
        provider_id = await self.sender.send(message)
        await self.sandbox.settle()
        return provider_id


async def test_a_callback_before_the_answer_does_not_move_the_status_back(sample):
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, STANDARD, "first_reminder", Channel.SMS, DAY)
        slow = {**stack.senders, Channel.SMS: SlowToAnswer(stack.senders[Channel.SMS],
                                                           stack.sandbox)}
        await send(stack, req, slow)
        row = await record(sample, nid(req))
    assert row["status"] == "delivered" and row["provider_message_id"].startswith("SM")


async def test_a_crash_in_our_own_print_queue_is_simply_retried(sample):
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, ELDERLY, "lapse_notice", Channel.LETTER, DAY)
        dying = {**stack.senders,
                 Channel.LETTER: DiesAfterProviderAccepts(stack.senders[Channel.LETTER])}
        with pytest.raises(BaseException):  # noqa: B017 - the worker process is gone
            await send(stack, req, dying)
        out = await send(stack, req)
        row = await record(sample, f"{req.journey_id}/lapse_notice/letter/C0006")
        letters = await sample.fetchval("SELECT count(*) FROM print_queue")
    assert out.sent == 1 and row["status"] == "sent" and letters == 1


async def test_a_provider_that_does_not_answer_is_asked_not_sent_twice(sample):
    slow = sb.Fault(fault="timeout", delay=1.0, times=1)
    async with sandbox_stack(sample, faults=[slow], client_timeout=0.3) as stack:
        req = await send_request(sample, STANDARD, "first_reminder", Channel.SMS, DAY)
        stack.sandbox.pause_callbacks()
        with pytest.raises(ApplicationError) as no_answer:
            await send(stack, req)
        unknown = await record(sample, nid(req))

        async def accepted():  # the slow provider took the message after all
            return stack.sandbox.outbox.entries

        [entry] = await eventually(accepted)
        again = await send(stack, req)  # Temporal's retry asks Twilio first
        found = await record(sample, nid(req))
        stack.sandbox.resume_callbacks()
        await stack.sandbox.settle()
        settled = await record(sample, nid(req))
        reviews = await sample.fetchval("SELECT count(*) FROM agent_tasks")
    assert no_answer.value.type == "TransientSendError" and not no_answer.value.non_retryable
    assert (unknown["status"], unknown["error_code"]) == ("unknown", "timeout")
    assert again.sent == 1 and (found["status"], found["provider_message_id"]) == (
        "sent", entry.id)
    assert stack.sandbox.requests["sms"] == 1 and reviews == 0
    assert settled["status"] == "delivered"


async def test_voice_calls_only_in_the_call_window_and_six_a_day(sample):
    call = Outgoing("n", Channel.VOICE, MOBILE, None, "您好", None, reference="r")
    async with sandbox_stack(sample, clock=fixed_clock(datetime(2026, 11, 23, 21, 30,
                                                                tzinfo=TZ))) as late:
        with pytest.raises(TransientSendError) as night:
            await late.senders[Channel.VOICE].send(call)
    async with sandbox_stack(sample) as stack:
        for _ in range(6):
            await stack.senders[Channel.VOICE].send(call)
        with pytest.raises(TransientSendError) as seventh:
            await stack.senders[Channel.VOICE].send(call)
        other = await stack.senders[Channel.VOICE].send(
            Outgoing("m", Channel.VOICE, "+8613800000002", None, "您好", None, reference="s"))
    assert (night.value.code, night.value.retry_after) == ("outside_call_hours", 11.5 * 3600)
    assert late.sandbox.requests["voice"] == 0
    assert seventh.value.code == "dial_limit"
    assert seventh.value.retry_after == 23 * 3600  # 10:00 today -> 09:00 tomorrow
    assert stack.sandbox.requests["voice"] == 6 + 1 and other.startswith("CA")  # + another number


class Asked:
    """The bucket, noting the priority each acquisition asked for."""

    def __init__(self, bucket: TokenBucket, asked: list[int]):
        self.bucket, self.asked = bucket, asked

    async def acquire(self, priority: int) -> None:
        self.asked.append(priority)
        await self.bucket.acquire(priority)


async def test_rate_limit_counts_the_waits_per_channel(sample):
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0], sleep=fake_sleep)
    async with sandbox_stack(sample) as stack:
        sms = RateLimited(stack.senders[Channel.SMS].sender, bucket)
        for i in range(5):
            await sms.ready()
            await sms.send(Outgoing(f"n{i}", Channel.SMS, MOBILE, None, "提醒", None,
                                    reference=f"r{i}"))
        waits = bucket.waits
        req = await send_request(sample, STANDARD, "first_reminder", Channel.SMS, DAY)
        asked = []
        sms.bucket = Asked(bucket, asked)
        await send(stack, req, {**stack.senders, Channel.SMS: sms})  # the activity waits too
    assert asked == [FORMAL]  # the formal demand goes before any follow-up waiting
    assert stack.sandbox.requests["sms"] == 6
    assert waits == 3  # two from the burst, then one every half second
    assert bucket.waits == 4 and now[0] == pytest.approx(2.0)


async def test_agent_call_task_and_its_outcome_reach_the_journey(sample):
    signals = FakeJourneys()
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, ELDERLY, "second_reminder", Channel.AGENT_CALL, DAY)
        out = await send(stack, req)
        async with sample.acquire() as conn:
            [task] = await list_tasks(conn, kind="outbound_call")
        done = await complete_task(sample, signals, task.task_id, "no_answer", "agent-7")
        row = await record(sample, task.notification_id)
    assert out.sent == 1
    assert task.due_at == fixed_clock()() and task.sla_at == task.due_at + timedelta(days=1)
    assert "赵" in task.script and task.script == row["body"]
    assert (row["status"], row["error_code"]) == ("failed", "no_answer")
    [(policy, name, payload)] = signals.sent
    assert (policy, name, payload.channel, payload.permanent) == (
        ELDERLY, "delivery_failed", Channel.AGENT_CALL, True)
    assert done.task.status == "done" and done.signal == "delivery_failed"


async def test_hardship_reported_by_an_agent_opens_an_inquiry(sample):
    signals = FakeJourneys()
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, ELDERLY, "second_reminder", Channel.AGENT_CALL, DAY)
        await send(stack, req)
        task_id = await sample.fetchval("SELECT task_id FROM agent_tasks")
        await complete_task(sample, signals, task_id, "hardship", "agent-7", "失业")
        with pytest.raises(ValueError, match="already done"):
            await complete_task(sample, signals, task_id, "reached", "agent-7")
    [(_, name, payload)] = signals.sent
    assert name == "inquiry_received" and payload.kind.value == "hardship"
    assert await record(sample, task_id) is not None
    assert (await record(sample, task_id))["status"] == "delivered"


async def test_paper_letter_is_queued_for_the_print_vendor(sample):
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, ELDERLY, "lapse_notice", Channel.LETTER, DAY)
        out = await send(stack, req)
        row = await sample.fetchrow("SELECT * FROM print_queue")
    assert out.sent == 1 and row["status"] == "queued" and row["pages"] >= 1
    assert row["postal_address"].startswith("100022 北京市") and "赵建国先生 收" in \
        row["postal_address"]
    text = "".join(p.extract_text() for p in PdfReader(_bytes(row["pdf"])).pages)
    assert "赵建国先生 收" in text and "效力中止" in text


def test_channel_settings_from_the_environment():
    settings = Settings.from_env({
        "LAPSE_SEND_RATES": "sms=30, email=100", "LAPSE_CALLBACK_URL": "https://cb.example.cn/",
        "WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s",
        "WECHAT_TEMPLATE_IDS": "first_reminder=TPL1,lapse_notice=TPL2"})
    assert settings.send_rates == {"sms": 30.0, "email": 100.0}
    assert settings.callback_url == "https://cb.example.cn"
    assert settings.wechat.template_ids == {"first_reminder": "TPL1", "lapse_notice": "TPL2"}
    for bad in ({"LAPSE_SEND_RATES": "fax=3"}, {"LAPSE_SEND_RATES": "sms=0"},
                {"LAPSE_CALLBACK_URL": "ftp://x"}):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)


async def test_a_provider_that_cannot_be_reached_is_a_transient_failure(sample):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    senders = build_senders(Settings(), dead, sample, clock=fixed_clock())
    codes = []
    for channel, address in ((Channel.SMS, MOBILE), (Channel.EMAIL, EMAIL),
                             (Channel.WECHAT, OPENID)):
        with pytest.raises(TransientSendError) as refused:
            await senders[channel].send(Outgoing("n", channel, address, "s", "b", {"k": "v"},
                                                 reference="r"))
        codes.append(refused.value.code)
    await close_senders(senders)
    assert codes == ["connect_failed", "connect_failed", "connect_failed"]
