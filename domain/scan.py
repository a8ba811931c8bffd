"""The daily scan's rule: does a policy need a journey on a day, and if not, why not; and
the scan's messages (its input, where a page starts, what it counted)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from enum import StrEnum

from pydantic import Field

from domain.models import Model, Policy, PolicyStatus, Product, Trigger, TriggerKind
from domain.triggers import detect_trigger


class SkipReason(StrEnum):
    PAID = "paid"
    NOT_DUE = "not_due"
    NOT_IN_FORCE = "not_in_force"
    # A rescission journey served the formal notice already: a rescission is told once.
    RESCINDED = "rescinded"


def classify(policy: Policy, product: Product, as_of: date,
             rescission_served: bool = False) -> Trigger | SkipReason:
    """The trigger that starts the policy's journey on `as_of`, or why none starts.

    `rescission_served`: a rescission journey of the policy closed `rescinded` (our records
    keep the policy in force; the insurer's own system records the rescission).
    """
    trigger = detect_trigger(policy, product, as_of)
    if trigger is not None:
        if trigger.kind is TriggerKind.RESCISSION and rescission_served:
            return SkipReason.RESCINDED
        return trigger
    if policy.status is not PolicyStatus.IN_FORCE:
        return SkipReason.NOT_IN_FORCE
    if policy.outstanding <= 0:
        return SkipReason.PAID
    return SkipReason.NOT_DUE


class ScanRange(StrEnum):
    """The two ranges of the at-risk set, read in this order."""

    RESCISSION = "rescission"  # in force with a rescission decided, by policy number
    OVERDUE = "overdue"  # in force past the due date, by (due date, policy number)


class ScanCursor(Model):
    """Where the next page starts: after this key of the range's order (keyset pages).

    No key: the range's beginning.
    """

    range: ScanRange = ScanRange.RESCISSION
    due_date: date | None = None
    policy_number: str | None = None


class ScanSummary(Model):
    """Counts of one scan: policies read, journeys started and found running per trigger,
    skips per reason."""

    as_of: date
    read: int = 0  # policies the scan read from the database (the at-risk set)
    pages: int = 0
    started: dict[str, int] = Field(default_factory=dict)
    already_running: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict)
    failed: list[str] = Field(default_factory=list)  # policy numbers to look at (no PII)

    @property
    def total(self) -> int:
        return (sum(self.started.values()) + sum(self.already_running.values())
                + sum(self.skipped.values()) + len(self.failed))

    def plus(self, other: ScanSummary) -> ScanSummary:
        """This scan's counts and another part's of the same day."""
        def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return dict(sorted((Counter(a) + Counter(b)).items()))

        return ScanSummary(
            as_of=self.as_of, read=self.read + other.read, pages=self.pages + other.pages,
            started=add(self.started, other.started),
            already_running=add(self.already_running, other.already_running),
            skipped=add(self.skipped, other.skipped),
            failed=sorted({*self.failed, *other.failed}))


class ScanInput(Model):
    """The daily scan workflow's input: the day to scan (the schedule's day when omitted)."""

    as_of: date | None = None
    concurrency: int = Field(20, ge=1, le=500)  # journey starts in flight at once
    page_size: int = Field(500, ge=1, le=10_000)
    # Set when the workflow continues as new: where it goes on, and what it counted so far.
    cursor: ScanCursor | None = None
    so_far: ScanSummary | None = None


class ScanRequest(Model):
    """One scan activity: up to `max_pages` pages from `cursor` (None: the beginning)."""

    as_of: date
    concurrency: int = Field(20, ge=1, le=500)
    page_size: int = Field(500, ge=1, le=10_000)
    cursor: ScanCursor | None = None
    max_pages: int = Field(40, ge=1)


class ScanProgress(Model):
    """How far a scan activity got: its heartbeat's details and its result."""

    summary: ScanSummary  # the pages done since the request's cursor
    cursor: ScanCursor | None = None  # where the next page starts
    done: bool = False  # the at-risk set is read to its end
