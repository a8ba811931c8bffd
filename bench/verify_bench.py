"""How long `lapse verify --all` takes on 100,000 journeys, against reading the same rows.

Seeds an embedded PostgreSQL (deleted afterwards) through the evidence triggers, as the
application writes: per journey its start, three messages each sent and delivered (record,
three events, a status change), a close, and for a third of them a payment; then anchors
each head. It times the chain's write cost against the same inserts into tables without
the trigger, and the verification of every chain (PostgreSQL only: comparing with Temporal
is one history read per workflow run, on the cluster) against a baseline measured in the
same run: one plain read of every record and entry. It asserts nothing.

    .venv/bin/python bench/verify_bench.py                    # 100,000 journeys
    .venv/bin/python bench/verify_bench.py --journeys 10000
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.db import connect_pool  # noqa: E402
from infra.embedded import EmbeddedPostgres  # noqa: E402
from infra.evidence import verify  # noqa: E402
from infra.migrate import migrate  # noqa: E402

GOAL_SECONDS = 30.0  # `verify --all` on 100,000 journeys, on a 2-core machine

PRODUCT = """
INSERT INTO products (code, name, kind, rules) VALUES ('LT', '终身寿险', 'long_term', '{}')
"""
CUSTOMERS = """
INSERT INTO customers (customer_id, name, birth_date, mobile)
SELECT 'C' || i, '客户' || i, '1980-01-01', '+86138' || lpad(i::text, 8, '0')
FROM generate_series(1, $1::int) i
"""
POLICIES = """
INSERT INTO policies (policy_number, product_code, policyholder_id, effective_date, premium,
                      due_date, status, payment_method)
SELECT 'P' || i, 'LT', 'C' || i, '2020-01-01', 3600, '2026-11-20', 'in_force',
       '{"kind": "manual"}' FROM generate_series(1, $1::int) i
"""
JOURNEYS = """
INSERT INTO journeys (journey_id, policy_number, trigger, started_at, stage)
SELECT 'lapse-P' || i || '@run', 'P' || i, 'premium_overdue',
       timestamptz '2026-11-21 08:00+08' + (i % 30) * interval '1 day', 'at_risk'
FROM generate_series(1, $1::int) i
"""
MESSAGES = """
INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, channel,
                             recipient_id, recipient_role, template_id, template_version,
                             body, status, attempts, created_at, kind)
SELECT 'lapse-P' || i || '@run/' || m.key || '/C' || i, 'lapse-P' || i || '@run', 'P' || i,
       m.key, m.channel, 'C' || i, 'policyholder', m.key || '.' || m.channel, 1,
       '【安泰人寿】客户' || i || '您好，您的保单尾号' || right(i::text, 4)
       || '保费¥3,600.00已逾期，宽限期至2027年1月19日，期满未缴，保障将中止。'
       || '缴费请点击链接，咨询：400-800-1234',
       'sending', 1, timestamptz '2026-11-23 10:00+08' + m.n * interval '20 days', m.key
FROM generate_series(1, $1::int) i,
     (VALUES (0, 'first_reminder', 'sms'), (1, 'second_reminder', 'voice'),
             (2, 'lapse_notice', 'sms')) m (n, key, channel)
"""
EVENTS = """
INSERT INTO notification_events (notification_id, status, provider_event_id, occurred_at)
SELECT n.notification_id, e.status,
       CASE WHEN e.provider THEN e.status || ':' || n.notification_id END,
       n.created_at + e.n * interval '1 minute'
FROM notifications n,
     (VALUES (0, 'sending', false), (1, 'sent', false), (2, 'delivered', true)) e (n, status,
                                                                                   provider)
ORDER BY n.notification_id, e.n
"""
DELIVERED = """
UPDATE notifications SET status = 'delivered', provider = 'twilio',
       provider_message_id = 'SM' || md5(notification_id)
"""
CLOSED = """
UPDATE journeys SET stage = 'closed', outcome = 'paid', closed_at = started_at + interval '9 days'
"""
PAYMENTS = """
INSERT INTO payments (transaction_id, policy_number, amount, currency, paid_at)
SELECT 'TX' || i, 'P' || i, 3600, 'CNY', timestamptz '2026-11-29 12:00+08'
FROM generate_series(1, $1::int, 3) i
"""
ANCHORS = """
INSERT INTO evidence_anchors (journey_id, policy_number, seq, entry_hash, workflow_id, run_id)
SELECT DISTINCT ON (chain_id) chain_id, policy_number, seq, entry_hash, 'lapse-' ||
       policy_number, 'run'
FROM evidence_chain WHERE chain_kind = 'journey' ORDER BY chain_id, seq DESC
"""
# The baseline: every record and every entry read once, as the verifier must at least.
READ_ALL = """
SELECT (SELECT count(*) FROM evidence_rows(NULL) r WHERE r.content IS NOT NULL),
       (SELECT count(*) FROM evidence_chain e WHERE e.entry_hash IS NOT NULL)
"""
WITHOUT_CHAIN = "SET LOCAL session_replication_role = replica"  # row triggers do not fire


class Undo(Exception):
    pass


async def timed(conn, sql: str, *args) -> float:
    began = time.perf_counter()
    await conn.execute(sql, *args)
    return time.perf_counter() - began


async def inserts(conn, journeys: int) -> float:
    return (await timed(conn, JOURNEYS, journeys) + await timed(conn, MESSAGES, journeys)
            + await timed(conn, EVENTS))


async def run(journeys: int, parent: Path) -> None:
    async with EmbeddedPostgres(parent / "postgres", cleanup_mode="delete") as postgres:
        await migrate(postgres.dsn)
        pool = await connect_pool(postgres.dsn, max_size=4)
        try:
            async with pool.acquire() as conn:
                await conn.execute(PRODUCT)
                await conn.execute(CUSTOMERS, journeys)
                await conn.execute(POLICIES, journeys)
                try:  # the same inserts without the chain, then undone
                    async with conn.transaction():
                        await conn.execute(WITHOUT_CHAIN)
                        plain = await inserts(conn, journeys)
                        raise Undo
                except Undo:
                    pass
                chained = (await inserts(conn, journeys) + await timed(conn, DELIVERED)
                           + await timed(conn, PAYMENTS, journeys) + await timed(conn, CLOSED))
                await conn.execute(ANCHORS)
                await conn.execute("VACUUM ANALYZE")
                entries = await conn.fetchval("SELECT count(*) FROM evidence_chain")
            print(f"seeded {journeys:,} journeys, {entries:,} chain entries: written through "
                  f"the trigger in {chained:.1f} s ({chained / entries * 1e6:.0f} µs an entry); "
                  f"the records' inserts alone, without it, {plain:.1f} s")
            async with pool.acquire() as conn:
                began = time.perf_counter()
                await conn.fetchrow(READ_ALL)
                baseline = time.perf_counter() - began
            began = time.perf_counter()
            found = await verify(pool)
            figure = time.perf_counter() - began
            assert found.clean, found.breaks[:5]
            goal = GOAL_SECONDS * journeys / 100_000
            print(f"verify --all (PostgreSQL): {figure:.1f} s for {found.chains:,} chains, "
                  f"{found.entries:,} entries, {found.records:,} records; goal {goal:.1f} s "
                  f"({figure / goal:.2f} of it); baseline, one plain read of every record "
                  f"and entry: {baseline:.1f} s; ratio {figure / baseline:.1f}x")
        finally:
            await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journeys", type=int, default=100_000)
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="lapse-bench-"))
    try:
        await run(args.journeys, parent)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
