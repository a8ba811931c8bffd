"""The sandbox providers on their own: the API shapes the real clients rely on, failure
injection over HTTP, and the outbox pages a person opens."""

from __future__ import annotations

import base64
from asyncio import to_thread
from urllib.parse import quote

import aiohttp
import pytest
from python_http_client.exceptions import UnauthorizedError
from sendgrid import SendGridAPIClient
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

import sandbox as sb
from activities.channels import Attachment, Outgoing, TransientSendError
from activities.letters import render_letter_pdf
from activities.sendgrid_sender import SendGridEmail
from domain.models import Channel
from tests.channel_helpers import sandbox_alone


@pytest.fixture
async def box():
    async with sandbox_alone() as sandbox:
        yield sandbox


def twilio(url: str, token: str = sb.TWILIO_AUTH_TOKEN) -> Client:
    client = Client(sb.TWILIO_ACCOUNT_SID, token)
    client.api.base_url = url
    return client


async def test_twilio_messages_and_calls_answer_as_twilio_does(box):
    # The clients are synchronous: in a thread, while this loop serves the sandbox.
    client = twilio(box.url)
    message = await to_thread(client.messages.create, to="+8613800000001",
                              from_=sb.TWILIO_FROM_NUMBER, body="测试")
    call = await to_thread(client.calls.create, to="+8613800000001",
                           from_=sb.TWILIO_FROM_NUMBER,
                           twiml='<Response><Say language="zh-CN">您好</Say></Response>')
    assert message.sid.startswith("SM") and message.status == "queued"
    assert message.body == "测试" and message.direction == "outbound-api"
    assert call.sid.startswith("CA") and call.status == "queued"
    with pytest.raises(TwilioRestException) as refused:
        await to_thread(twilio(box.url, "wrong-token").messages.create, to="+8613800000001",
                        from_="+1", body="x")
    assert (refused.value.status, refused.value.code) == (401, 20003)
    with pytest.raises(TwilioRestException) as invalid:
        await to_thread(client.messages.create, to="+8613900000000", from_="+1", body="x")
    assert (invalid.value.status, invalid.value.code) == (400, 21211)
    assert [e.body for e in box.outbox.entries] == ["测试", "您好"]


async def test_sendgrid_mail_send_answers_202_with_a_message_id(box):
    email = SendGridEmail(sb.SENDGRID_API_KEY, sb.SENDGRID_FROM, host=box.url)
    pdf = render_letter_pdf("通知书", "通知书\n\n正文")
    message_id = await email.send(Outgoing(
        "n1", Channel.EMAIL, "a@example.com", "主题", "正文", None, reference="r1",
        attachment=Attachment("通知书.pdf", pdf.content)))
    [entry] = box.outbox.entries
    assert entry.id == message_id and entry.ref == "r1" and entry.subject == "主题"
    assert entry.attachments[0].content == pdf.content
    wrong = SendGridAPIClient("SG.wrong", host=box.url)
    with pytest.raises(UnauthorizedError) as refused:
        await to_thread(wrong.send, email.mail(
            Outgoing("n2", Channel.EMAIL, "a@example.com", "s", "b", None)))
    assert refused.value.status_code == 401
    await email.aclose()


async def test_wechat_token_and_template_send(box):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{box.url}/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": sb.WECHAT_APP_ID,
                "secret": "wrong"}) as r:
            assert (await r.json())["errcode"] == 40001
        async with http.get(f"{box.url}/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": sb.WECHAT_APP_ID,
                "secret": sb.WECHAT_APP_SECRET}) as r:
            token = (await r.json())["access_token"]
        body = {"touser": "oSandbox000001", "template_id": "T1",
                "data": {"thing1": {"value": "张先生"}}}
        async with http.post(f"{box.url}/cgi-bin/message/template/send",
                             params={"access_token": "stale"}, json=body) as r:
            assert (await r.json())["errcode"] == 40001
        async with http.post(f"{box.url}/cgi-bin/message/template/send",
                             params={"access_token": token}, json=body) as r:
            sent = await r.json()
    assert sent["errcode"] == 0 and sent["msgid"] > 0
    assert box.outbox.entries[0].fields == {"thing1": "张先生"}


async def test_failure_rules_set_over_http_by_recipient_and_by_rate(box):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{box.url}/sandbox/faults", json=[
                {"fault": "unavailable", "api": "email", "rate": 0.5},
                {"fault": "rate_limited", "match": "b@example.com", "retry_after": 30}]) as r:
            assert r.status == 201
        async with http.post(f"{box.url}/sandbox/faults", json={"fault": "nonsense"}) as r:
            assert r.status == 400
        async with http.get(f"{box.url}/sandbox/faults") as r:
            rules = await r.json()
    assert [r["fault"] for r in rules] == ["invalid_number", "unavailable", "rate_limited"]
    email = SendGridEmail(sb.SENDGRID_API_KEY, sb.SENDGRID_FROM, host=box.url)
    outcomes = []
    for i in range(20):
        try:
            await email.send(Outgoing(f"n{i}", Channel.EMAIL, "a@example.com", "s", "b", None))
            outcomes.append("sent")
        except TransientSendError as err:
            outcomes.append(err.code)
    assert 0 < outcomes.count("503") < 20 and outcomes.count("sent") == 20 - outcomes.count("503")
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{box.url}/sandbox/faults") as r:
            assert r.status == 204
    await email.aclose()


async def test_outbox_pages_per_recipient_with_downloadable_letters(box):
    email = SendGridEmail(sb.SENDGRID_API_KEY, sb.SENDGRID_FROM, host=box.url)
    pdf = render_letter_pdf("保险合同效力中止（失效）通知书", "正文")
    await email.send(Outgoing("n1", Channel.EMAIL, "a@example.com", "失效通知", "您的保单已失效",
                              None, attachment=Attachment("失效通知书.pdf", pdf.content)))
    await to_thread(twilio(box.url).calls.create, to="+8613800000001",
                    from_=sb.TWILIO_FROM_NUMBER,
                    twiml='<Response><Say language="zh-CN">这是语音提醒</Say></Response>')
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{box.url}/outbox") as r:
            index = await r.text()
        async with http.get(f"{box.url}/outbox/to/{quote('a@example.com')}") as r:
            mails = await r.text()
        async with http.get(f"{box.url}/outbox/to/{quote('+8613800000001')}") as r:
            calls = await r.text()
        async with http.get(f"{box.url}/outbox/attachment/{box.outbox.entries[0].id}/0") as r:
            download, disposition = await r.read(), r.headers["Content-Disposition"]
        async with http.get(f"{box.url}/sandbox/messages", params={"api": "voice"}) as r:
            voice = await r.json()
        async with http.get(f"{box.url}/sandbox/keys") as r:
            keys = await r.json()
    assert "a@example.com" in index and "+8613800000001" in index
    assert "您的保单已失效" in mails and "失效通知书.pdf" in mails
    assert "Script spoken" in calls and "这是语音提醒" in calls
    assert download == pdf.content and disposition.startswith("attachment")
    assert [v["body"] for v in voice] == ["这是语音提醒"]
    assert base64.b64decode(keys["sendgrid_event_webhook_public_key"])
    await email.aclose()
