"""The messages of a journey: workflow input, signals, update, query, and activity requests."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from domain.ids import REFERENCE_PATTERN, MilestoneKey
from domain.models import (
    CURRENCY,
    Channel,
    DebitFailure,
    MessageKind,
    Model,
    Moment,
    NotificationStatus,
    PolicyStatus,
    ProductKind,
    Segment,
    Trigger,
    TriggerKind,
)
from domain.plan import JourneyPlan
from domain.reinstatement import PremiumSchedule, ReinstatementQuote


class Stage(StrEnum):
    HELD = "held"  # the data check before the first message failed: nothing is sent
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


def payment_problem(payment: Payment) -> str | None:
    """Why a payment cannot be taken, or None: the one check, asked by the payment system's
    door (infra/journeys.py) and by the journey's update validator alike."""
    if payment.amount <= 0:
        return f"amount must be positive, got {payment.amount}"
    if payment.currency != CURRENCY:
        return f"currency must be {CURRENCY}, got {payment.currency}"
    return None


class PaymentOutcome(StrEnum):
    """What a payment did (the `record_payment` update's `outcome`)."""

    RECORDED = "recorded"  # stored; something is still owed (or a rescission: nothing to end)
    DUPLICATE = "duplicate"  # this transaction was recorded before: nothing changes
    PAID_IN_FULL = "paid_in_full"  # nothing is owed any more: the journey closes paid
    AFTER_LAPSE = "after_lapse"  # paid after the lapse: reinstatement is explained
    JOURNEY_CLOSED = "journey_closed"  # the journey had closed: not taken
    RECORDED_WITHOUT_JOURNEY = "recorded_without_journey"  # no journey running: stored only


class PaymentAnswer(Model):
    accepted: bool
    outcome: PaymentOutcome
    outstanding: Decimal


class PaymentStored(Model):
    """What the ledger says about a payment: `new` (stored now, `amount` as stored),
    `duplicate` (this policy's transaction, stored before) or `conflict` (the transaction
    id belongs to another policy: nothing stored). `owed`: what the ledger says is owed
    after the store, whatever the outcome (`infra.payments.standing`: what fell due by the
    policy's due date and is unpaid)."""

    outcome: Literal["new", "duplicate", "conflict"]
    amount: Decimal
    owed: Decimal


class DebitFailedSignal(DebitFailure):
    pass


class ContactUpdated(Signal):
    updated_at: Moment


# Inquiry and application ids are codes (never a phone number or a name).
Reference = Annotated[str, Field(min_length=1, max_length=64, pattern=REFERENCE_PATTERN)]


class InquiryReceived(Signal):
    inquiry_id: Reference
    kind: InquiryKind
    received_at: Moment


class InquiryHandled(Signal):
    inquiry_id: Reference
    handled_at: Moment
    # Free text never stays in the journey: clients keep it in PostgreSQL first and send
    # its id (`note_id`); a `note` that arrives anyway is kept there by an activity.
    note: str = Field("", max_length=500)
    note_id: int | None = Field(None, ge=1)


class ReinstatementApplied(Signal):
    application_id: Reference
    applied_at: Moment


class ReinstatementDecided(Signal):
    application_id: Reference
    approved: bool
    decided_at: Moment
    reason: str = Field("", max_length=200)  # kept like InquiryHandled.note
    note_id: int | None = Field(None, ge=1)


class DeliveryFailed(Signal):
    notification_id: str = Field(min_length=1, max_length=300)
    channel: Channel
    error_code: str = Field("", max_length=40)
    permanent: bool


class VerificationOutcome(StrEnum):
    PROCEED = "proceed"  # the data is right (or corrected): plan again and send
    CANCEL = "cancel"  # the journey should not have started: close it as cancelled


class DataVerified(Signal):
    verified_by: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    verified_at: Moment
    outcome: VerificationOutcome


class BadSignal(ValueError):
    """A signal or update whose payload cannot be taken. The message names the fields and
    the rules broken, never the values (they may be personal data)."""


# The contract's names (the workflow type, its id, the signal and update maps, the task
# queue) and `read_payload` are in contract.py, which imports these models.
# --- state that the query shows ----------------------------------------------------------


class NextMilestone(Model):
    name: MilestoneKey
    at: datetime
    channels: list[Channel]


class NotificationView(Model):
    id: str
    milestone: MilestoneKey
    channel: Channel
    status: NotificationStatus
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
    trigger: TriggerKind
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
    # While held: the data-check rules that failed (names, never values).
    held_rules: list[str] = Field(default_factory=list)


# --- activity requests and results ---------------------------------------------------------


class PrepareRequest(Model):
    journey_id: str
    trigger: Trigger
    starts_at: datetime
    verify: bool = True  # run the data check (not again after operations verified it)


class Preparation(Model):
    plan: JourneyPlan
    # The channels that have a template for each message kind, decided when the journey
    # is planned (a template deployed later never changes a running journey).
    usable: dict[MessageKind, list[Channel]] = Field(default_factory=dict)
    # The rules of the data check before the first message that failed (names only).
    anomalies: list[str] = Field(default_factory=list)
    # When a held journey escalates (journey time): CompanyRules.hold_business_days on.
    hold_until: datetime | None = None
    # The telephone rules (CompanyRules): redials inside the call window, capped a day.
    max_dial_attempts: int = 6
    redial_gap_minutes: int = 30
    voice_window: tuple[time, time] = (time(9, 0), time(21, 0))
    # Every channel's allowed hours (CompanyRules.send_windows): a message the journey
    # sends on an event (a confirmation, a decision, a resend) waits out quiet hours too.
    # Empty in plans made before: such journeys send event messages at once, as then.
    send_windows: dict[Channel, tuple[time, time]] = Field(default_factory=dict)
    # The channels a milestone adds once the customer has said they cannot pay (the
    # product's HARDSHIP channel rules: an agent's call about the alternatives). The
    # segment arises during the journey, so it is not in the plan. Empty in plans before.
    hardship_channels: dict[MessageKind, list[Channel]] = Field(default_factory=dict)
    product_kind: ProductKind
    product_name: str
    reinstatable: bool
    interest_rate: Decimal
    # The policy's regular premiums from its due date on: those that fall due after the
    # lapse are part of what reinstatement costs (MISSION 8). None in plans made before.
    schedule: PremiumSchedule | None = None
    recipients: int  # policyholder plus group members
    policyholder_id: str
    fallbacks: dict[Segment, list[Channel]]


class PolicyCheck(Model):
    """The policy as the database has it when a milestone is about to go out."""

    outstanding: Decimal
    status: PolicyStatus


RecipientScope = Literal["policyholder", "members", "emergency_contact"]


class SendRequest(Model):
    journey_id: str
    policy_number: str
    milestone_key: MilestoneKey
    message: MessageKind  # what it says: the milestone's kind, or another (emergency_contact)
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


class MilestoneSend(Model):
    """A milestone's sends in one activity: the policy re-checked first when `recheck_stage`
    is given (the journey's stage, which decides what the check means), then every request
    at once, each channel on its own records and retries."""

    sends: list[SendRequest] = Field(min_length=1)
    recheck_stage: Stage | None = None


class MilestoneSent(Model):
    """What a milestone's activity did: `stop` when the re-check ended the journey (nothing
    was sent), else one outcome per request, in order; `check`, the policy as re-read
    (None when it was not), whose `outstanding` the journey keeps as the ledger's word."""

    stop: Outcome | None = None
    check: PolicyCheck | None = None
    outcomes: list[SendOutcome] = Field(default_factory=list)


class InquiryClosed(Model):
    """An inquiry (or a reinstatement application) answered: when, on the journey's clock,
    and the free text that came with the answer, kept in PostgreSQL."""

    journey_id: str
    policy_number: str
    inquiry_id: str
    handled_at: datetime
    kind: Literal["inquiry_handled", "reinstatement_decided"]
    note: str = Field("", max_length=500)


class TaskRequest(Model):
    journey_id: str
    policy_number: str
    kind: Literal["outbound_call", "home_visit", "inquiry_escalation", "contact_repair",
                  "notice_failed", "data_verification"]
    priority: int = Field(3, ge=1, le=5)
    due_at: datetime
    reference: str  # milestone key or inquiry id: makes the task id deterministic
    rules: list[str] = Field(default_factory=list)  # a data check's failed rules (names)
    nearest_branch: bool = False  # a home visit: given to the branch nearest the address
    # When the journey raised it (journey time): an inquiry's escalation is dated by it.
    raised_at: datetime | None = None


class DialRequest(Model):
    """May the policyholder's number be dialled once more today? (MISSION section 2: at
    most `max_per_day` dial attempts a day to one number, counted across every journey.)"""

    policy_number: str
    day: date
    max_per_day: int


class InquiryRequest(Model):
    journey_id: str
    policy_number: str
    inquiry: InquiryReceived
    received_journey_at: datetime


class PaymentRecord(Model):
    policy_number: str
    payment: Payment
    journey_id: str | None = None  # the journey storing it; None in histories before 0017


class StageChange(Model):
    journey_id: str
    policy_number: str
    stage: Stage
    at: datetime
    outcome: Outcome | None = None
    policy_status: PolicyStatus | None = None  # the policy's status in the database too
    # The journey's start: its row is written here should it not be there yet (a journey
    # the scan started planned gets its row from the scan, right after the start).
    trigger: TriggerKind | None = None
    started_at: datetime | None = None


# --- workflow input ----------------------------------------------------------------------


class DeferredMessage(Model):
    """An event message that arrived in its channels' quiet hours: sent at `at`."""

    at: datetime
    key: MilestoneKey
    message: MessageKind
    channels: list[Channel] = Field(min_length=1)
    members: bool = False
    formal: bool = False


class DeferredFallback(Model):
    """The rest of a fallback for one recipient whose next channel was in its quiet hours
    (a bounce reported at night): taken up at `at`, when that channel opens."""

    at: datetime
    key: MilestoneKey  # the message the fallback stands in for
    message: MessageKind
    scope: RecipientScope
    recipient: str
    failed: Channel  # the channel that did not reach the recipient first
    tried: list[Channel] = Field(min_length=1)  # every channel tried for them so far
    ours: bool = False  # a failure so far was on our side (`failed_for_good`: not for good)
    formal: bool = False


class JourneyState(Model):
    """What a journey carries over a continue-as-new."""

    model_config = Model.model_config | {"frozen": False}

    prep: Preparation
    stage: Stage
    outcome: Outcome | None = None
    next_index: int
    amount_paid: Decimal  # what this journey's payments stored (shown, never decides)
    # The ledger's latest reading of what is owed (`infra.payments.standing`): the
    # trigger's amount at the start (the scan's reading), then every stored payment's and
    # every milestone re-check's.
    owed: Decimal
    transactions: list[str]
    debit_failures: list[DebitFailure]
    segments: list[Segment]
    notifications: list[NotificationView]
    inquiries: list[InquiryView]
    undelivered: list[MilestoneKey]  # messages that reached nobody
    application_id: str | None
    public_notice: bool = False
    journey_anchor: datetime
    wall_anchor: datetime
    held_since: datetime | None = None
    hold_escalated: bool = False
    closing: bool = False  # closed: the confirmation, the records and the tasks follow
    skipped: list[MilestoneKey] = Field(default_factory=list)  # superseded while held
    # Calls to dial again: (journey moment, milestone key of the call, attempt number).
    redials: list[tuple[datetime, MilestoneKey, int]] = Field(default_factory=list)
    resends: int = 0  # contact repairs so far: numbers the resends
    after_lapse: list[str] = Field(default_factory=list)  # payments to explain after lapse
    deferred: list[DeferredMessage] = Field(default_factory=list)  # waiting out quiet hours
    fallbacks: list[DeferredFallback] = Field(default_factory=list)  # the same, for fallbacks


class JourneyInput(Model):
    trigger: Trigger
    # The journey's own calendar start; the worker's clock when omitted. With a time
    # scale above 1 the journey clock runs ahead of the wall clock from this anchor.
    journey_start: datetime | None = None
    # The wall-clock moment that `journey_start` corresponds to (the starter's clock):
    # journeys started together by one scan share one clock under compressed time.
    wall_anchor: datetime | None = None
    time_scale: float = Field(1.0, gt=0, le=10_000_000)
    # The plan, made by the starter (the daily scan plans a page of journeys at once): the
    # journey runs no `prepare_journey` of its own. Identifiers, dates, channels and rule
    # names only, like the activity's answer it stands for.
    preparation: Preparation | None = None
    # Continue as new past this many history events (Temporal's limit is 51,200).
    continue_as_new_after: int = Field(10_000, ge=50, le=40_000)
    carry: JourneyState | None = None
