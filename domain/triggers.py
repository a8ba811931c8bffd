"""What starts a journey for a policy, and which segments shape it (MISSION sections 1 and 3)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from domain.calendar import add_years
from domain.models import (
    Customer,
    DebitFailure,
    Policy,
    PolicyStatus,
    Product,
    ProductKind,
    Segment,
    Trigger,
    TriggerKind,
)
from domain.plan import TZ


def detect_trigger(policy: Policy, product: Product, as_of: date) -> Trigger | None:
    """The trigger a policy is in on `as_of`, or None when it needs no journey."""
    if policy.product_code != product.code:
        raise ValueError(f"policy {policy.policy_number} is of product {policy.product_code}, "
                         f"not {product.code}")
    if policy.status is not PolicyStatus.IN_FORCE:
        return None
    if policy.rescission is not None:
        return Trigger(kind=TriggerKind.RESCISSION, policy_number=policy.policy_number,
                       due_date=policy.rescission.decided_on, amount_due=Decimal("0"),
                       rescission_reason=policy.rescission.reason)
    outstanding = policy.outstanding
    if outstanding <= 0 or as_of <= policy.due_date:
        return None
    failure = _debit_failure(policy, as_of)
    if failure is not None:
        kind = TriggerKind.DEBIT_FAILED
    elif product.kind is ProductKind.SHORT_TERM:
        kind = TriggerKind.RENEWAL_UNPAID
    else:
        kind = TriggerKind.PREMIUM_OVERDUE
    return Trigger(kind=kind, policy_number=policy.policy_number, due_date=policy.due_date,
                   amount_due=outstanding, debit_failure=failure)


def _debit_failure(policy: Policy, as_of: date) -> DebitFailure | None:
    """The latest debit attempt on/after the due date (and by `as_of`), if it failed."""
    attempts = [a for a in policy.debit_attempts
                if policy.due_date <= a.attempted_at.astimezone(TZ).date() <= as_of]
    if not attempts:
        return None
    latest = max(attempts, key=lambda a: a.attempted_at)
    if latest.succeeded or latest.reason_code is None:
        return None
    return DebitFailure(failed_at=latest.attempted_at, amount=latest.amount,
                        reason_code=latest.reason_code, reason_text=latest.reason_text or "")


def elderly_from(product: Product, policyholder: Customer) -> date | None:
    """The day the policyholder counts as elderly (turns `elderly_age`); None for an
    organisation. A customer who turns 65 during a journey is elderly from that day."""
    if policyholder.is_organisation:
        return None
    return add_years(policyholder.birth_date, product.rules.elderly_age)


def segments_for(policy: Policy, product: Product, policyholder: Customer,
                 on: date) -> set[Segment]:
    """ELDERLY and GROUP as they apply on `on`; STANDARD when neither does."""
    segments = set()
    if not policyholder.is_organisation and policyholder.age_on(on) >= product.rules.elderly_age:
        segments.add(Segment.ELDERLY)
    if policy.is_group:
        segments.add(Segment.GROUP)
    return segments or {Segment.STANDARD}
