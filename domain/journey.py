"""The messages of a journey: workflow input, signals, update, query, and activity requests."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import Field

from domain.models import (
    Channel,
    Currency,
    DebitFailure,
    Model,
    Moment,
    Segment,
    Trigger,
)
from domain.plan import JourneyPlan
from domain.reinstatement import ReinstatementQuote

TASK_QUEUE = "policy-lapse"
WORKFLOW_TYPE = "PolicyLapseWorkflow"


def workflow_id(policy_number: str) -> str:
    return f"lapse-{policy_number}"


class Stage(StrEnum):
    AT_RISK = "at_risk"
    LAPSED = "lapsed"
    REINSTATING = "reinstating"
    CLOSED = "closed"


class Outcome(StrEnum):
    PAID = "paid"
    REINSTATED = "reinstated"
    FOLLOW_UP_ENDED = "follow_up_ended"
    RESCINDED = "rescinded"
    NOT_RENEWED = "not_renewed"
    CANCELLED = "cancelled"


class InquiryKind(StrEnum):
    QUESTION = "question"
    HARDSHIP = "hardship"
    COMPLAINT = "complaint"
    REINSTATEMENT = "reinstatement"


class Signal(Model):
    """Base of signal payloads (CONTRACT.md); their times must carry a time zone."""


# --- signals and the update (CONTRACT.md) ----------------------------------------------


class Payment(Signal):
    transaction_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    amount: Decimal = Field(max_digits=14, decimal_places=2)
    currency: str = Field(min_length=3, max_length=3)
    paid_at: Moment


class PaymentAnswer(Model):
    accepted: bool
    outcome: str  # "recorded", "duplicate", "paid_in_full", "after_lapse"
    outstanding: Decimal


class DebitFailedSignal(DebitFailure):
    pass


class ContactUpdated(Signal):
    updated_at: Moment


class InquiryReceived(Signal):
    inquiry_id: str = Field(min_length=1, max_length=64)
    kind: InquiryKind
    received_at: Moment


class InquiryHandled(Signal):
    inquiry_id: str = Field(min_length=1, max_length=64)
    handled_at: Moment
    note: str = Field("", max_length=500)


class ReinstatementApplied(Signal):
    application_id: str = Field(min_length=1, max_length=64)
    applied_at: Moment


class ReinstatementDecided(Signal):
    application_id: str = Field(min_length=1, max_length=64)
    approved: bool
    decided_at: Moment
    reason: str = Field("", max_length=200)


class DeliveryFailed(Signal):
    notification_id: str = Field(min_length=1, max_length=300)
    channel: Channel
    error_code: str = Field("", max_length=40)
    permanent: bool


# --- state that the query shows ----------------------------------------------------------


class NextMilestone(Model):
    name: str
    at: datetime
    channels: list[Channel]


class NotificationView(Model):
    id: str
    milestone: str
    channel: Channel
    status: str
    at: datetime
    recipients: int = 1


class InquiryView(Model):
    inquiry_id: str
    kind: InquiryKind
    received_at: datetime
    respond_by: datetime
    escalated: bool = False


class JourneyStatus(Model):
    policy_number: str
    stage: Stage
    outcome: Outcome | None
    trigger: str
    due_date: date
    grace_ends_at: date | None
    lapses_at: datetime | None
    amount_due: Decimal
    amount_paid: Decimal
    outstanding: Decimal
    next_milestone: NextMilestone | None
    notifications: list[NotificationView]
    open_inquiries: list[InquiryView]
    reinstatement: ReinstatementQuote | None
    segments: list[Segment]
    journey_now: datetime
    debit_failures: list[DebitFailure] = Field(default_factory=list)


# --- activity requests and results ---------------------------------------------------------


class PrepareRequest(Model):
    journey_id: str
    trigger: Trigger
    starts_at: datetime


class Preparation(Model):
    plan: JourneyPlan
    product_kind: str
    product_name: str
    reinstatable: bool
    interest_rate: Decimal
    recipients: int  # policyholder plus group members
    policyholder_id: str
    fallbacks: dict[Segment, list[Channel]]


class PolicyCheck(Model):
    in_force: bool
    outstanding: Decimal
    status: str


RecipientScope = Literal["policyholder", "members", "emergency_contact"]


class SendRequest(Model):
    journey_id: str
    policy_number: str
    milestone_key: str
    message: str  # a MilestoneKind value or another message kind (payment_confirmation, ...)
    channel: Channel
    scope: RecipientScope
    offset: int = 0
    limit: int = 500
    only: list[str] | None = None  # recipient ids (a fallback goes only to those it failed)
    journey_date: date
    # The journey moment the send belongs to: the record's time, which the monthly review
    # counts by. Under compressed time it runs ahead of the wall clock.
    journey_at: datetime | None = None
    # What the message says: the trigger (with the latest debit failure), the key dates
    # of the plan, what is outstanding now, and the reinstatement quote where it applies.
    trigger: Trigger
    outstanding: Decimal
    segments: list[Segment]
    grace_ends_on: date | None = None
    lapses_on: date | None = None
    reinstatement_deadline: date | None = None
    follow_up_month: int | None = None
    quote: ReinstatementQuote | None = None
    paid_amount: Decimal | None = None  # the payment a confirmation acknowledges
    paid_on: date | None = None
    # Until when the message is worth retrying (Temporal's clock, the wall clock outside
    # tests): an attempt starting then, or a retry that would start after it, records
    # every recipient not reached `failed`. None: a day after the first attempt.
    give_up_at: Moment | None = None


class SendOutcome(Model):
    channel: Channel
    sent: int
    failed: list[str]  # recipient ids that this channel could not reach, for good
    first_notification_id: str | None = None
    # Why, per failed recipient id: the provider's or the rule's code (`21211`,
    # `provider_unavailable`, `sms_over_budget`, `suppressed`, `no_address`, ...).
    reasons: dict[str, str] = Field(default_factory=dict)


class TaskRequest(Model):
    journey_id: str
    policy_number: str
    kind: Literal["outbound_call", "home_visit", "inquiry_escalation", "contact_repair"]
    priority: int = Field(3, ge=1, le=5)
    due_at: datetime
    reference: str  # milestone key or inquiry id: makes the task id deterministic


class InquiryRequest(Model):
    journey_id: str
    policy_number: str
    inquiry: InquiryReceived
    received_journey_at: datetime


class PaymentRecord(Model):
    policy_number: str
    payment: Payment
    currency: Currency = "CNY"


class StageChange(Model):
    journey_id: str
    policy_number: str
    stage: Stage
    at: datetime
    outcome: Outcome | None = None
    policy_status: str | None = None  # set the policy's status in the database too
    trigger: str | None = None


# --- workflow input ----------------------------------------------------------------------


class JourneyState(Model):
    """What a journey carries over a continue-as-new."""

    model_config = Model.model_config | {"frozen": False}

    prep: Preparation
    stage: Stage
    outcome: Outcome | None = None
    next_index: int
    amount_paid: Decimal
    transactions: list[str]
    debit_failures: list[DebitFailure]
    segments: list[Segment]
    notifications: list[NotificationView]
    inquiries: list[InquiryView]
    undelivered: list[str]  # milestone keys that reached nobody
    application_id: str | None
    public_notice: bool = False
    journey_anchor: datetime
    wall_anchor: datetime


class JourneyInput(Model):
    trigger: Trigger
    # The journey's own calendar start; the worker's clock when omitted. With a time
    # scale above 1 the journey clock runs ahead of the wall clock from this anchor.
    journey_start: datetime | None = None
    time_scale: float = Field(1.0, gt=0, le=10_000_000)
    # Continue as new past this many history events (Temporal's limit is 51,200).
    continue_as_new_after: int = Field(10_000, ge=50, le=40_000)
    carry: JourneyState | None = None
