"""What reinstating a lapsed policy costs: every premium that fell due, plus simple interest.

MISSION sections 5 and 8: each premium that fell due and is unpaid up to the day of
reinstatement owes simple interest from its own due date to that day, actual/365, at the
product's rate, rounded half up to the fen; none when the lapse was the insurer's fault.
Pure functions over plain values: the same inputs give the same figure in `status`, in
the letters and in the follow-ups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from pydantic import Field

from domain.calendar import add_months
from domain.models import Model, Money, PaymentPeriod, Policy, PositiveMoney, Product

_CENT = Decimal("0.01")
DAYS_IN_YEAR = 365  # actual/365: leap years too


class Due(Model):
    """One premium that fell due, and what of it is still unpaid."""

    due_date: date
    amount: PositiveMoney


class PremiumSchedule(Model):
    """When regular premiums fall due after a known one: every `period`, anchored on
    `anchor` (calendar months clamped to month end, so 31 January, 28 February, 31 March)."""

    anchor: date
    premium: PositiveMoney
    period: PaymentPeriod = PaymentPeriod.ANNUAL


class QuoteItem(Model):
    due_date: date
    amount: Money
    days: int = Field(ge=0)
    interest: Money


class ReinstatementQuote(Model):
    deadline: date
    back_premium: Money
    interest: Money
    total: Money
    days: int = Field(ge=0)  # days of interest of the oldest premium, from its due date
    items: list[QuoteItem] = Field(default_factory=list)  # one per premium, oldest first


def due_dates(schedule: PremiumSchedule, after: date, until: date) -> list[date]:
    """The schedule's due dates in (after, until], each computed from the anchor so that a
    month-end due date never drifts (31 Jan, 28 Feb, 31 Mar, not 28 Mar)."""
    months = schedule.period.months
    out: list[date] = []
    k = 0
    while True:
        day = add_months(schedule.anchor, k * months)
        if day > until:
            return out
        if day > after:
            out.append(day)
        k += 1


def dues_fallen_due(open_dues: Iterable[Due], schedule: PremiumSchedule | None,
                    on: date) -> list[Due]:
    """Every premium unpaid on `on`: the open ones known, then each regular premium of the
    schedule that fell due after the last of them, up to and including `on`."""
    known = sorted((d for d in open_dues if d.due_date <= on), key=lambda d: d.due_date)
    if schedule is None:
        return known
    last = known[-1].due_date if known else schedule.anchor
    return known + [Due(due_date=day, amount=schedule.premium)
                    for day in due_dates(schedule, last, on)]


def unpaid_dues(dues: Iterable[Due], paid: Decimal) -> list[Due]:
    """What is left of `dues` once `paid` is applied to the oldest first."""
    left = paid
    out = []
    for due in sorted(dues, key=lambda d: d.due_date):
        take = min(max(left, Decimal("0")), due.amount)
        left -= take
        if due.amount > take:
            out.append(due.model_copy(update={"amount": due.amount - take}))
    return out


def open_dues(policy: Policy) -> list[Due]:
    """The policy's unpaid premiums up to its current due date, each on its own due date
    (the premium itself when no dues are recorded, as Policy.outstanding counts it)."""
    recorded = [d for d in policy.dues if d.due_date <= policy.due_date]
    if not recorded:
        return [Due(due_date=policy.due_date, amount=policy.premium)]
    return [Due(due_date=d.due_date, amount=d.outstanding) for d in recorded
            if d.outstanding > 0]


def premium_schedule(policy: Policy, product: Product) -> PremiumSchedule:
    """The policy's regular premiums from its current due date on."""
    return PremiumSchedule(anchor=policy.due_date, premium=policy.premium,
                           period=policy.payment_period or product.rules.payment_period)


def interest_on(amount: Decimal, rate: Decimal, due_date: date, on: date) -> tuple[int, Decimal]:
    """Days and simple interest of one premium from its due date to `on`, to the fen."""
    days = max((on - due_date).days, 0)
    interest = (amount * rate * days / DAYS_IN_YEAR).quantize(_CENT, rounding=ROUND_HALF_UP)
    return days, interest


def reinstatement_quote(dues: Sequence[Due], *, rate: Decimal, on: date, insurer_fault: bool,
                        deadline: date) -> ReinstatementQuote:
    """The amount to reinstate on `on`: each due with its own interest (rounded per due,
    so the items add up to the total a letter shows); no interest when we were at fault."""
    if on > deadline:
        raise ValueError(f"the reinstatement period ended on {deadline}: the policy can no "
                         "longer be reinstated")
    items = []
    for due in sorted(dues, key=lambda d: d.due_date):
        days, interest = interest_on(due.amount, Decimal("0") if insurer_fault else rate,
                                     due.due_date, on)
        items.append(QuoteItem(due_date=due.due_date, amount=due.amount, days=days,
                               interest=interest))
    back = sum((i.amount for i in items), Decimal("0.00"))
    interest = sum((i.interest for i in items), Decimal("0.00"))
    return ReinstatementQuote(deadline=deadline, back_premium=back, interest=interest,
                              total=back + interest, days=items[0].days if items else 0,
                              items=items)


def journey_quote(*, open_dues: Sequence[Due], schedule: PremiumSchedule | None,
                  paid: Decimal, rate: Decimal, on: date, insurer_fault: bool,
                  deadline: date) -> ReinstatementQuote:
    """The quote of a journey on `on`: the open dues it started with, every premium of the
    schedule that fell due since (none without a schedule), less what was paid."""
    dues = unpaid_dues(dues_fallen_due(open_dues, schedule, on), paid)
    return reinstatement_quote(dues, rate=rate, on=on, insurer_fault=insurer_fault,
                               deadline=deadline)
