"""The delivery callback endpoint on the real app: signatures (good, bad, missing, stale),
de-duplication, status updates, the delivery_failed signal through the outbox, malformed
requests refused at the door (one log line, nothing stored), a bad event in a SendGrid
batch skipped while the good ones are stored, and nothing personal in its logs."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

import sandbox as sb
from activities.twilio_sender import status_callback_url
from infra.deliveries import provider_ref
from tests.channel_helpers import FakeJourneys, events, eventually, record, sandbox_stack
from tests.journey_helpers import load_sample
from web.callbacks import SENDGRID_EVENTS_PATH, SENDGRID_MAX_BODY, TWILIO_MAX_BODY

POLICY = "P2026000001"
MOBILE = "+8613800000001"
EMAIL = "customer0001@example.com"
NID = f"lapse-{POLICY}@0000abcd/first_reminder/sms/C0001"
REF = provider_ref(NID)
SID = "SM" + "0123456789abcdef" * 2
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
async def sample(pool):
    await load_sample(pool)
    await pool.execute(
        "INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, "
        "channel, recipient_id, recipient_role, body, status, provider, provider_message_id, "
        "provider_ref, kind) VALUES ($1, $2, $3, 'first_reminder', 'sms', 'C0001', "
        "'policyholder', 'text', 'sent', 'twilio', $4, $5, 'first_reminder')",
        NID, NID.split("/")[0], POLICY, SID, REF)
    return pool


async def as_email(pool) -> None:
    await pool.execute("UPDATE notifications SET channel = 'email', provider = 'sendgrid' "
                       "WHERE notification_id = $1", NID)


def twilio_form(status: str, **extra) -> dict[str, str]:
    return {"MessageSid": SID, "MessageStatus": status, "To": MOBILE,
            "AccountSid": sb.TWILIO_ACCOUNT_SID, **extra}


def twilio_signature(url: str, form) -> str:
    return RequestValidator(sb.TWILIO_AUTH_TOKEN).compute_signature(url, form)


async def post(url: str, data, headers: dict | None = None, *,
               no_content_type: bool = False) -> int:
    skip = ["Content-Type"] if no_content_type else []
    async with aiohttp.ClientSession() as http, http.post(
            url, data=data, headers=headers or {}, skip_auto_headers=skip) as response:
        return response.status


async def post_twilio(url: str, form, signature: str | None) -> int:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    return await post(url, form, headers)


async def stored(pool) -> tuple[str, int, int]:
    """The record's status, its provider events and the signals waiting in the outbox."""
    row = await record(pool, NID)
    return (row["status"], len(await events(pool, NID)),
            await pool.fetchval("SELECT count(*) FROM signal_outbox"))


def refusals(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "lapse.callbacks"
            and r.levelno >= logging.WARNING]


async def test_twilio_callback_with_a_good_signature_updates_the_record_once(sample):
    async with sandbox_stack(sample) as stack:
        url = status_callback_url(stack.url, REF)
        form = twilio_form("delivered")
        good = twilio_signature(url, form)
        first = await post_twilio(url, form, good)
        again = await post_twilio(url, form, good)  # Twilio may call twice
        row = await record(sample, NID)
    assert (first, again) == (200, 200)
    assert row["status"] == "delivered"
    assert await events(sample, NID) == ["delivered"]


async def test_twilio_callbacks_without_or_with_a_bad_signature_are_refused(sample, caplog):
    caplog.set_level(logging.INFO)
    async with sandbox_stack(sample) as stack:
        url = status_callback_url(stack.url, REF)
        form = twilio_form("undelivered", ErrorCode="30005")
        other_token = RequestValidator("not-the-token").compute_signature(url, form)
        tampered = twilio_signature(url, twilio_form("delivered"))
        answers = [await post_twilio(url, form, None), await post_twilio(url, form, ""),
                   await post_twilio(url, form, other_token),
                   await post_twilio(url, form, tampered)]
    assert answers == [403, 403, 403, 403]
    assert await stored(sample) == ("sent", 0, 0)
    assert "callback refused" in caplog.text
    assert MOBILE not in caplog.text and "30005" not in caplog.text  # no body in the log


async def test_a_failed_sms_puts_delivery_failed_in_the_outbox_for_the_journey(sample):
    signals = FakeJourneys()
    async with sandbox_stack(sample, signals) as stack:
        url = status_callback_url(stack.url, REF)
        form = twilio_form("undelivered", ErrorCode="30005")
        assert await post_twilio(url, form, twilio_signature(url, form)) == 200
        # Stored before the answer: the event and its signal, in one transaction.
        row = await record(sample, NID)
        [queued] = await sample.fetch("SELECT workflow_id, signal_name, payload "
                                      "FROM signal_outbox")
        # The callback process's drainer delivers it.
        assert await eventually(lambda: _sent(signals))
    assert (row["status"], row["error_code"]) == ("failed", "30005")
    assert (queued["workflow_id"], queued["signal_name"]) == (f"lapse-{POLICY}",
                                                              "delivery_failed")
    assert MOBILE not in json.dumps(queued["payload"])
    [(journey, name, payload)] = signals.sent_to
    assert (journey, name) == (f"lapse-{POLICY}", "delivery_failed")
    assert (payload.notification_id, payload.error_code, payload.permanent) == (
        NID, "30005", True)


async def _sent(signals: FakeJourneys) -> bool:
    return bool(signals.sent_to)


def sendgrid_events(*kinds: str, ref=REF) -> list[dict]:
    return [{"email": EMAIL, "timestamp": int(time.time()), "event": k,
             "sg_event_id": f"evt-{k}", "sg_message_id": "SGID1.filter.0", "ref": ref,
             **({"type": "bounce", "status": "5.1.1"} if k == "bounce" else {})}
            for k in kinds]


async def post_sendgrid(url: str, body: str, headers: dict) -> int:
    return await post(url, body.encode(), headers)


async def test_sendgrid_events_verified_deduplicated_and_a_bounce_signalled(sample):
    await as_email(sample)
    signals = FakeJourneys()
    async with sandbox_stack(sample, signals) as stack:
        url = stack.url + SENDGRID_EVENTS_PATH
        body = json.dumps(sendgrid_events("processed", "delivered", "open"))
        first = await post_sendgrid(url, body, stack.sandbox.sign_events(body))
        again = await post_sendgrid(url, body, stack.sandbox.sign_events(body))
        delivered = await record(sample, NID)
        bounce = json.dumps(sendgrid_events("bounce"))
        await post_sendgrid(url, bounce, stack.sandbox.sign_events(bounce))
        bounced = await record(sample, NID)
        assert await eventually(lambda: _sent(signals))
    assert (first, again) == (200, 200)
    assert delivered["status"] == "delivered"
    assert await events(sample, NID) == ["sent", "delivered", "open", "bounced"]  # once each
    assert (bounced["status"], bounced["error_code"]) == ("bounced", "5.1.1")
    [(_, name, payload)] = signals.sent_to
    assert name == "delivery_failed" and payload.channel.value == "email"


async def test_sendgrid_events_without_or_with_a_bad_or_stale_signature_are_refused(sample):
    async with sandbox_stack(sample) as stack:
        url = stack.url + SENDGRID_EVENTS_PATH
        body = json.dumps(sendgrid_events("delivered"))
        signed = stack.sandbox.sign_events(body)
        another_key = sb.Sandbox().sign_events(body)
        answers = [
            await post_sendgrid(url, body, {"Content-Type": "application/json"}),
            await post_sendgrid(url, body, another_key),
            await post_sendgrid(url, body.replace("delivered", "bounce"), signed),
            await post_sendgrid(url, body, {**signed, "X-Twilio-Email-Event-Webhook-Signature":
                                            "not base64!"}),
            await post_sendgrid(url, body, {**signed, "X-Twilio-Email-Event-Webhook-Timestamp":
                                            "1"}),
            # Signed with the right key, but in 2001 or an hour ahead: a replay, refused.
            await post_sendgrid(url, body, stack.sandbox.sign_events(body, "978307200")),
            await post_sendgrid(url, body, stack.sandbox.sign_events(
                body, str(int(time.time()) + 3600))),
        ]
    assert answers == [403] * 7
    assert await stored(sample) == ("sent", 0, 0)


async def test_callbacks_for_unknown_references_are_acknowledged_and_ignored(sample):
    async with sandbox_stack(sample) as stack:
        url = status_callback_url(stack.url, provider_ref("no-such-notification"))
        form = {**twilio_form("delivered"), "MessageSid": "SM" + "f" * 32}
        assert await post_twilio(url, form, twilio_signature(url, form)) == 200
    assert await stored(sample) == ("sent", 0, 0)


# --- malformed requests: refused at the door, one log line each, nothing stored -------------


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    # (the callback's URL, the sandbox) -> the request's body and headers
    build: Callable[[str, sb.Sandbox], tuple[object, dict]]
    no_content_type: bool = False


def _signed_form(form, ref: str | None = REF, query: str | None = None):
    def build(base: str, box: sb.Sandbox) -> tuple[object, dict]:
        url = status_callback_url(base, ref) if query is None else (
            status_callback_url(base, REF).split("?")[0] + "?" + query)
        return (url, form), {"X-Twilio-Signature": twilio_signature(url, form)}
    return build


def _raw_form(body, content_type: str | None = FORM):
    def build(base: str, box: sb.Sandbox) -> tuple[object, dict]:
        url = status_callback_url(base, REF)
        headers = {"X-Twilio-Signature": twilio_signature(url, twilio_form("delivered"))}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return (url, body() if callable(body) else body), headers
    return build


def _multipart() -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("MessageSid", SID)
    data.add_field("MessageStatus", "undelivered")
    data.add_field("file", b"\x00\x01", filename="x.bin")
    return data


async def _stream(size: int):
    chunk = b"a" * 16384
    for _ in range(size // len(chunk) + 1):
        yield chunk


OK_FORM = f"MessageSid={SID}&MessageStatus=undelivered&ErrorCode=30005".encode()
TWILIO_CASES = [
    Case("invalid UTF-8", 400, _raw_form(OK_FORM + b"&To=\xff\xfe")),
    Case("percent-encoded invalid UTF-8", 400, _raw_form(OK_FORM + b"&To=%ff%fe")),
    Case("a bogus charset", 400, _raw_form(OK_FORM, FORM + "; charset=no-such-charset")),
    Case("a charset other than UTF-8", 400, _raw_form(OK_FORM, FORM + "; charset=latin-1")),
    Case("a NUL byte", 400, _raw_form(OK_FORM + b"&To=\x00")),
    Case("multipart", 415, _raw_form(_multipart, None)),
    Case("JSON", 415, _raw_form(b'{"MessageSid": "x"}', "application/json")),
    Case("no content type", 415, _raw_form(OK_FORM, None), no_content_type=True),
    Case("too long", 413, _raw_form(OK_FORM + b"&To=" + b"a" * TWILIO_MAX_BODY)),
    Case("too long, streamed", 413, _raw_form(lambda: _stream(TWILIO_MAX_BODY))),
    # Well signed, badly formed: refused after the signature.
    Case("a malformed MessageSid", 400, _signed_form(twilio_form("undelivered") | {
        "MessageSid": "SM1"})),
    Case("a NUL in MessageStatus", 400, _signed_form(twilio_form("undeliv\x00ered"))),
    Case("a malformed ErrorCode", 400, _signed_form(twilio_form("undelivered",
                                                                ErrorCode="30005;"))),
    Case("a malformed ref", 400, _signed_form(twilio_form("undelivered"), ref=REF + ".x")),
    Case("a ref too long", 400, _signed_form(twilio_form("undelivered"), ref=REF * 3)),
    Case("a NUL in ref", 400, _signed_form(twilio_form("undelivered"), ref=REF + "\x00")),
    Case("two refs", 400, _signed_form(twilio_form("undelivered"),
                                       query=f"ref={REF}&ref={REF}")),
    Case("two statuses", 400, _signed_form(MultiDict([
        *twilio_form("undelivered").items(), ("MessageStatus", "delivered")]))),
    Case("a message and a call", 400, _signed_form(twilio_form("undelivered") | {
        "CallSid": "CA" + "0" * 32})),
    Case("no status", 400, _signed_form({"MessageSid": SID, "To": MOBILE})),
    # Badly signed and badly formed: the signature is checked first.
    Case("a bad signature on a bad body", 403, lambda base, box: (
        (status_callback_url(base, REF), {"MessageSid": "x"}), {"X-Twilio-Signature": "AAAA"})),
]


async def refused_and_nothing_stored(sample, caplog, case: Case) -> None:
    """Post the case's request: it gets the case's status, nothing is stored, and one log
    line says why."""
    async with sandbox_stack(sample) as stack:
        (url, body), headers = case.build(stack.url, stack.sandbox)
        caplog.clear()
        answer = await post(url, body, headers, no_content_type=case.no_content_type)
    assert answer == case.status
    assert await stored(sample) == ("sent", 0, 0)
    [line] = refusals(caplog)
    assert f"({case.status})" in line.getMessage()


@pytest.mark.parametrize("case", TWILIO_CASES, ids=lambda c: c.name)
async def test_a_malformed_twilio_callback_is_refused_and_nothing_stored(sample, caplog, case):
    caplog.set_level(logging.INFO)
    await refused_and_nothing_stored(sample, caplog, case)
    assert MOBILE not in caplog.text and SID not in caplog.text


def _sendgrid(body, content_type: str | None = "application/json", *,
              signed_as: str | None = None, timestamp: str | None = None):
    def build(base: str, box: sb.Sandbox) -> tuple[object, dict]:
        text = signed_as if signed_as is not None else (
            body if isinstance(body, str) else "[]")
        headers = box.sign_events(text, timestamp)
        if content_type is None:
            del headers["Content-Type"]
        else:
            headers["Content-Type"] = content_type
        data = body() if callable(body) else body.encode() if isinstance(body, str) else body
        return (base + SENDGRID_EVENTS_PATH, data), headers
    return build


GOOD = json.dumps(sendgrid_events("bounce"))
SENDGRID_CASES = [
    Case("invalid UTF-8", 400, _sendgrid(GOOD.encode()[:-2] + b'\xff"]')),
    Case("a bogus charset", 400, _sendgrid(GOOD, "application/json; charset=bogus")),
    Case("a NUL byte", 400, _sendgrid(GOOD.encode()[:-1] + b"\x00]")),
    Case("multipart", 415, _sendgrid(_multipart, None)),
    Case("text", 415, _sendgrid(GOOD, "text/plain")),
    Case("no content type", 415, _sendgrid(GOOD, None), no_content_type=True),
    Case("too long", 413, _sendgrid(b"[" + b" " * SENDGRID_MAX_BODY + b"]")),
    Case("too long, streamed", 413, _sendgrid(lambda: _stream(SENDGRID_MAX_BODY))),
    Case("signed in 2001", 403, _sendgrid(GOOD, timestamp="978307200")),
    Case("not JSON", 400, _sendgrid("[{")),
    Case("not an array", 400, _sendgrid(json.dumps({"events": sendgrid_events("bounce")}))),
    Case("too deep", 400, _sendgrid("[" * 100_000 + "]" * 100_000)),
    Case("a bad signature on a bad body", 403, _sendgrid("[{", signed_as="[]")),
]


@pytest.mark.parametrize("case", SENDGRID_CASES, ids=lambda c: c.name)
async def test_a_malformed_sendgrid_post_is_refused_and_nothing_stored(sample, caplog, case):
    caplog.set_level(logging.INFO)
    await as_email(sample)
    await refused_and_nothing_stored(sample, caplog, case)
    assert EMAIL not in caplog.text


async def test_a_bad_event_in_a_batch_is_skipped_and_the_good_ones_stored(sample, caplog):
    caplog.set_level(logging.INFO)
    await as_email(sample)
    delivered, bounce = sendgrid_events("delivered", "bounce")
    batch = [
        delivered,
        {**delivered, "sg_event_id": "evt-list-ref", "ref": [REF]},  # not a string
        {**delivered, "sg_event_id": "evt-\u0000"},  # a NUL character
        {**delivered, "sg_event_id": "evt-bool-time", "timestamp": True},
        {**delivered, "sg_event_id": "evt-no-event", "event": None},
        "not an event",
        bounce,
    ]
    signals = FakeJourneys()
    async with sandbox_stack(sample, signals) as stack:
        body = json.dumps(batch)
        caplog.clear()
        answer = await post_sendgrid(stack.url + SENDGRID_EVENTS_PATH, body,
                                     stack.sandbox.sign_events(body))
        row = await record(sample, NID)
        assert await eventually(lambda: _sent(signals))
    assert answer == 200  # a retry would not make the bad events good
    assert await events(sample, NID) == ["delivered", "bounced"]
    assert (row["status"], row["error_code"]) == ("bounced", "5.1.1")
    assert [name for _, name, _ in signals.sent_to] == ["delivery_failed"]
    skipped = [r.getMessage() for r in refusals(caplog)]
    assert len(skipped) == 5 and all("skipped" in line for line in skipped)
    assert "ref: string_type" in skipped[0]
    assert EMAIL not in caplog.text
