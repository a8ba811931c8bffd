"""Reinstatement arithmetic: every premium that fell due, each with simple interest from its
own due date (actual/365), rounded half up to the fen; the due schedule per payment period."""

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.models import PaymentPeriod, Policy, PremiumDue, Product, ProductRules
from domain.reinstatement import (
    Due,
    PremiumSchedule,
    due_dates,
    dues_fallen_due,
    journey_quote,
    open_dues,
    premium_schedule,
    reinstatement_quote,
    unpaid_dues,
)

DUE = date(2026, 9, 30)
DEADLINE = date(2028, 11, 30)
RATE = Decimal("0.055")


def quote(dues, on, *, rate=RATE, insurer_fault=False, deadline=DEADLINE):
    return reinstatement_quote(dues, rate=rate, on=on, insurer_fault=insurer_fault,
                               deadline=deadline)


def test_one_premium_earns_interest_from_its_own_due_date():
    # 1200 * 0.055 * 180 / 365 = 32.547...: rounded to 32.55.
    q = quote([Due(due_date=DUE, amount=Decimal("1200.00"))], date(2027, 3, 29))
    assert (q.back_premium, q.interest, q.total, q.days) == (
        Decimal("1200.00"), Decimal("32.55"), Decimal("1232.55"), 180)


def test_each_premium_has_its_own_days_and_the_items_add_up():
    dues = [Due(due_date=date(2026, 9, 30), amount=Decimal("300.00")),
            Due(due_date=date(2026, 10, 31), amount=Decimal("300.00")),
            Due(due_date=date(2026, 11, 30), amount=Decimal("300.00"))]
    q = quote(dues, date(2026, 12, 31))
    # 92, 61 and 31 days: 300 * 0.055 * d / 365 = 4.1589, 2.7575, 1.4013.
    assert [(i.days, i.interest) for i in q.items] == [
        (92, Decimal("4.16")), (61, Decimal("2.76")), (31, Decimal("1.40"))]
    assert q.interest == Decimal("8.32") and q.total == Decimal("908.32")
    assert q.days == 92  # the oldest premium's


def test_rounds_half_up_to_the_fen():
    # 365 * 0.045 * 1 / 365 = 0.045 exactly: half up gives 0.05 (half even would give 0.04).
    q = quote([Due(due_date=DUE, amount=Decimal("365.00"))], date(2026, 10, 1),
              rate=Decimal("0.045"))
    assert (q.days, q.interest, q.total) == (1, Decimal("0.05"), Decimal("365.05"))


def test_actual_365_counts_a_leap_day_as_a_day():
    # 2027-03-01 to 2028-03-01 is 366 days: 1000 * 0.05 * 366 / 365 = 50.1369...
    q = quote([Due(due_date=date(2027, 3, 1), amount=Decimal("1000.00"))], date(2028, 3, 1),
              rate=Decimal("0.05"))
    assert (q.days, q.interest) == (366, Decimal("50.14"))


def test_no_interest_when_the_insurer_was_at_fault():
    q = quote([Due(due_date=DUE, amount=Decimal("1200.00"))], date(2027, 3, 29),
              insurer_fault=True)
    assert (q.days, q.interest, q.total) == (180, Decimal("0.00"), Decimal("1200.00"))


def test_on_the_deadline_is_allowed_after_it_is_not():
    q = quote([Due(due_date=DUE, amount=Decimal("1200.00"))], DEADLINE)
    assert q.deadline == DEADLINE
    with pytest.raises(ValueError, match="ended on 2028-11-30"):
        quote([Due(due_date=DUE, amount=Decimal("1200.00"))], date(2028, 12, 1))


@pytest.mark.parametrize("period, expected", [
    (PaymentPeriod.MONTHLY, ["2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31"]),
    (PaymentPeriod.QUARTERLY, ["2026-04-30"]),
    (PaymentPeriod.SEMI_ANNUAL, []),
    (PaymentPeriod.ANNUAL, []),
])
def test_due_dates_follow_the_period_and_keep_the_month_end(period, expected):
    schedule = PremiumSchedule(anchor=date(2026, 1, 31), premium=Decimal("100.00"),
                               period=period)
    got = due_dates(schedule, after=date(2026, 1, 31), until=date(2026, 6, 15))
    assert [str(d) for d in got] == expected


def test_a_monthly_policy_lapsed_for_months_owes_every_premium_that_fell_due():
    product = Product(code="LT", name="安泰终身寿险", kind="long_term",
                      rules=ProductRules(payment_period="monthly"))
    policy = Policy(policy_number="P2026000099", product_code="LT", policyholder_id="C1",
                    effective_date=date(2020, 1, 1), premium=Decimal("300.00"),
                    due_date=date(2026, 9, 30), payment_method={"kind": "manual"},
                    dues=[PremiumDue(due_date=date(2026, 9, 30), amount=Decimal("300.00"),
                                     paid_amount=Decimal("100.00"))])
    q = journey_quote(open_dues=open_dues(policy), schedule=premium_schedule(policy, product),
                      paid=Decimal("0"), rate=RATE, on=date(2026, 12, 31),
                      insurer_fault=False, deadline=DEADLINE)
    assert [(str(i.due_date), i.amount) for i in q.items] == [
        ("2026-09-30", Decimal("200.00")), ("2026-10-30", Decimal("300.00")),
        ("2026-11-30", Decimal("300.00")), ("2026-12-30", Decimal("300.00"))]
    assert q.back_premium == Decimal("1100.00")
    # Its own period overrides the product's.
    annual = policy.model_copy(update={"payment_period": PaymentPeriod.ANNUAL})
    assert [d.due_date for d in dues_fallen_due(open_dues(annual),
                                                premium_schedule(annual, product),
                                                date(2026, 12, 31))] == [date(2026, 9, 30)]


def test_payment_periods_are_validated():
    with pytest.raises(ValidationError, match="payment_period"):
        ProductRules(payment_period="weekly")


def test_payments_settle_the_oldest_premiums_first():
    dues = [Due(due_date=date(2026, 10, 31), amount=Decimal("300.00")),
            Due(due_date=date(2026, 9, 30), amount=Decimal("300.00"))]
    assert unpaid_dues(dues, Decimal("450.00")) == [
        Due(due_date=date(2026, 10, 31), amount=Decimal("150.00"))]
    assert unpaid_dues(dues, Decimal("600.00")) == []


@given(amounts=st.lists(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"),
                                    places=2), min_size=1, max_size=12),
       days=st.integers(min_value=0, max_value=730),
       rate=st.decimals(min_value=Decimal("0"), max_value=Decimal("0.2"), places=4))
def test_the_total_is_always_the_premiums_plus_each_rounded_interest(amounts, days, rate):
    on = date(2028, 10, 1)
    dues = [Due(due_date=date.fromordinal(on.toordinal() - days - 31 * i), amount=a)
            for i, a in enumerate(amounts)]
    q = quote(dues, on, rate=rate)
    assert q.back_premium == sum(amounts)
    assert q.total == q.back_premium + sum(i.interest for i in q.items)
    for item in q.items:
        exact = item.amount * rate * item.days / 365
        assert abs(item.interest - exact) <= Decimal("0.005")
