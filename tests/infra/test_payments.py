"""The payments ledger (infra/payments.py) on PostgreSQL: one reading of what is owed, what
fell due by the policy's due date and is unpaid, whatever a payment's outcome; a policy
without dues on record gets the due it implies from its first payment."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from domain.journey import Payment
from infra import payments
from tests.journey_helpers import at, eventually, load_sample

STANDARD = "P2026000001"  # due 2026-11-20, ¥3,600.00, that due on record and unpaid
NO_DUES = "P2026009101"  # due 2026-11-20, ¥3,600.00, no dues on record
NEXT_DUE_TOO = "P2026009102"  # due 2026-11-20 unpaid, and next year's due on record


def _policy(number: str, dues: list[dict]) -> str:
    return json.dumps({"record": "policy", "policy_number": number, "product_code": "LT-WL01",
                       "policyholder_id": "C0001", "effective_date": "2020-11-20",
                       "premium": "3600.00", "due_date": "2026-11-20",
                       "payment_method": {"kind": "manual"}, "dues": dues})


LINES = [_policy(NO_DUES, []),
         _policy(NEXT_DUE_TOO, [{"due_date": "2026-11-20", "amount": "3600.00"},
                                {"due_date": "2027-11-20", "amount": "3600.00"}])]


@pytest.fixture
async def sample(pool):
    await load_sample(pool, LINES)
    return pool


def pay(txn: str, amount: str) -> Payment:
    return Payment(transaction_id=txn, amount=Decimal(amount), currency="CNY",
                   paid_at=at("2026-11-25 12:00"))


async def store(pool, policy: str, payment: Payment, journey_id: str | None = None):
    async with pool.acquire() as conn, conn.transaction():
        return await payments.store_payment(conn, policy, payment, journey_id)


async def dues(pool, policy: str) -> list[tuple]:
    rows = await pool.fetch("SELECT due_date, amount, paid_amount FROM premium_dues "
                            "WHERE policy_number = $1 ORDER BY due_date", policy)
    return [(str(r["due_date"]), r["amount"], r["paid_amount"]) for r in rows]


async def owed_now(pool, policy: str) -> Decimal:
    async with pool.acquire() as conn:
        return (await payments.standing(conn, policy)).outstanding


async def test_a_policy_without_dues_owes_its_premium_until_paid(sample):
    assert await owed_now(sample, NO_DUES) == Decimal("3600.00")
    first = await store(sample, NO_DUES, pay("T-N1", "1000.00"))
    # Before: the ledger said nothing was owed once a payment came (no dues to owe on).
    assert (first.outcome, first.owed) == ("new", Decimal("2600.00"))
    assert await dues(sample, NO_DUES) == [("2026-11-20", Decimal("3600.00"),
                                            Decimal("1000.00"))]
    again = await store(sample, NO_DUES, pay("T-N1", "1000.00"))
    assert (again.outcome, again.owed) == ("duplicate", Decimal("2600.00"))
    last = await store(sample, NO_DUES, pay("T-N2", "2600.00"))
    assert (last.outcome, last.owed) == ("new", Decimal("0"))
    assert await owed_now(sample, NO_DUES) == Decimal("0")
    assert await dues(sample, NO_DUES) == [("2026-11-20", Decimal("3600.00"),
                                            Decimal("3600.00"))]


async def test_what_falls_due_later_is_not_owed_yet(sample):
    stored = await store(sample, NEXT_DUE_TOO, pay("T-F1", "3600.00"))
    # Before: next year's due counted as owed, so paying this year's left ¥3,600.00 "owed".
    assert stored.owed == Decimal("0") == await owed_now(sample, NEXT_DUE_TOO)
    over = await store(sample, NEXT_DUE_TOO, pay("T-F2", "100.00"))
    assert over.owed == Decimal("0")
    assert await dues(sample, NEXT_DUE_TOO) == [
        ("2026-11-20", Decimal("3600.00"), Decimal("3600.00")),
        ("2027-11-20", Decimal("3600.00"), Decimal("100.00"))]


async def test_every_answer_reads_the_ledger_after_the_store(sample):
    new = await store(sample, STANDARD, pay("T-S1", "600.00"), journey_id="J-1")
    assert (new.outcome, new.owed) == ("new", Decimal("3000.00"))
    # The journey's retried store after a lost answer: its own row, answered as before.
    retried = await store(sample, STANDARD, pay("T-S1", "600.00"), journey_id="J-1")
    assert (retried.outcome, retried.amount, retried.owed) == (
        "new", Decimal("600.00"), Decimal("3000.00"))
    # Another policy's transaction id: nothing stored, and what that policy owes.
    conflict = await store(sample, NO_DUES, pay("T-S1", "600.00"))
    assert (conflict.outcome, conflict.owed) == ("conflict", Decimal("3600.00"))
    assert await dues(sample, NO_DUES) == []


async def test_two_first_payments_at_once_write_one_due(sample):
    """Both see no due on record; the second waits for the first's row and applies to it."""
    async with sample.acquire() as first, sample.acquire() as second:
        tx = first.transaction()
        await tx.start()
        await payments.store_payment(first, NO_DUES, pay("T-C1", "1000.00"))
        pid = await second.fetchval("SELECT pg_backend_pid()")

        async def in_second():
            async with second.transaction():
                return await payments.store_payment(second, NO_DUES, pay("T-C2", "500.00"))

        later = asyncio.create_task(in_second())

        async def second_waits():
            return await sample.fetchval("SELECT wait_event_type = 'Lock' FROM "
                                         "pg_stat_activity WHERE pid = $1", pid)

        assert await eventually(second_waits)
        await tx.commit()
        stored = await later
    assert stored.owed == Decimal("2100.00")
    assert await dues(sample, NO_DUES) == [("2026-11-20", Decimal("3600.00"),
                                            Decimal("1500.00"))]
