"""The payments ledger (payments, and what they paid of premium_dues): one home for storing
a payment, applying it to the dues, and reading what is owed and what was paid.

Used by the journey's activity and by the payment system's door when no journey runs, so
a payment has one effect whichever way it arrives. What is owed has one reading,
`standing`: what fell due by the policy's due date and is unpaid (the scan's rule,
`Policy.outstanding`). A policy with no due on record by then owes its premium; the first
payment it gets writes that due (`_IMPLIED_DUE`) before it is applied, so that from then
on the dues say what is left.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import asyncpg

from domain.journey import Payment, PaymentStored, PolicyCheck

_INSERT = """
INSERT INTO payments (transaction_id, policy_number, amount, currency, paid_at, journey_id)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (transaction_id) DO NOTHING RETURNING amount
"""
_EXISTING = "SELECT policy_number, amount, journey_id FROM payments WHERE transaction_id = $1"
_OPEN_DUES = """
SELECT due_date, amount - paid_amount AS open FROM premium_dues
WHERE policy_number = $1 AND paid_amount < amount ORDER BY due_date FOR UPDATE
"""
_APPLY_TO_DUE = """
UPDATE premium_dues SET paid_amount = paid_amount + $3
WHERE policy_number = $1 AND due_date = $2
"""
# The due a policy implies when none is on record by its due date (what `_STANDING` reads
# as its premium): written by the payment that is applied to it. A concurrent payment's
# transaction that wrote it first wins (the key), and this one applies to that row.
_IMPLIED_DUE = """
INSERT INTO premium_dues (policy_number, due_date, amount)
SELECT p.policy_number, p.due_date, p.premium FROM policies p
WHERE p.policy_number = $1 AND NOT EXISTS (
    SELECT 1 FROM premium_dues d
    WHERE d.policy_number = p.policy_number AND d.due_date <= p.due_date)
ON CONFLICT (policy_number, due_date) DO NOTHING
"""
_PAID_BETWEEN = """
SELECT COALESCE(sum(amount), 0) FROM payments
WHERE policy_number = $1 AND paid_at >= $2 AND paid_at <= $3
"""
# What fell due by the policy's due date and is unpaid; a policy without dues on record
# owes its premium.
_STANDING = """
SELECT p.status, COALESCE((SELECT sum(amount - paid_amount) FROM premium_dues d
                           WHERE d.policy_number = p.policy_number
                             AND d.due_date <= p.due_date), p.premium) AS outstanding
FROM policies p WHERE p.policy_number = $1
"""


async def paid_between(conn: asyncpg.Connection, policy_number: str, start: datetime,
                       end: datetime) -> Decimal:
    return await conn.fetchval(_PAID_BETWEEN, policy_number, start, end)


async def standing(conn: asyncpg.Connection, policy_number: str) -> PolicyCheck | None:
    """The policy's status and what it owes now; None for an unknown policy."""
    row = await conn.fetchrow(_STANDING, policy_number)
    return PolicyCheck(outstanding=row["outstanding"], status=row["status"]) if row else None


async def _owed(conn: asyncpg.Connection, policy_number: str) -> Decimal:
    check = await standing(conn, policy_number)
    if check is None:  # the payment's own row refers to the policy: it cannot be gone
        raise LookupError(f"unknown policy {policy_number}")
    return check.outstanding


async def store_payment(conn: asyncpg.Connection, policy_number: str,
                        payment: Payment, journey_id: str | None = None) -> PaymentStored:
    """Store the payment once and apply it to the oldest open dues; call inside a
    transaction. `conflict` when the transaction id is another policy's (nothing stored);
    `duplicate` when this policy's payment was stored before (nothing changes). A journey
    storing a payment names itself: its retried store, after a first attempt whose answer
    was lost, finds its own row and answers `new` again, as that attempt did. Every
    answer's `owed` is the ledger's reading after the store (`standing`)."""
    amount = await conn.fetchval(_INSERT, payment.transaction_id, policy_number,
                                 payment.amount, payment.currency, payment.paid_at, journey_id)
    if amount is None:
        row = await conn.fetchrow(_EXISTING, payment.transaction_id)
        if journey_id is not None and row["journey_id"] == journey_id:
            return PaymentStored(outcome="new", amount=row["amount"],
                                 owed=await _owed(conn, policy_number))
        outcome = "duplicate" if row["policy_number"] == policy_number else "conflict"
        return PaymentStored(outcome=outcome,
                             amount=row["amount"] if outcome == "duplicate" else Decimal("0"),
                             owed=await _owed(conn, policy_number))
    await conn.execute(_IMPLIED_DUE, policy_number)
    left = amount
    for due in await conn.fetch(_OPEN_DUES, policy_number):
        if left <= 0:
            break
        take = min(left, due["open"])
        await conn.execute(_APPLY_TO_DUE, policy_number, due["due_date"], take)
        left -= take
    return PaymentStored(outcome="new", amount=amount, owed=await _owed(conn, policy_number))
