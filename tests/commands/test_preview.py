"""`lapse plan --messages` shows the texts the journey sends: a whole failed-debit journey
runs on the time-skipping server with the real send activity and the sandbox providers,
and every record's text is the preview's for the same plan (the payment link's token, a
hash of the journey id that does not exist before the start, aside)."""

from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta

import pytest
from pypdf import PdfReader

from activities.content import payment_token
from commands.plan import PREVIEW_JOURNEY, make_plan, shown_messages
from domain.calendar import BusinessCalendar
from domain.content import format_amount
from infra import store
from infra.journeys import Journeys
from tests.channel_helpers import sandbox_stack
from tests.journey_helpers import at, load_sample, start_journey
from worker import build_worker
from workflows.policy_lapse import PolicyLapseWorkflow

DEBIT = "P2026000002"  # 李娜: debit of ¥5,280.00 failed on 2026-11-15 (insufficient balance)
START = at("2026-11-16 08:00")


@pytest.fixture
async def sample(pool):
    await load_sample(pool)
    return pool


async def preview_texts(pool, policy: str) -> dict[tuple[str, str], str]:
    async with pool.acquire() as conn:
        bundle = await store.load_policy(conn, policy, with_members=False)
        calendar = BusinessCalendar(await store.load_calendar_years(conn))
    plan, trigger = make_plan(bundle, calendar, START)
    return {(s.req.milestone_key, s.req.channel.value): s.message.body
            for s in shown_messages(bundle, plan, trigger) if s.message is not None
            and s.role == "policyholder"}


async def test_a_failed_debit_journey_sends_what_the_preview_shows(time_skipping_env, sample):
    env = time_skipping_env
    preview = await preview_texts(sample, DEBIT)  # before the start, as a reviewer would
    queue = f"test-{uuid.uuid4().hex[:8]}"
    async with sandbox_stack(sample) as stack, build_worker(env.client, sample, queue,
                                                            senders=stack.senders):
        handle = await start_journey(Journeys(env.client, queue), sample, DEBIT, START)
        await env.sleep(timedelta(days=60, hours=4))  # 2027-01-15 12:00: the lapse notice
        status = await handle.query(PolicyLapseWorkflow.status)
        await env.sleep(timedelta(days=200))  # every follow-up, to the end of the journey
        await handle.result()
        records = await sample.fetch(
            "SELECT journey_id, milestone, channel, body FROM notifications "
            "WHERE policy_number = $1 AND recipient_role = 'policyholder'", DEBIT)
        email = next(e for e in stack.sandbox.outbox.entries if e.attachments)
    journey_token = payment_token(DEBIT, records[0]["journey_id"])
    sent = {(r["milestone"], r["channel"]): r["body"].replace(
        journey_token, payment_token(DEBIT, PREVIEW_JOURNEY)) for r in records}
    assert len(sent) >= 12 and sent.keys() <= preview.keys()
    for key, body in sent.items():
        assert body == preview[key], key

    # Every message of the journey states the failed debit: when, how much, why (MISSION 8).
    for (milestone, channel), body in sent.items():
        when, amount = (("二〇二六年十一月十五日", "五千二百八十元") if channel == "voice"
                        else ("2026年11月15日", "¥5,280.00"))
        assert when in body and amount in body and "余额不足" in body, (milestone, channel)
    # Follow-ups say when the policy lapsed and why; the lapse notice quotes what status does.
    for k in range(1, 7):
        assert "已于2027年1月15日失效" in sent[(f"follow_up_{k}", "sms")]
    quote = status.reinstatement
    assert quote is not None and f"合计{format_amount(quote.total)}" in sent[
        ("lapse_notice", "email")]
    # The formal letter travels with the e-mail, as a PDF with the same facts.
    letter = re.sub(r"\s+", "", "".join(
        p.extract_text() for p in PdfReader(io.BytesIO(email.attachments[0].content)).pages))
    for fact in ("保险合同效力中止（失效）通知书", "2027年1月15日零时起失效", "账户余额不足",
                 "¥5,280.00", f"合计{format_amount(quote.total)}"):
        assert fact in letter
