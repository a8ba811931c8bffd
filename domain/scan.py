"""The daily scan's rule: does a policy need a journey on a day, and if not, why not."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import Field

from domain.models import Model, Policy, PolicyStatus, Product, Trigger
from domain.triggers import detect_trigger


class SkipReason(StrEnum):
    PAID = "paid"
    NOT_DUE = "not_due"
    NOT_IN_FORCE = "not_in_force"


def classify(policy: Policy, product: Product, as_of: date) -> Trigger | SkipReason:
    """The trigger that starts the policy's journey on `as_of`, or why none starts."""
    trigger = detect_trigger(policy, product, as_of)
    if trigger is not None:
        return trigger
    if policy.status is not PolicyStatus.IN_FORCE:
        return SkipReason.NOT_IN_FORCE
    if policy.outstanding <= 0:
        return SkipReason.PAID
    return SkipReason.NOT_DUE


class ScanInput(Model):
    """The daily scan workflow's input: the day to scan (the schedule's day when omitted)."""

    as_of: date | None = None
    concurrency: int = Field(20, ge=1, le=500)


class ScanRequest(Model):
    as_of: date
    concurrency: int = Field(20, ge=1, le=500)


class ScanSummary(Model):
    """Counts of one scan: journeys started and found running per trigger, skips per reason."""

    as_of: date
    started: dict[str, int] = Field(default_factory=dict)
    already_running: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict)
    failed: list[str] = Field(default_factory=list)  # policy numbers to look at (no PII)

    @property
    def total(self) -> int:
        return (sum(self.started.values()) + sum(self.already_running.values())
                + sum(self.skipped.values()) + len(self.failed))
