"""WeCom (企业微信): the sender on the sandbox over HTTP (token, messages, errcodes, the
duplicate check), the rendered group messages it carries, and member userids in the
policy file and the database."""

from __future__ import annotations

import json
from datetime import timedelta

import aiohttp
import pytest
from pydantic import ValidationError

import sandbox as sb
from activities.channels import Outgoing, PermanentSendError, TransientSendError
from activities.wecom_sender import WeComMessage
from domain.content import MessageKind, render_message
from domain.models import Channel, Customer
from domain.policy_file import PolicyFileError, parse_policy_file
from infra import store
from tests.channel_helpers import sandbox_alone
from tests.domain.test_content import CASES, for_kind
from tests.journey_helpers import SAMPLE, load_sample

USERID = "sunli"


@pytest.fixture
async def box():
    async with sandbox_alone() as sandbox:
        yield sandbox


@pytest.fixture
async def wecom(box):
    sender = WeComMessage(sb.WECOM_CORP_ID, sb.WECOM_AGENT_ID, sb.WECOM_SECRET,
                          base_url=box.url, timeout=5)
    yield sender
    await sender.aclose()


def rendered(case: str, kind: str) -> Outgoing:
    message = render_message(kind, Channel.WECOM, for_kind(CASES[case].ctx, MessageKind(kind)))
    return Outgoing(notification_id=f"n-{case}-{kind}", channel=Channel.WECOM, address=USERID,
                    subject=message.subject, body=message.body, fields=None,
                    reference="ref-" + kind, template_id=message.template_id, link=message.link)


async def test_group_messages_reach_the_member_with_one_cached_token(box, wecom):
    first = rendered("group_member_1", "first_reminder")
    lapse = rendered("group_member_1", "lapse_notice")
    ids = [await wecom.send(first), await wecom.send(lapse)]
    entries = box.outbox.entries
    assert [e.to for e in entries] == [USERID, USERID] and [e.id for e in entries] == ids
    assert entries[0].api == "wecom" and wecom.tokens_fetched == 1
    # Too long for a textcard: sent as text, with the title, the whole text and the link.
    assert entries[0].subject is None
    assert entries[0].body == f"{first.subject}\n\n{first.body}\n\n{first.link}"
    assert "单位" in entries[1].body and box.requests["wecom"] == 2


async def test_a_short_message_with_a_link_goes_as_a_textcard(box, wecom):
    card = Outgoing("n1", Channel.WECOM, USERID, "团体保险保费缴纳提醒",
                    "王女士，您好：保费由单位缴纳。", None, link="https://service.example-insurer.cn")
    await wecom.send(card)
    [entry] = box.outbox.entries
    assert (entry.subject, entry.body, entry.link) == (card.subject, card.body, card.link)


async def test_token_refreshed_when_wecom_says_it_expired(box, wecom):
    box.faults.add([sb.Fault(fault="token_expired", api="wecom", times=1)])
    await wecom.send(rendered("group_employer", "first_reminder"))
    assert wecom.tokens_fetched == 2 and len(box.outbox.entries) == 1


@pytest.mark.parametrize(("fault", "error", "code"), [
    ("invalid_number", PermanentSendError, "81013"),
    ("rate_limited", TransientSendError, "45009"),
    ("unavailable", TransientSendError, "503"),
])
async def test_errcodes_map_to_our_errors(box, wecom, fault, error, code):
    box.faults.add([sb.Fault(fault=fault, api="wecom", match=USERID)])
    with pytest.raises(error) as refused:
        await wecom.send(rendered("group_member_1", "first_reminder"))
    assert type(refused.value) is error and refused.value.code == code
    assert box.outbox.entries == []


async def test_wrong_credentials_are_our_problem_not_the_members(box):
    wrong = WeComMessage(sb.WECOM_CORP_ID, sb.WECOM_AGENT_ID, "not-the-secret",
                         base_url=box.url)
    with pytest.raises(TransientSendError) as refused:
        await wrong.send(rendered("group_member_1", "first_reminder"))
    await wrong.aclose()
    assert refused.value.code == "token_40001" and "WECOM_CORP_ID" in str(refused.value)
    other_app = WeComMessage(sb.WECOM_CORP_ID, 1000099, sb.WECOM_SECRET, base_url=box.url)
    with pytest.raises(TransientSendError) as refused:
        await other_app.send(rendered("group_member_1", "first_reminder"))
    await other_app.aclose()
    assert refused.value.code == "40056"


async def test_a_repeat_inside_the_duplicate_check_reaches_nobody(box, wecom):
    message = rendered("group_member_1", "follow_up")
    first, again = await wecom.send(message), await wecom.send(message)
    assert first == again and len(box.outbox.entries) == 1
    assert wecom.safe_resend_within == timedelta(hours=4)
    other = rendered("group_member_2", "follow_up")
    assert await wecom.send(other) != first and len(box.outbox.entries) == 2


async def test_sandbox_speaks_wecom_errcodes_over_http(box):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{box.url}/cgi-bin/gettoken",
                            params={"corpid": "ww0000000000000000", "corpsecret": "x"}) as r:
            assert (await r.json())["errcode"] == 40013
        async with http.get(f"{box.url}/cgi-bin/gettoken", params={
                "corpid": sb.WECOM_CORP_ID, "corpsecret": sb.WECOM_SECRET}) as r:
            token = await r.json()
        body = {"touser": USERID, "agentid": sb.WECOM_AGENT_ID, "msgtype": "text",
                "text": {"content": "您好"}}
        async with http.post(f"{box.url}/cgi-bin/message/send",
                             params={"access_token": "stale"}, json=body) as r:
            assert (await r.json())["errcode"] == 40014
        async with http.post(f"{box.url}/cgi-bin/message/send",
                             params={"access_token": token["access_token"]},
                             json={**body, "msgtype": "voice"}) as r:
            assert (await r.json())["errcode"] == 40008
        async with http.post(f"{box.url}/cgi-bin/message/send",
                             params={"access_token": token["access_token"]}, json=body) as r:
            sent = await r.json()
    assert token["errcode"] == 0 and token["expires_in"] == 7200
    assert sent["errcode"] == 0 and sent["invaliduser"] == "" and sent["msgid"]


def test_a_userid_is_validated_without_echoing_it():
    line = {"record": "customer", "customer_id": "C1", "name": "孙丽", "birth_date": "1992-02-14",
            "wecom_userid": "孙丽 HR"}
    with pytest.raises(ValidationError) as err:
        Customer.model_validate(line)
    [problem] = err.value.errors(include_input=False)
    assert problem["loc"] == ("wecom_userid",)
    with pytest.raises(PolicyFileError) as bad:
        parse_policy_file([json.dumps(line, ensure_ascii=False)])
    assert "wecom_userid" in str(bad.value) and "孙丽 HR" not in str(bad.value)


async def test_userids_are_stored_and_read_back(pool):
    await load_sample(pool)
    async with pool.acquire() as conn:
        bundle = await store.load_policy(conn, "P2026000007")
    expected = {c["customer_id"]: c.get("wecom_userid") for c in map(
        json.loads, SAMPLE.read_text(encoding="utf-8").splitlines()[1:])
        if c["record"] == "customer"}
    people = [bundle.policyholder, *bundle.insured]
    assert {p.customer_id: p.wecom_userid for p in people} == {
        p.customer_id: expected[p.customer_id] for p in people}
    assert bundle.policyholder.wecom_userid == "hr.zhao"
    assert sum(1 for p in bundle.insured if p.wecom_userid) == 2  # one member has none
