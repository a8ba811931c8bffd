"""Evidence packs for three journeys run through the real senders and the sandbox in
compressed time (never paid, unreachable, reinstated): the JSON says what the records say,
the PDF renders page by page, and the request is logged.

With RECORD_EVIDENCE_DOCS=1 the pages are written to docs/ as PNGs (the README shows them).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pypdfium2
import pytest

import sandbox as sb
from commands.evidence import write_pack
from domain.evidence import Proof
from domain.journey import Outcome, ReinstatementApplied, ReinstatementDecided
from infra.evidence_pack import gather, log_request, log_result, new_reference
from tests.channel_helpers import LOST, journeys_with_sandbox
from tests.journey_helpers import at, load_sample, start_journey

DOCS = Path(__file__).resolve().parents[2] / "docs"
KINDS = {"never-paid": "P2026000001", "unreachable": "P2026000900",
         "reinstated": "P2026000002"}
UNREACHABLE = [sb.Fault(fault="invalid_number", match="oSandboxLost01"),
               sb.Fault(fault="bounce", match="lost@example.com")]


@pytest.fixture
async def finished(time_skipping_env, pool):
    """The three journeys, run to their ends; the sandbox's callbacks all answered."""
    env = time_skipping_env
    await load_sample(pool, LOST)
    async with journeys_with_sandbox(env, pool, UNREACHABLE) as (journeys, stack):
        handles = {kind: await start_journey(journeys, pool, policy, at("2026-11-21 08:00"))
                   for kind, policy in KINDS.items()}
        await env.sleep(timedelta(days=60))  # the debit-failed policy lapsed on 2027-01-14
        reinstated = handles["reinstated"]
        await reinstated.signal("reinstatement_applied", ReinstatementApplied(
            application_id="R-1", applied_at=at("2027-01-20 09:00")))
        await env.sleep(timedelta(hours=2))
        await reinstated.signal("reinstatement_decided", ReinstatementDecided(
            application_id="R-1", approved=True, decided_at=at("2027-01-20 15:00")))
        results = {kind: await h.result() for kind, h in handles.items()}
        await stack.sandbox.settle()
    assert results["reinstated"].outcome is Outcome.REINSTATED
    assert results["never-paid"].outcome is Outcome.FOLLOW_UP_ENDED
    return env.client


async def pack_for(pool, client, kind: str, out: Path):
    now = datetime(2027, 8, 1, 10, 0, tzinfo=UTC)
    reference = new_reference(now)
    await log_request(pool, reference, KINDS[kind], None, "投诉专员 李明（客服中心）",
                      f"客户投诉 C-2027-{kind}")
    gathered = await gather(pool, client, KINDS[kind], None, reference=reference,
                            requested_by="投诉专员 李明（客服中心）",
                            reason=f"客户投诉 C-2027-{kind}", now=now)
    pdf_path, json_path, pdf = write_pack(gathered, out)
    await log_result(pool, gathered.pack, pdf)
    return json.loads(json_path.read_text(encoding="utf-8")), pdf_path


async def test_the_packs_json_says_what_the_records_say(finished, pool, short_tmp):
    for kind, policy in KINDS.items():
        pack, pdf_path = await pack_for(pool, finished, kind, short_tmp / kind)
        jid = pack["journey"]["journey_id"]
        records = await pool.fetch("SELECT * FROM notifications WHERE journey_id = $1 "
                                   "ORDER BY created_at, notification_id", jid)
        assert [m["notification_id"] for m in pack["messages"]] == [
            r["notification_id"] for r in records]
        for m, r in zip(pack["messages"], records, strict=True):
            assert (m["text"], m["subject"], m["status"], m["provider_message_id"]) == (
                r["body"], r["subject"], r["status"], r["provider_message_id"])
            events = await pool.fetch("SELECT status, occurred_at FROM notification_events "
                                      "WHERE notification_id = $1 ORDER BY event_id",
                                      r["notification_id"])
            assert [(s["status"], datetime.fromisoformat(s["at"])) for s in m["statuses"]] \
                == [(e["status"], e["occurred_at"]) for e in events]
            if m["letter"]:
                kept = (pdf_path.parent / m["letter"]["filename"]).read_bytes()
                assert hashlib.sha256(kept).hexdigest() == m["letter"]["sha256"]
        chain = await pool.fetch("SELECT seq, entry_hash FROM evidence_chain WHERE chain_id "
                                 "= $1 ORDER BY seq", jid)
        mine = [e for e in pack["chain"] if e["chain"] == jid]
        assert [(e["seq"], e["entry_hash"]) for e in mine] == [
            (c["seq"], c["entry_hash"].hex()) for c in chain]
        assert pack["head"]["seq"] == chain[-1]["seq"]
        assert pack["verification"]["breaks"] == [] and pack["timeline"]
        logged = await pool.fetchrow("SELECT * FROM evidence_requests WHERE request_id = $1",
                                     pack["reference"])
        assert (logged["policy_number"], logged["journey_id"], logged["breaks"]) == (
            policy, jid, 0)
        assert logged["pack_sha256"] == hashlib.sha256(pdf_path.read_bytes()).hexdigest()
        demand = pack["formal_demand"]
        if kind == "unreachable":
            assert (demand["delivered"], demand["accepted"]) == (False, False)
            assert all(m["address"] is None or "****" in m["address"]
                       for m in pack["messages"])
        else:
            # The SMS of the first reminder, delivered by Twilio's status callback.
            [sms] = [m for m in pack["messages"]
                     if m["milestone"] == "first_reminder" and m["channel"] == "sms"]
            delivered = next(s for s in sms["statuses"] if s["status"] == "delivered")
            assert (demand["delivered"], demand["proof"]) == (True, Proof.PROVIDER_RECEIPT)
            assert demand["reference"] == sms["provider_message_id"]
            assert demand["at"] == delivered["at"] and delivered["source"] == "provider"
        await render_pages(pdf_path, kind)
        if kind == "never-paid":
            # `notifications.kind` is outside the evidence chain: a kind rewritten in the
            # database does not move the formal demand, which the pack reads from the
            # chained key and role.
            changed = await pool.execute(
                "UPDATE notifications SET kind = 'follow_up' WHERE journey_id = $1 "
                "AND kind = 'first_reminder'", jid)
            assert changed != "UPDATE 0"
            again, _ = await pack_for(pool, finished, kind, short_tmp / "rewritten")
            assert again["formal_demand"] == demand


async def render_pages(pdf_path: Path, kind: str) -> None:
    """Every page as a PNG; the first two and the last into docs/ when asked to record."""
    record = os.environ.get("RECORD_EVIDENCE_DOCS") == "1"
    pdf = pypdfium2.PdfDocument(pdf_path)
    try:
        assert len(pdf) >= 2
        for number, page in enumerate(pdf, 1):
            image = page.render(scale=1.25).to_pil()
            assert image.convert("L").getextrema()[0] < 64  # there is ink on the page
            shown = record and number in (1, 2, len(pdf))
            name = f"evidence-{kind}-{'last' if number == len(pdf) else number}.png"
            image.quantize(colors=32).save((DOCS if shown else pdf_path.parent) / name,
                                           optimize=True)
    finally:
        pdf.close()
