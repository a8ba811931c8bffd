"""The journey's rules as pure functions (domain/journey_rules.py): what a payment does."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.journey import PaymentOutcome, Stage
from domain.journey_rules import payment_outcome
from domain.models import TriggerKind


@pytest.mark.parametrize(("trigger", "stage", "owed", "outcome"), [
    (TriggerKind.PREMIUM_OVERDUE, Stage.AT_RISK, "0", PaymentOutcome.PAID_IN_FULL),
    (TriggerKind.PREMIUM_OVERDUE, Stage.AT_RISK, "0.01", PaymentOutcome.RECORDED),
    (TriggerKind.DEBIT_FAILED, Stage.HELD, "0", PaymentOutcome.PAID_IN_FULL),
    (TriggerKind.RENEWAL_UNPAID, Stage.AT_RISK, "1200.00", PaymentOutcome.RECORDED),
    (TriggerKind.PREMIUM_OVERDUE, Stage.LAPSED, "0", PaymentOutcome.AFTER_LAPSE),
    (TriggerKind.PREMIUM_OVERDUE, Stage.REINSTATING, "100.00", PaymentOutcome.AFTER_LAPSE),
    (TriggerKind.RESCISSION, Stage.AT_RISK, "0", PaymentOutcome.RECORDED),
])
def test_what_a_stored_payment_does_to_the_journey(trigger, stage, owed, outcome):
    assert payment_outcome(trigger, stage, Decimal(owed)) is outcome
