"""Asking a provider whether it has a message whose send was interrupted (issue 10.2):
Twilio and SendGrid through their real clients against the sandbox, the sandbox's faults
on look-ups, and what WeChat and WeCom offer instead (a repeat is dropped; WeChat reports
the job's end to the account's server)."""

from __future__ import annotations

import asyncio
import hashlib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

import sandbox as sb
from activities.channels import Outgoing, TransientSendError
from activities.lookup import Lookup
from activities.sendgrid_sender import SendGridEmail
from activities.twilio_sender import TwilioSms, TwilioVoice
from activities.wechat_sender import WECHAT_EVENTS_PATH, WeChatTemplate
from domain.models import Channel
from tests.channel_helpers import sandbox_alone
from web import serve

MOBILE = "+8613800000001"
OPENID = "oSandbox000001"


@pytest.fixture
async def box():
    async with sandbox_alone() as sandbox:
        yield sandbox


def twilio(kind, box, **kwargs):
    return kind(sb.TWILIO_ACCOUNT_SID, sb.TWILIO_AUTH_TOKEN, sb.TWILIO_FROM_NUMBER,
                base_url=box.url, timeout=5, **kwargs)


def sms(body: str, reference: str = "r1") -> Outgoing:
    return Outgoing("n-" + reference, Channel.SMS, MOBILE, None, body, None, reference=reference)


async def test_twilio_sms_found_by_its_exact_text(box):
    sender = twilio(TwilioSms, box)
    before = datetime.now(UTC)
    ours, theirs = "【安泰人寿】张先生您好，保单尾号0001本期保费未缴。", "【安泰人寿】尾号0002"
    sid = await sender.send(sms(ours))
    found = await sender.lookup(sms(ours), since=before)
    other = await sender.lookup(sms(theirs), since=before)
    # A message from before our record's send is somebody else's, however alike.
    later = await sender.lookup(sms(ours), since=datetime.now(UTC) + timedelta(hours=1))
    await sender.aclose()
    assert found == Lookup(found=True, provider_id=sid)
    assert other == Lookup(found=False) and later == Lookup(found=False)


async def test_twilio_call_found_by_the_reference_in_its_callbacks(box):
    voice = twilio(TwilioVoice, box, callback_base=box.url)
    call = Outgoing("n-call", Channel.VOICE, MOBILE, None, "您好，这里是安泰人寿。", None,
                    reference="ref-call-1")
    box.pause_callbacks()
    sid = await voice.send(call)
    # Placed, but Twilio has made no request for it yet: nothing tells it apart.
    assert await voice.lookup(call) == Lookup(found=None)
    box.resume_callbacks()
    await box.settle()
    found = await voice.lookup(call)
    stranger = await voice.lookup(Outgoing("n-2", Channel.VOICE, MOBILE, None, "x", None,
                                           reference="ref-call-2"))
    elsewhere = await voice.lookup(Outgoing("n-3", Channel.VOICE, "+8613800000002", None, "x",
                                            None, reference="ref-call-3"))
    await voice.aclose()
    assert found == Lookup(found=True, provider_id=sid)
    assert stranger == Lookup(found=False) and elsewhere == Lookup(found=False)


async def test_sendgrid_found_by_its_custom_argument_in_email_activity(box):
    email = SendGridEmail(sb.SENDGRID_API_KEY, sb.SENDGRID_FROM, host=box.url, timeout=5)
    mail = Outgoing("n-mail", Channel.EMAIL, "a@example.com", "失效通知", "正文", None,
                    reference="ref-mail-1")
    message_id = await email.send(mail)
    missing = Outgoing("n-gone", Channel.EMAIL, "a@example.com", "s", "b", None,
                       reference="ref-mail-2")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    results = [await email.lookup(mail), await email.lookup(missing, since=an_hour_ago),
               await email.lookup(missing, since=datetime.now(UTC))]
    await email.aclose()
    assert results[0] == Lookup(found=True, provider_id=message_id)
    assert results[1] == Lookup(found=False)
    # Just sent: the activity feed may not show it yet, so its absence proves nothing.
    assert results[2] == Lookup(found=None)


async def test_a_look_up_fails_transiently_while_sends_go_on(box):
    box.faults.add([sb.Fault(fault="unavailable", api="*", request="lookup", times=2)])
    sender = twilio(TwilioSms, box)
    email = SendGridEmail(sb.SENDGRID_API_KEY, sb.SENDGRID_FROM, host=box.url, timeout=5)
    message = sms("短信正文")
    await sender.send(message)
    with pytest.raises(TransientSendError) as refused:
        await sender.lookup(message)
    with pytest.raises(TransientSendError):
        await email.lookup(Outgoing("n", Channel.EMAIL, "a@example.com", "s", "b", None,
                                    reference="r"))
    found = await sender.lookup(message)  # the rule is used up: Twilio answers again
    await sender.aclose()
    await email.aclose()
    assert refused.value.code == "503" and found.found is True


def test_a_look_up_does_not_match_a_send_rule():
    rules = sb.Faults([sb.Fault(fault="unavailable")])
    assert rules.pick("sms", MOBILE, "lookup") is None
    assert rules.pick("sms", MOBILE, "send") is not None


@pytest.fixture
async def account_server():
    """The official account's server: what WeChat posts to it, as it arrived."""
    received: asyncio.Queue = asyncio.Queue()

    async def events(request: web.Request) -> web.Response:
        await received.put((dict(request.query), request.content_type, await request.text()))
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post(WECHAT_EVENTS_PATH, events)
    async with serve(app) as url:
        yield url, received


@pytest.mark.parametrize(("faults", "status"), [
    ([], "success"),
    ([sb.Fault(fault="undelivered", api="wechat")], "failed:user block"),
])
async def test_wechat_reports_the_job_to_the_account_server_signed(box, account_server,
                                                                  faults, status):
    url, received = account_server
    box.wechat_server_url = url + WECHAT_EVENTS_PATH
    box.faults.add(faults)
    wechat = WeChatTemplate(sb.WECHAT_APP_ID, sb.WECHAT_APP_SECRET, base_url=box.url)
    msgid = await wechat.send(Outgoing("n-w", Channel.WECHAT, OPENID, None, "", {"thing1": "x"},
                                       reference="ref-wechat-1", template_id="first_reminder"))
    await wechat.aclose()
    query, content_type, body = await asyncio.wait_for(received.get(), 10)
    expected = hashlib.sha1("".join(sorted(
        (sb.WECHAT_TOKEN, query["timestamp"], query["nonce"]))).encode()).hexdigest()
    assert query["signature"] == expected and query["openid"] == OPENID
    event = {child.tag: child.text for child in ET.fromstring(body)}
    assert content_type == "text/xml"
    assert event["MsgType"] == "event" and event["Event"] == "TEMPLATESENDJOBFINISH"
    assert event["MsgID"] == msgid and event["Status"] == status
    assert event["FromUserName"] == OPENID and int(event["CreateTime"]) > 0


async def test_wechat_drops_a_repeat_of_its_client_msg_id(box):
    wechat = WeChatTemplate(sb.WECHAT_APP_ID, sb.WECHAT_APP_SECRET, base_url=box.url)
    message = Outgoing("n-w", Channel.WECHAT, OPENID, None, "", {"thing1": "x"},
                       reference="ref-wechat-2", template_id="first_reminder")
    first, again = await wechat.send(message), await wechat.send(message)
    await wechat.aclose()
    assert first == again and len(box.outbox.entries) == 1
    assert wechat.safe_resend_within == timedelta(minutes=10)
