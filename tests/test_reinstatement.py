"""Reinstatement arithmetic: back premiums plus simple interest, rounded half up to the fen."""

from datetime import date
from decimal import Decimal

import pytest

from domain.reinstatement import ReinstatementQuote, reinstatement_quote

LAPSED = date(2026, 11, 30)
DEADLINE = date(2028, 11, 30)


def test_simple_interest_for_180_days():
    # 1200 * 0.055 * 180 / 365 = 32.547...
    quote = reinstatement_quote(Decimal("1200.00"), Decimal("0.055"), LAPSED, date(2027, 5, 29),
                                insurer_fault=False, deadline=DEADLINE)
    assert quote == ReinstatementQuote(deadline=DEADLINE, back_premium=Decimal("1200.00"),
                                       interest=Decimal("32.55"), total=Decimal("1232.55"),
                                       days=180)


def test_rounds_half_up():
    # 365 * 0.045 * 1 / 365 = 0.045 exactly: half up gives 0.05 (half even would give 0.04).
    quote = reinstatement_quote(Decimal("365.00"), Decimal("0.045"), LAPSED, date(2026, 12, 1),
                                insurer_fault=False, deadline=DEADLINE)
    assert (quote.days, quote.interest, quote.total) == (1, Decimal("0.05"), Decimal("365.05"))


def test_no_interest_when_the_insurer_was_at_fault():
    quote = reinstatement_quote(Decimal("1200.00"), Decimal("0.055"), LAPSED, date(2027, 5, 29),
                                insurer_fault=True, deadline=DEADLINE)
    assert (quote.days, quote.interest, quote.total) == (180, Decimal("0.00"),
                                                         Decimal("1200.00"))


def test_days_never_negative():
    quote = reinstatement_quote(Decimal("1200.00"), Decimal("0.055"), LAPSED, date(2026, 11, 1),
                                insurer_fault=False, deadline=DEADLINE)
    assert (quote.days, quote.interest) == (0, Decimal("0.00"))


def test_on_the_deadline_is_allowed_after_it_is_not():
    quote = reinstatement_quote(Decimal("1200.00"), Decimal("0.055"), LAPSED, DEADLINE,
                                insurer_fault=False, deadline=DEADLINE)
    # 731 days (2028 is a leap year): 1200 * 0.055 * 731 / 365 = 132.1808...
    assert (quote.days, quote.interest) == (731, Decimal("132.18"))
    with pytest.raises(ValueError, match="ended on 2028-11-30"):
        reinstatement_quote(Decimal("1200.00"), Decimal("0.055"), LAPSED, date(2028, 12, 1),
                            insurer_fault=False, deadline=DEADLINE)
