"""What reinstating a lapsed policy costs: back premiums plus simple interest (MISSION 5)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from pydantic import Field

from domain.models import Model, Money

_CENT = Decimal("0.01")


class ReinstatementQuote(Model):
    deadline: date
    back_premium: Money
    interest: Money
    total: Money
    days: int = Field(ge=0)  # days of interest, from the lapse date to the quote date


def reinstatement_quote(back_premium: Decimal, rate: Decimal, lapsed_on: date, on: date,
                        insurer_fault: bool, deadline: date) -> ReinstatementQuote:
    """Simple interest back_premium * rate * days / 365; none when the lapse was our fault."""
    if on > deadline:
        raise ValueError(f"the reinstatement period ended on {deadline}: the policy can no "
                         "longer be reinstated")
    days = max((on - lapsed_on).days, 0)
    interest = Decimal("0") if insurer_fault else back_premium * rate * days / 365
    interest = interest.quantize(_CENT, rounding=ROUND_HALF_UP)
    return ReinstatementQuote(deadline=deadline, back_premium=back_premium, interest=interest,
                              total=back_premium + interest, days=days)
