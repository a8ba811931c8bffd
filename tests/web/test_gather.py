"""Calls with a choice: the automated call offers its menu (<Gather>), the sandbox's callee
presses keys, the endpoint verifies Twilio's signature, records each choice and answers
(the amount again, or an agent); and what a caller must never get."""

from __future__ import annotations

from datetime import date

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

import sandbox as sb
from activities.twilio_sender import GATHER_PATH
from domain.models import Channel
from domain.voice_menu import CONNECTING, amount_sentence, menu_for, prompt
from infra import store
from tests.channel_helpers import attempt_env, sandbox_stack, send_request
from tests.journey_helpers import load_sample
from web.gather import hotline_number

STANDARD, MOBILE = "P2026000001", "+8613800000001"
WITH_CONTACT, CONTACT_PHONE = "P2026000950", "+8613800000951"
DAY = date(2026, 11, 23)
CALL_SID = "CA" + "0" * 32
# A policyholder with an emergency contact, who may be asked to pass on a request to call.
CONTACT_LINES = [
    '{"record": "customer", "customer_id": "C0950", "name": "孙立", "gender": "M", '
    '"birth_date": "1980-01-01", "mobile": "+8613800000950", "emergency_contact": '
    '{"name": "孙红", "phone": "+8613800000951", "relation": "姐姐"}}',
    '{"record": "policy", "policy_number": "P2026000950", "product_code": "LT-WL01", '
    '"policyholder_id": "C0950", "effective_date": "2020-01-01", "premium": "1800.00", '
    '"due_date": "2026-11-20", "payment_method": {"kind": "manual"}, '
    '"dues": [{"due_date": "2026-11-20", "amount": "1800.00"}]}',
]


@pytest.fixture
async def sample(pool):
    await load_sample(pool, CONTACT_LINES)
    return pool


async def call(stack, pool, message: str = "second_reminder", keys: str | None = None, *,
               policy: str = STANDARD, number: str = MOBILE, scope: str = "policyholder"):
    if keys is not None:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{stack.url}/sandbox/callees",
                                 json={"match": number, "keys": keys}) as r:
                assert r.status == 201
    req = await send_request(pool, policy, message, Channel.VOICE, DAY, scope=scope)
    await attempt_env().run(stack.activities().send_notifications, req)
    await stack.sandbox.settle()
    return await pool.fetchrow("SELECT * FROM notifications WHERE journey_id = $1",
                               req.journey_id)


async def call_choices(pool, notification_id: str) -> list:
    """The keys pressed during the call, in order, as operations read them (psql)."""
    return await pool.fetch("SELECT call_sid, digits, choice FROM call_choices "
                            "WHERE notification_id = $1 ORDER BY pressed_at, choice_id",
                            notification_id)


async def test_the_callee_hears_the_amount_again_then_asks_for_an_agent(sample):
    async with sandbox_stack(sample) as stack:
        row = await call(stack, sample, keys="21")
        [entry] = stack.sandbox.outbox.entries
        choices = await call_choices(sample, row["notification_id"])
        async with sample.acquire() as conn:
            owed = (await store.load_policy(conn, STANDARD, with_members=False)).policy.outstanding
    menu = prompt(menu_for("second_reminder.voice"))
    # The menu went out with the call; its action carries only the opaque reference.
    assert "<Gather" in entry.twiml and menu in entry.twiml
    assert f'{GATHER_PATH}?ref={row["provider_ref"]}"' in entry.twiml
    assert entry.keys == [("2", amount_sentence(owed) + menu),
                          ("1", f"{CONNECTING} (dialled {hotline_number()})")]
    assert [(c["digits"], c["choice"]) for c in choices] == [("2", "repeat_amount"),
                                                             ("1", "agent")]
    assert {c["call_sid"] for c in choices} == {entry.id}
    assert row["status"] == "delivered"  # the call went on to complete


async def test_a_key_not_offered_is_recorded_and_the_menu_said_again(sample):
    async with sandbox_stack(sample) as stack:
        row = await call(stack, sample, keys="9")
        [entry] = stack.sandbox.outbox.entries
        choices = await call_choices(sample, row["notification_id"])
    assert entry.keys[0][0] == "9" and entry.keys[0][1].startswith("您的输入有误。")
    assert [c["choice"] for c in choices] == ["invalid"]


async def test_an_emergency_contact_can_reach_an_agent_but_never_hear_an_amount(sample):
    async with sandbox_stack(sample) as stack:
        row = await call(stack, sample, message="emergency_contact", keys="2",
                         policy=WITH_CONTACT, number=CONTACT_PHONE, scope="emergency_contact")
        entries = stack.sandbox.outbox.entries
        choices = await call_choices(sample, row["notification_id"])
    assert "请按2" not in entries[0].twiml and "请按1" in entries[0].twiml
    assert [c["choice"] for c in choices] == ["invalid"]
    assert "元" not in entries[0].keys[0][1]


async def test_nobody_pressing_a_key_records_nothing(sample):
    async with sandbox_stack(sample) as stack:
        row = await call(stack, sample)
        assert await call_choices(sample, row["notification_id"]) == []
    assert stack.sandbox.outbox.entries[0].keys == []


async def test_the_endpoint_refuses_unsigned_or_malformed_requests(sample):
    async with sandbox_stack(sample) as stack:
        row = await call(stack, sample)
        url = f"{stack.url}{GATHER_PATH}?ref={row['provider_ref']}"
        good = {"CallSid": CALL_SID, "Digits": "1", "AccountSid": sb.TWILIO_ACCOUNT_SID}
        signer = RequestValidator(sb.TWILIO_AUTH_TOKEN)

        async def post(form, signature=None, target=url):
            headers = {"X-Twilio-Signature": signature or signer.compute_signature(target, form)}
            async with aiohttp.ClientSession() as http:
                async with http.post(target, data=form, headers=headers) as r:
                    return r.status, await r.text()

        unsigned = await post(good, signature="bogus")
        malformed = await post({**good, "Digits": "1; DROP"})
        stranger = await post(good, target=f"{stack.url}{GATHER_PATH}?ref={'ab' * 16}")
        accepted = await post(good)
        choices = await call_choices(sample, row["notification_id"])
    assert unsigned[0] == 403 and malformed[0] == 400
    assert stranger[0] == 200 and "<Hangup/>" in stranger[1]  # unknown call: goodbye
    assert accepted[0] == 200 and f"<Dial>{hotline_number()}</Dial>" in accepted[1]
    assert [c["choice"] for c in choices] == ["agent"]  # only the good request left a record


async def test_callee_rules_are_validated_and_listed_over_http(sample):
    async with sandbox_stack(sample) as stack, aiohttp.ClientSession() as http:
        async with http.post(f"{stack.url}/sandbox/callees", json={"keys": "one"}) as r:
            assert r.status == 400
        async with http.post(f"{stack.url}/sandbox/callees", json=[{"keys": "1"}]) as r:
            assert r.status == 201
        async with http.get(f"{stack.url}/sandbox/callees") as r:
            assert await r.json() == [{"match": "*", "keys": "1"}]
        async with http.delete(f"{stack.url}/sandbox/callees") as r:
            assert r.status == 204
    assert stack.sandbox.callees.rules == []


ELDERLY, ELDERLY_MOBILE = "P2026000006", "+8613800000006"  # the policyholder is 76


async def test_an_elderly_caller_who_asks_for_an_agent_gets_a_home_visit(sample):
    async with sandbox_stack(sample) as stack:
        await call(stack, sample, keys="1", policy=ELDERLY, number=ELDERLY_MOBILE)
        await call(stack, sample, keys="1")  # 39 years old: connected, no visit
        visits = await sample.fetch(
            "SELECT policy_number, branch_code FROM agent_tasks WHERE kind = 'home_visit'")
    assert [(v["policy_number"], bool(v["branch_code"])) for v in visits] == [(ELDERLY, True)]
