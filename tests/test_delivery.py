"""Journeys on the time-skipping server with the real senders, the sandbox providers and
the callback endpoint: every message in the outbox and on record, transient failures
retried, permanent ones falling back, and the unreachable path end to end."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import aiohttp
import pytest

import sandbox as sb
from domain.journey import Outcome
from domain.models import Channel
from tests.channel_helpers import LOST, eventually, journeys_with_sandbox
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
              sb.Fault(fault="invalid_number", api="voice")]  # every call refused
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
