"""Tamper evidence: journeys run for real write a hash chain through PostgreSQL's triggers;
`verify` finds a clean database clean and names every change made behind a journey's back."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from domain.evidence import (
    BreakKind,
    DemandRecord,
    Proof,
    disallowed_changes,
    formal_demand,
    status_from_events,
)
from domain.journey import Payment
from domain.plan import TZ
from infra.evidence import chain_head, verify
from tests.journey_helpers import ProviderDouble, at, journey_worker, load_sample, start_journey
from tests.ops_helpers import (
    clean_env,
    load_sample_as,
    run_lapse,
    terminate_journeys,
    unique_prefix,
)

STANDARD = "P2026000001"  # due 2026-11-20, ¥3,600.00


@pytest.fixture
async def sample(pool):
    await load_sample(pool)
    return pool


async def journey_id(pool, policy: str) -> str:
    return await pool.fetchval("SELECT journey_id FROM journeys WHERE policy_number = $1",
                               policy)


@pytest.fixture
async def journeys(time_skipping_env, sample):
    """A never-paid journey run to its end, and one paid in grace."""
    env = time_skipping_env
    async with journey_worker(env.client, sample, ProviderDouble()) as client:
        never = await start_journey(client, sample, STANDARD, at("2026-11-21 08:00"))
        await never.result()
        paid = await start_journey(client, sample, "P2026000002", at("2026-11-21 08:00"))
        await env.sleep(timedelta(days=3))
        await paid.signal("payment_received", Payment(
            transaction_id="TX-1", amount=Decimal("5280.00"), currency="CNY",
            paid_at=at("2026-11-24 12:00")))
        await paid.result()
    return env.client


async def test_a_clean_database_verifies_clean(journeys, sample):
    found = await verify(sample, client=journeys)
    assert found.breaks == []
    assert found.chains >= 2 and found.entries > 40 and found.histories >= 2
    head = await chain_head(sample, await journey_id(sample, STANDARD))
    assert head.seq > 0


async def bypassing_the_chain(pool, table: str, sql: str, *args) -> None:
    """What someone with the database's keys does: switch the trigger off, edit, switch on."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER evidence_chain")
        await conn.execute(sql, *args)
        await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER evidence_chain")


async def test_edits_behind_the_journeys_back_are_named(journeys, sample):
    first = await journey_id(sample, STANDARD)
    sms = f"{first}/first_reminder/sms/C0001"
    wechat = f"{first}/first_reminder/wechat/C0001"
    # A record's text, with the chain bypassed; a status and a payment, in plain SQL.
    await bypassing_the_chain(sample, "notifications",
                              "UPDATE notifications SET body = body || '。' "
                              "WHERE notification_id = $1", sms)
    await sample.execute("UPDATE notifications SET status = 'delivered' "
                         "WHERE notification_id = $1", wechat)
    await sample.execute("UPDATE payments SET amount = 528.00 WHERE transaction_id = 'TX-1'")
    found = await verify(sample, client=journeys)
    named = {(b.kind, b.table, b.key, tuple(b.fields)) for b in found.breaks}
    assert named == {
        (BreakKind.RECORD_CHANGED, "notifications", sms, ("body",)),
        (BreakKind.STATUS_DISAGREES, "notifications", wechat, ("status",)),
        (BreakKind.CHANGE_NOT_ALLOWED, "payments", "TX-1", ("amount",)),
    }
    [payment] = [b for b in found.breaks if b.table == "payments"]
    assert payment.chain == await journey_id(sample, "P2026000002")
    assert "amount must not change" in payment.line()


async def test_deleted_and_unchained_records_and_chain_entries(journeys, sample):
    first = await journey_id(sample, STANDARD)
    event = await sample.fetchval("SELECT max(event_id) FROM notification_events")
    await sample.execute("DELETE FROM notification_events WHERE event_id = $1", event)
    await bypassing_the_chain(
        sample, "notification_events",
        "INSERT INTO notification_events (notification_id, status, occurred_at) "
        "VALUES ($1, 'delivered', now())", f"{first}/first_reminder/sms/C0001")
    middle = await sample.fetchval("SELECT seq FROM evidence_chain WHERE chain_id = $1 "
                                   "AND table_name = 'notification_events' "
                                   "ORDER BY seq LIMIT 1", first)
    await sample.execute("DELETE FROM evidence_chain WHERE chain_id = $1 AND seq = $2",
                         first, middle)
    found = await verify(sample, client=journeys)
    kinds = {(b.kind, b.table) for b in found.breaks}
    assert (BreakKind.RECORD_MISSING, "notification_events") in kinds
    assert (BreakKind.RECORD_NOT_CHAINED, "notification_events") in kinds
    [gap] = [b for b in found.breaks if b.kind is BreakKind.ENTRY_MISSING]
    assert (gap.chain, gap.seq) == (first, middle + 1)
    assert f"entry {middle} missing" in gap.detail


async def test_a_chain_rewritten_to_match_is_caught_by_temporal(journeys, sample):
    """Someone edits a text and rewrites the chain and its anchors to match: PostgreSQL
    alone then looks consistent, but the heads in the journey's history do not."""
    first = await journey_id(sample, STANDARD)
    sms = f"{first}/first_reminder/sms/C0001"
    await bypassing_the_chain(sample, "notifications",
                              "UPDATE notifications SET body = '您已缴费，无需处理。' "
                              "WHERE notification_id = $1", sms)
    async with sample.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
        await conn.execute(
            "UPDATE evidence_chain e SET "
            "  field_hashes = evidence_field_hashes('notifications', e.row_key, c.content), "
            "  content_hash = evidence_content_hash('notifications', e.row_key, c.content) "
            "FROM evidence_rows(NULL) c WHERE c.table_name = 'notifications' "
            "AND c.row_key = e.row_key AND e.table_name = 'notifications' AND e.row_key = $1",
            sms)
        for seq in await conn.fetch("SELECT seq FROM evidence_chain WHERE chain_id = $1 "
                                    "ORDER BY seq", first):
            await conn.execute(
                "UPDATE evidence_chain e SET prev_hash = (SELECT p.entry_hash FROM "
                "evidence_chain p WHERE p.chain_id = e.chain_id AND p.seq = e.seq - 1) "
                "WHERE chain_id = $1 AND seq = $2", first, seq["seq"])
            await conn.execute(
                "UPDATE evidence_chain e SET entry_hash = evidence_entry_hash(e.chain_kind, "
                "e.chain_id, e.seq, e.prev_hash, e.policy_number, e.table_name, e.row_key, "
                "e.version, e.changed, e.facts, e.content_hash, e.recorded_at) "
                "WHERE chain_id = $1 AND seq = $2", first, seq["seq"])
        await conn.execute("UPDATE evidence_anchors a SET entry_hash = e.entry_hash "
                           "FROM evidence_chain e WHERE e.chain_id = a.journey_id "
                           "AND e.seq = a.seq")
    in_postgres = await verify(sample)
    against_temporal = await verify(sample, client=journeys)
    assert in_postgres.breaks == []
    assert {b.kind for b in against_temporal.breaks} == {BreakKind.HEAD_MISMATCH}
    assert {b.chain for b in against_temporal.breaks} == {first}


async def test_entries_cut_off_the_end_are_caught_by_temporal(journeys, sample):
    first = await journey_id(sample, STANDARD)
    last = await sample.fetchval("SELECT max(seq) FROM evidence_chain WHERE chain_id = $1",
                                 first)
    await sample.execute("DELETE FROM evidence_chain WHERE chain_id = $1 AND seq > $2",
                         first, last - 3)
    await sample.execute("DELETE FROM evidence_anchors WHERE journey_id = $1 AND seq > $2",
                         first, last - 3)
    found = await verify(sample, client=journeys)
    kinds = {b.kind for b in found.breaks}
    assert BreakKind.HEAD_BEYOND_CHAIN in kinds  # the close's head is in the history
    assert BreakKind.RECORD_NOT_CHAINED in kinds  # the rows those entries covered


# --- the rules, without a database -------------------------------------------------------

T1, T2 = datetime(2026, 11, 23, 10, 5, tzinfo=TZ), datetime(2026, 11, 24, 9, 0, tzinfo=TZ)


@pytest.mark.parametrize("records, delivered, proof, at, accepted", [
    ([DemandRecord(channel="sms", status="delivered", receipt="provider", receipt_at=T2),
      DemandRecord(channel="letter", status="sent", tracked=True, posted_at=T1,
                   tracking_number="XA123456789CN")],
     True, Proof.LETTER_TRACKING, T1, True),  # the earliest proof wins
    ([DemandRecord(channel="agent_call", status="delivered", receipt="own", receipt_at=T1)],
     True, Proof.AGENT_CALL, T1, True),
    # An operator's word on an SMS whose fate was unknown is no provider receipt.
    ([DemandRecord(channel="sms", status="delivered", receipt="own", receipt_at=T1)],
     False, None, None, True),
    # Accepted by WeChat, or a letter in the print queue without a tracking number.
    ([DemandRecord(channel="wechat", status="sent"), DemandRecord(channel="letter",
                                                                  status="sent")],
     False, None, None, True),
    # Delivered, then bounced: not delivered after all.
    ([DemandRecord(channel="email", status="bounced", receipt="provider", receipt_at=T1)],
     False, None, None, False),
    ([DemandRecord(channel="sms", status="failed"), DemandRecord(channel="sms",
                                                                 status="unknown")],
     False, None, None, False),
])
def test_the_formal_demand_rule(records, delivered, proof, at, accepted):
    found = formal_demand(records)
    assert (found.delivered, found.proof, found.at, found.accepted) == (
        delivered, proof, at, accepted)


@pytest.mark.parametrize("events, status", [
    ([("sending", False), ("sent", False), ("delivered", True)], "delivered"),
    # The provider's callback came before its answer reached the send activity.
    ([("sending", False), ("delivered", True), ("sent", False)], "delivered"),
    ([("sending", False), ("queued", False), ("sending", False), ("sent", False)], "sent"),
    ([("sending", False), ("unknown", False), ("delivered", False)], "delivered"),
    # A look-up proved the provider never got it: sent again, refused again for now.
    ([("sending", False), ("unknown", False), ("queued", False), ("sending", False),
      ("queued", False)], "queued"),
    ([("sending", False), ("sent", False), ("queued", True), ("open", True)], "sent"),
    ([("sending", False), ("sent", False), ("delivered", True), ("bounced", True)], "bounced"),
    ([], None),
])
def test_a_status_follows_from_its_events(events, status):
    assert status_from_events(events) == status


def test_what_may_change_once_recorded():
    sending, delivered = {"status": "sending"}, {"status": "delivered", "provider_set": True}
    assert disallowed_changes("notifications", ["status", "provider_message_id"],
                              {"status": "sending", "provider_set": False}, delivered) == []
    assert disallowed_changes("notifications", ["body"], {"status": "queued"}, sending) == []
    assert disallowed_changes("notifications", ["body", "status"], delivered,
                              {"status": "sent"}) == ["body"]
    assert disallowed_changes("notifications", ["provider_message_id"], delivered,
                              delivered) == ["provider_message_id"]
    assert disallowed_changes("payments", ["amount"], {}, {}) == ["amount"]
    assert disallowed_changes("inquiries", ["handled_at"], {"handled": False}, {}) == []
    assert disallowed_changes("inquiries", ["handled_at"], {"handled": True}, {}) == [
        "handled_at"]


async def test_lapse_verify_exit_codes_and_bad_input(sample, db_url, short_tmp):
    env = clean_env(DATABASE_URL=db_url, LAPSE_DATA_DIR=str(short_tmp))
    await load_sample(sample)  # loaded again as it was: nothing changed, nothing to chain
    code, out, _ = await run_lapse("verify", "--all", "--no-history", env=env)
    assert code == 0 and "clean" in out
    await sample.execute("UPDATE debit_attempts SET amount = 1 WHERE policy_number = $1",
                         "P2026000002")
    code, out, _ = await run_lapse("verify", "P2026000002", "--no-history", "--json", env=env)
    [found] = json.loads(out)["breaks"]
    assert code == 1 and (found["kind"], found["fields"]) == ("change_not_allowed", ["amount"])
    code, _, err = await run_lapse("verify", "P2026999999", "--no-history", env=env)
    assert code == 2 and err.startswith("lapse verify: unknown policy P2026999999")
    code, _, err = await run_lapse("verify", env=env)
    assert code == 2 and "one of the arguments" in err
    code, _, err = await run_lapse("evidence", STANDARD, "--out", str(short_tmp),
                                   "--requested-by", "李明", env=env)
    assert code == 2 and "--reason" in err
    code, _, err = await run_lapse("evidence", STANDARD, "--out", str(short_tmp),
                                   "--requested-by", "李明", "--reason", "x\ny", env=env)
    assert code == 2 and "one line of 4 to 300 characters" in err


async def test_verify_and_evidence_from_the_command_line(dev_env, pool, db_url, short_tmp):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-{STANDARD}"
    try:
        async with journey_worker(dev_env.client, pool, ProviderDouble()) as journeys:
            handle = await start_journey(journeys, pool, number, at("2026-11-21 08:00"))
            await handle.signal("payment_received", Payment(
                transaction_id=f"TX-{prefix}", amount=Decimal("3600.00"), currency="CNY",
                paid_at=at("2026-11-21 09:00")))
            await handle.result()
    finally:
        await terminate_journeys(dev_env.client, [number])
    env = clean_env(TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
                    DATABASE_URL=db_url, LAPSE_DATA_DIR=str(short_tmp / "data"))
    code, out, err = await run_lapse("verify", number, env=env)
    assert code == 0, err
    assert "1 workflow run(s) compared with Temporal" in out and out.endswith("clean\n")
    code, out, err = await run_lapse("evidence", number, "--out", str(short_tmp / "pack"),
                                     "--requested-by", "投诉专员 李明", "--reason",
                                     "客户投诉 C-2027-0012", env=env)
    assert code == 0, err
    [pdf] = (short_tmp / "pack").glob("EV-*.pdf")
    pack = json.loads(pdf.with_suffix(".json").read_text(encoding="utf-8"))
    assert pack["payments"][0]["transaction_id"] == f"TX-{prefix}"
    assert pack["journey"]["outcome"] == "paid" and pack["verification"]["breaks"] == []
    logged = await pool.fetchrow("SELECT requested_by, reason FROM evidence_requests")
    assert tuple(logged) == ("投诉专员 李明", "客户投诉 C-2027-0012")
