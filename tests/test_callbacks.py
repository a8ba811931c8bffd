"""The delivery callback endpoint: signatures (good, bad, missing), de-duplication, status
updates, the delivery_failed signal, and nothing personal in its logs."""

from __future__ import annotations

import json
import logging
import time

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

import sandbox as sb
from activities.twilio_sender import status_callback_url
from infra.deliveries import provider_ref
from tests.channel_helpers import FakeSignals, events, record, sandbox_stack
from tests.journey_helpers import load_sample
from web.callbacks import SENDGRID_EVENTS_PATH

POLICY = "P2026000001"
MOBILE = "+8613800000001"
NID = f"lapse-{POLICY}@0000abcd/first_reminder/sms/C0001"
REF = provider_ref(NID)


@pytest.fixture
async def sample(pool):
    await load_sample(pool)
    await pool.execute(
        "INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, "
        "channel, recipient_id, recipient_role, body, status, provider, provider_message_id, "
        "provider_ref) VALUES ($1, $2, $3, 'first_reminder', 'sms', 'C0001', 'policyholder', "
        "'text', 'sent', 'twilio', 'SM1', $4)", NID, NID.split("/")[0], POLICY, REF)
    return pool


def twilio_form(status: str, **extra) -> dict[str, str]:
    return {"MessageSid": "SM1", "MessageStatus": status, "To": MOBILE,
            "AccountSid": sb.TWILIO_ACCOUNT_SID, **extra}


async def post_twilio(url: str, form: dict, signature: str | None) -> int:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    async with aiohttp.ClientSession() as http, http.post(url, data=form,
                                                          headers=headers) as response:
        return response.status


async def test_twilio_callback_with_a_good_signature_updates_the_record_once(sample):
    async with sandbox_stack(sample) as stack:
        url = status_callback_url(stack.url, REF)
        form = twilio_form("delivered")
        good = RequestValidator(sb.TWILIO_AUTH_TOKEN).compute_signature(url, form)
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
        tampered = RequestValidator(sb.TWILIO_AUTH_TOKEN).compute_signature(
            url, twilio_form("delivered"))
        answers = [await post_twilio(url, form, None), await post_twilio(url, form, ""),
                   await post_twilio(url, form, other_token),
                   await post_twilio(url, form, tampered)]
        row = await record(sample, NID)
    assert answers == [403, 403, 403, 403]
    assert row["status"] == "sent" and await events(sample, NID) == []
    assert "callback refused" in caplog.text
    assert MOBILE not in caplog.text and "30005" not in caplog.text  # no body in the log


async def test_a_failed_sms_signals_delivery_failed_to_the_journey(sample):
    signals = FakeSignals()
    async with sandbox_stack(sample, signals) as stack:
        url = status_callback_url(stack.url, REF)
        form = twilio_form("undelivered", ErrorCode="30005")
        signature = RequestValidator(sb.TWILIO_AUTH_TOKEN).compute_signature(url, form)
        assert await post_twilio(url, form, signature) == 200
        row = await record(sample, NID)
    assert (row["status"], row["error_code"]) == ("failed", "30005")
    [(policy, name, payload)] = signals.sent
    assert (policy, name) == (POLICY, "delivery_failed")
    assert (payload.notification_id, payload.error_code, payload.permanent) == (
        NID, "30005", True)


def sendgrid_events(*kinds: str, ref: str = REF) -> list[dict]:
    return [{"email": "customer0001@example.com", "timestamp": int(time.time()), "event": k,
             "sg_event_id": f"evt-{k}", "sg_message_id": "SGID1.filter.0", "ref": ref,
             **({"type": "bounce", "status": "5.1.1"} if k == "bounce" else {})}
            for k in kinds]


async def post_sendgrid(url: str, body: str, headers: dict) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body.encode(),
                                                          headers=headers) as response:
        return response.status


async def test_sendgrid_events_verified_deduplicated_and_a_bounce_signalled(sample):
    await sample.execute("UPDATE notifications SET channel = 'email', provider = 'sendgrid' "
                         "WHERE notification_id = $1", NID)
    signals = FakeSignals()
    async with sandbox_stack(sample, signals) as stack:
        url = stack.url + SENDGRID_EVENTS_PATH
        body = json.dumps(sendgrid_events("processed", "delivered", "open"))
        first = await post_sendgrid(url, body, stack.sandbox.sign_events(body))
        again = await post_sendgrid(url, body, stack.sandbox.sign_events(body))
        delivered = await record(sample, NID)
        bounce = json.dumps(sendgrid_events("bounce"))
        await post_sendgrid(url, bounce, stack.sandbox.sign_events(bounce))
        bounced = await record(sample, NID)
    assert (first, again) == (200, 200)
    assert delivered["status"] == "delivered"
    assert await events(sample, NID) == ["sent", "delivered", "open", "bounced"]  # once each
    assert (bounced["status"], bounced["error_code"]) == ("bounced", "5.1.1")
    [(_, name, payload)] = signals.sent
    assert name == "delivery_failed" and payload.channel.value == "email"


async def test_sendgrid_events_without_or_with_a_bad_signature_are_refused(sample):
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
        ]
        row = await record(sample, NID)
    assert answers == [403, 403, 403, 403, 403]
    assert row["status"] == "sent"


async def test_callbacks_for_unknown_references_are_acknowledged_and_ignored(sample):
    async with sandbox_stack(sample) as stack:
        url = status_callback_url(stack.url, "no-such-ref")
        form = {**twilio_form("delivered"), "MessageSid": "SM-other"}
        signature = RequestValidator(sb.TWILIO_AUTH_TOKEN).compute_signature(url, form)
        assert await post_twilio(url, form, signature) == 200
    assert (await record(sample, NID))["status"] == "sent"
