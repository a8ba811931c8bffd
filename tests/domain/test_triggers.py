"""Which trigger a policy is in, and which segments shape its journey."""

from datetime import date, datetime
from decimal import Decimal

import pytest

from domain.models import (
    Customer,
    DebitAttempt,
    DebitFailure,
    DebitFailureReason,
    PaymentMethod,
    PaymentMethodKind,
    Policy,
    PolicyStatus,
    PremiumDue,
    Product,
    ProductKind,
    ProductRules,
    Rescission,
    Segment,
    TriggerKind,
)
from domain.plan import TZ
from domain.triggers import detect_trigger, segments_for

LONG = Product(code="LT-WL01", name="安泰终身寿险", kind=ProductKind.LONG_TERM)
SHORT = Product(code="ST-ACC01", name="安泰综合意外险", kind=ProductKind.SHORT_TERM,
                rules=ProductRules(reinstatable=False))
DUE = date(2026, 9, 30)
DEBIT = PaymentMethod(kind=PaymentMethodKind.BANK_DEBIT, bank_name="招商银行", card_last4="1234")


def policy(product: Product = LONG, **fields) -> Policy:
    base = {"policy_number": "P2026000001", "product_code": product.code,
            "policyholder_id": "C001", "effective_date": date(2020, 9, 30),
            "premium": Decimal("1200.00"), "due_date": DUE, "payment_method": DEBIT}
    return Policy(**(base | fields))


def attempt(day: int, hour: int, succeeded: bool,
            reason: DebitFailureReason | None = None) -> DebitAttempt:
    return DebitAttempt(attempted_at=datetime(2026, 9, day, hour, tzinfo=TZ),
                        amount=Decimal("1200.00"), succeeded=succeeded, reason_code=reason)


def test_unpaid_after_the_due_date_is_premium_overdue():
    assert detect_trigger(policy(), LONG, DUE) is None  # the due day itself is not late
    t = detect_trigger(policy(), LONG, date(2026, 10, 1))
    assert t is not None
    assert (t.kind, t.due_date, t.amount_due, t.debit_failure) == (
        TriggerKind.PREMIUM_OVERDUE, DUE, Decimal("1200.00"), None)


def test_short_term_is_renewal_unpaid():
    t = detect_trigger(policy(SHORT), SHORT, date(2026, 10, 1))
    assert t is not None and t.kind is TriggerKind.RENEWAL_UNPAID


def test_partial_payment_leaves_the_rest_due_and_full_payment_none():
    partly = policy(dues=[PremiumDue(due_date=DUE, amount=Decimal("1200.00"),
                                     paid_amount=Decimal("200.00"))])
    t = detect_trigger(partly, LONG, date(2026, 10, 1))
    assert t is not None and t.amount_due == Decimal("1000.00")
    paid = policy(dues=[PremiumDue(due_date=DUE, amount=Decimal("1200.00"),
                                   paid_amount=Decimal("1200.00"))])
    assert detect_trigger(paid, LONG, date(2026, 10, 1)) is None


def test_latest_failed_debit_on_or_after_the_due_date():
    p = policy(debit_attempts=[
        attempt(1, 10, False, DebitFailureReason.CARD_EXPIRED),  # an earlier premium
        attempt(30, 2, False, DebitFailureReason.INSUFFICIENT_BALANCE),
    ])
    t = detect_trigger(p, LONG, date(2026, 10, 1))
    assert t is not None and t.kind is TriggerKind.DEBIT_FAILED
    assert t.debit_failure == DebitFailure(
        failed_at=datetime(2026, 9, 30, 2, tzinfo=TZ), amount=Decimal("1200.00"),
        reason_code=DebitFailureReason.INSUFFICIENT_BALANCE)


def test_a_debit_failure_before_the_due_date_or_after_as_of_does_not_count():
    early = policy(debit_attempts=[attempt(29, 10, False, DebitFailureReason.CARD_CANCELLED)])
    t = detect_trigger(early, LONG, date(2026, 10, 1))
    assert t is not None and t.kind is TriggerKind.PREMIUM_OVERDUE
    later = policy(debit_attempts=[
        DebitAttempt(attempted_at=datetime(2026, 10, 5, 2, tzinfo=TZ), amount=Decimal("1200.00"),
                     succeeded=False, reason_code=DebitFailureReason.ACCOUNT_MISMATCH)])
    t = detect_trigger(later, LONG, date(2026, 10, 1))
    assert t is not None and t.kind is TriggerKind.PREMIUM_OVERDUE


def test_a_later_successful_attempt_is_not_a_debit_failure():
    p = policy(debit_attempts=[attempt(30, 2, False, DebitFailureReason.INSUFFICIENT_BALANCE),
                               attempt(30, 14, True)],
               dues=[PremiumDue(due_date=DUE, amount=Decimal("1200.00"),
                                paid_amount=Decimal("600.00"))])
    t = detect_trigger(p, LONG, date(2026, 10, 1))
    assert t is not None and t.kind is TriggerKind.PREMIUM_OVERDUE


def test_rescission_takes_precedence_and_needs_no_arrears():
    p = policy(rescission=Rescission(decided_on=date(2026, 10, 9), reason="non_disclosure"),
               dues=[PremiumDue(due_date=DUE, amount=Decimal("1200.00"),
                                paid_amount=Decimal("1200.00"))])
    t = detect_trigger(p, LONG, date(2026, 10, 9))
    assert t is not None
    assert (t.kind, t.due_date, t.rescission_reason, t.amount_due) == (
        TriggerKind.RESCISSION, date(2026, 10, 9), "non_disclosure", Decimal("0"))


@pytest.mark.parametrize("status", [PolicyStatus.LAPSED, PolicyStatus.RESCINDED,
                                    PolicyStatus.TERMINATED])
def test_only_policies_in_force_start_a_journey(status):
    p = policy(status=status, rescission=Rescission(decided_on=DUE, reason="fraud"))
    assert detect_trigger(p, LONG, date(2026, 10, 1)) is None


def test_policy_and_product_must_match():
    with pytest.raises(ValueError, match="is of product LT-WL01, not ST-ACC01"):
        detect_trigger(policy(), SHORT, date(2026, 10, 1))


def customer(birth: date, **fields) -> Customer:
    return Customer(customer_id="C001", name="王芳", birth_date=birth, **fields)


def test_elderly_from_the_65th_birthday():
    on = date(2026, 10, 1)
    assert segments_for(policy(), LONG, customer(date(1961, 10, 1)), on) == {Segment.ELDERLY}
    assert segments_for(policy(), LONG, customer(date(1961, 10, 2)), on) == {Segment.STANDARD}
    younger = Product(code="LT-WL01", name="安泰终身寿险", kind=ProductKind.LONG_TERM,
                      rules=ProductRules(elderly_age=60))
    assert segments_for(policy(), younger, customer(date(1966, 9, 1)), on) == {Segment.ELDERLY}


def test_group_policies_and_organisations():
    group = policy(member_ids=["E001", "E002"])
    employer = customer(date(1950, 1, 1), is_organisation=True)
    assert segments_for(group, LONG, employer, date(2026, 10, 1)) == {Segment.GROUP}
    old_holder = customer(date(1950, 1, 1))
    assert segments_for(group, LONG, old_holder, date(2026, 10, 1)) == {
        Segment.GROUP, Segment.ELDERLY}
