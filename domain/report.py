"""The monthly review (MISSION section 6): figures from counted records, by the rules below.

The queries (infra/report_queries.py) count records per month; everything here is pure:
rates, the reasons and the masking, assembled into one `MonthlyReport`.

Definitions (the numbers a manager reads must mean one thing):
- A notification counts in the month its record was created (Asia/Shanghai), with the
  status it has now. A failed record (`failed`, `bounced`) is one of three kinds
  (`failure_kind`): the provider refused it or could not deliver it (a provider failure);
  it was not sent for want of an address (none on file for the channel, or the address
  is suppressed after a permanent failure); or it was not sent because its text broke a
  content rule. Attempted = handed to a provider: accepted (`sent` + `delivered`) +
  provider failures + `unknown` (the request went out, its fate is not known); the rates
  are over attempted. The records not sent, `queued` and `sending` (pending) and
  `skipped` (never tried) are counted beside it, not in it.
- Delivery is confirmed only on the channels that report it (`CONFIRMING_CHANNELS`: the
  provider's receipt of an SMS or e-mail, a voice call answered). Elsewhere (WeChat, WeCom,
  letters, agent calls) confirmed does not apply: its rate is not a 0 %, it is absent, and
  the overall confirmed rate is over the attempts on confirming channels only.
- The milestone of a record is its key's message kind, without the follow-up month and
  whatever suffix repeats it (resend, redial, transaction...); messages to an emergency
  contact count on their own (`record_kind`, written with each record as
  `notifications.kind`, migrations/0019_notification_kind.sql).
- Formal-demand evidence: journeys whose first reminder (any channel, to the
  policyholder or group employer) went out in the month, and of them those whose demand
  was proven delivered by the rule the evidence pack states (domain/evidence.py
  `formal_demand`: a provider's delivery receipt, a registered letter's tracking number
  or an agent's call record): what starts Insurance Law art. 36's 30-day clock.
- Inquiries count in the month received; on time = handled_at <= respond_by (one business
  day, set when the inquiry was opened). A reinstatement application (kind
  `reinstatement`) is not an inquiry waiting for an answer but an application waiting for
  underwriting's decision: applications count on their own, received in the month, with
  the decision on record so far (approved: the policy's journey closed `reinstated` after
  it; refused: the refusal message for it was sent).
- Journeys, the month's events: started by started_at; lapses by lapsed_at, plus
  rescissions on the day the rescission journey started (no grace, cover ends then);
  payments in grace are journeys closed `paid` in the month, by the last reminder
  milestone on record (`none` if paid before the first reminder went out);
  reinstatements are journeys closed `reinstated` in the month. Whenever the journey
  started: a payment in the month of a journey started in an earlier month counts.
- Reinstatement conversion: of the month's lapses of reinstatable products, the share
  reinstated so far (a cohort: a recent month's rate still rises as applications come in).
- Lapse reasons: a debit-failure journey lapses for the reason of the last failed debit
  before the lapse; other lapses are `no_payment`; rescissions are `rescission`.
- Funnel: a cohort, not the month's events: journeys started in the window (the
  `window_months` ending with the report month: a month's own starters have rarely reached
  their lapse date) whose first reminder is on record, and what became of them by now:
  paid in grace, lapsed (of which reinstated), ended otherwise, still open. Its counts
  differ from the month's events by design: they include what the cohort did after the
  month, and leave out the journeys started before the window.
- Repeated debit failures: policyholders with `repeat_failures` or more failed debits in
  the `window_months` ending with the report month, named as surname and honorific and
  with the card's last 4 digits only. The bind-a-new-card campaign asks them (next month).
- Bind-a-new-card: the campaign's messages sent in the month (one per customer), and the
  customers who re-bound since (domain/campaign.py: the card changed, or a debit went
  through).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time
from enum import StrEnum

from pydantic import Field

from domain.calendar import add_months
from domain.campaign import rebound
from domain.content.masking import mask_card, short_name
from domain.evidence import DemandRecord, formal_demand
from domain.ids import MilestoneKey
from domain.journey import InquiryKind
from domain.models import (
    ACCEPTED,
    MILESTONES,
    Channel,
    DebitFailureReason,
    Gender,
    MessageKind,
    Model,
    NotificationStatus,
    Role,
    TriggerKind,
)
from domain.plan import TZ

_S = NotificationStatus
FAILED = frozenset({_S.FAILED, _S.BOUNCED})
PENDING = frozenset({_S.QUEUED, _S.SENDING})
APPLICATION = InquiryKind.REINSTATEMENT  # the inquiry kind of a reinstatement application

# The channels whose delivery is confirmed (SMS and e-mail by the provider's receipt, a
# voice call by being answered). A channel joins when its confirmations are recorded
# (WeChat's TEMPLATESENDJOBFINISH, once its callback sets `delivered`).
CONFIRMING_CHANNELS = frozenset({Channel.SMS, Channel.EMAIL, Channel.VOICE})


class FailureKind(StrEnum):
    PROVIDER = "provider"  # handed to the provider, which refused it or could not deliver
    NO_ADDRESS = "no_address"  # not sent: no address for the channel, or it is suppressed
    CONTENT_RULE = "content_rule"  # not sent: the text broke a content rule


# Error codes of records that never reached a provider; any other code (the providers'
# own, `provider_unavailable`, ours for a give-up) is a provider failure.
NO_ADDRESS_CODES = frozenset({"no_address", "no_postal_address", "suppressed"})
CONTENT_RULE_CODES = frozenset({
    "sms_segments", "sms_too_long", "sms_over_budget", "forbidden_word", "stilted_phrase",
    "glossary", "nested_brackets", "unbalanced_brackets", "amount_format", "repeated_place",
    "pii_pattern", "not_speakable", "no_variant", "no_template", "unbalanced_element",
    "not_for_product", "missing_context", "content_rule"})


def record_kind(key: MilestoneKey, role: Role | str) -> MessageKind:
    """The message kind a record counts under (its `notifications.kind`, written with the
    record, the one place it is worked out): its key's kind, whatever the follow-up month
    or suffix; a message to an emergency contact counts as `emergency_contact`, whatever
    key it went out under."""
    if Role(role) is Role.EMERGENCY_CONTACT:
        return MessageKind.EMERGENCY_CONTACT
    return key.kind


FORMAL_DEMAND_ROLES = frozenset({Role.POLICYHOLDER, Role.GROUP_EMPLOYER})


def is_formal_demand(key: MilestoneKey, role: Role | str) -> bool:
    """Whether a record is one of the formal demand's: a first reminder (resends and
    fallbacks included) to the policyholder or the group's employer. The evidence pack
    decides it from the chained key and role, not from `notifications.kind`, which the
    evidence chain does not cover; the review's SQL (`report_formal_demand`) says the same
    over the column."""
    return (record_kind(key, role) is MessageKind.FIRST_REMINDER
            and Role(role) in FORMAL_DEMAND_ROLES)


def failure_kind(error_code: str | None) -> FailureKind:
    """What a failed record's error code says went wrong: the one place codes are sorted."""
    if error_code in NO_ADDRESS_CODES:
        return FailureKind.NO_ADDRESS
    if error_code in CONTENT_RULE_CODES:
        return FailureKind.CONTENT_RULE
    return FailureKind.PROVIDER
NO_PAYMENT = "no_payment"
RESCISSION = "rescission"
NO_MILESTONE = "none"  # paid before any reminder went out
UNKNOWN_ERROR = "unknown"

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_MILESTONE_ORDER = [m.value for m in MILESTONES]
_CHANNEL_ORDER = [c.value for c in Channel]


class ReportRules(Model):
    """The review's numbers: company configuration, with these defaults."""

    window_months: int = Field(6, ge=1, le=24)  # trends and repeated debit failures
    repeat_failures: int = Field(2, ge=2, le=20)
    top_errors: int = Field(3, ge=1, le=10)


DEFAULT_RULES = ReportRules()


# --- months ------------------------------------------------------------------------------


def parse_month(text: str) -> date:
    """'2026-11' -> date(2026, 11, 1)."""
    match = _MONTH.match(text.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"{text!r} is not a month: use YYYY-MM, e.g. 2026-11")
    return date(int(match[1]), int(match[2]), 1)


def month_label(month: date) -> str:
    return f"{month:%Y-%m}"


def months_ending(month: date, count: int) -> list[date]:
    """The `count` months up to and including `month`, oldest first."""
    return [add_months(month, -k) for k in range(count - 1, -1, -1)]


def window(month: date, count: int) -> tuple[datetime, datetime]:
    """From 00:00 on the first of the oldest month to 00:00 after `month`, in Shanghai."""
    first = months_ending(month, count)[0]
    return (datetime.combine(first, time(0), TZ),
            datetime.combine(add_months(month, 1), time(0), TZ))


# --- what the queries count -----------------------------------------------------------------


class NotificationCount(Model):
    month: date
    channel: Channel
    milestone: MessageKind | None  # None: a trend month's count, over every milestone
    status: NotificationStatus
    error_code: str | None
    count: int


class FirstReminderCount(Model):
    month: date
    records: list[DemandRecord]  # the facts of a journey's first-reminder records
    journeys: int  # how many of the month's journeys have exactly these


class InquiryCount(Model):
    month: date
    kind: InquiryKind
    received: int
    on_time: int
    late: int
    unanswered: int
    escalated: int


class ApplicationCount(Model):
    """Reinstatement applications received in the month and the decisions on record."""

    month: date
    received: int
    approved: int
    refused: int


class StartCount(Model):
    month: date
    trigger: TriggerKind
    count: int


class PaidInGraceCount(Model):
    month: date
    milestone: MessageKind | None  # the last reminder on record; None before the first
    count: int


class LapseCount(Model):
    month: date
    trigger: TriggerKind
    debit_reason: DebitFailureReason | None  # of the last failed debit before the lapse
    reinstatable: bool
    reinstated: bool  # reinstated since (the conversion cohort)
    count: int


class ReinstatedCount(Model):
    month: date
    count: int


class FunnelCount(Model):
    month: date
    first_reminded: int
    paid_in_grace: int
    lapsed: int
    reinstated: int
    ended_otherwise: int


class DebitFailureCount(Model):
    """A policyholder's failed debits on one card. Carries the clear name: mask it."""

    customer_id: str
    name: str
    gender: Gender | None
    is_organisation: bool
    card_last4: str | None
    failures: int
    last_failed_at: datetime
    last_reason: DebitFailureReason | None


class BindCardRequestRow(Model):
    """One bind-a-new-card message sent in the month, and what the card did since."""

    month: date
    card_then: str | None
    card_now: str | None
    debit_succeeded_since: bool


class ReportRecords(Model):
    """Everything the queries counted over the report window."""

    notifications: list[NotificationCount] = []
    first_reminders: list[FirstReminderCount] = []
    inquiries: list[InquiryCount] = []
    applications: list[ApplicationCount] = []
    starts: list[StartCount] = []
    paid_in_grace: list[PaidInGraceCount] = []
    lapses: list[LapseCount] = []
    reinstated: list[ReinstatedCount] = []
    funnel: list[FunnelCount] = []
    debit_failures: list[DebitFailureCount] = []
    bind_card: list[BindCardRequestRow] = []


# --- the report -----------------------------------------------------------------------------


class ErrorCount(Model):
    error_code: str
    count: int


class DeliveryRate(Model):
    """Notification outcomes for one channel (and milestone), or for all of them."""

    channel: Channel | None = None
    milestone: MessageKind | None = None
    records: int = 0
    attempted: int = 0  # handed to a provider: accepted + failed + unknown
    accepted: int = 0
    delivered: int = 0
    failed: int = 0  # provider failures
    unknown: int = 0
    pending: int = 0
    skipped: int = 0
    no_address: int = 0  # not sent: no address for the channel, or it is suppressed
    content_rule: int = 0  # not sent: the text broke a content rule
    # Whether delivery confirmations exist for these records' channels; the confirmed
    # rate is over `confirmable`, the attempts on those channels (None: not applicable).
    confirms_delivery: bool = False
    confirmable: int = 0
    accepted_rate: float | None = None
    delivered_rate: float | None = None
    failed_rate: float | None = None
    top_errors: list[ErrorCount] = []  # the provider failures' codes


class FormalDemand(Model):
    first_reminders: int = 0
    delivered: int = 0
    accepted_unconfirmed: int = 0  # accepted by a provider, no delivery confirmed
    unreached: int = 0  # no provider took it on: failed, pending or unknown everywhere
    evidence_rate: float | None = None


class InquiryVolume(Model):
    kind: InquiryKind | None = None  # None: all kinds
    received: int = 0
    on_time: int = 0
    late: int = 0
    unanswered: int = 0
    escalated: int = 0
    on_time_rate: float | None = None


class Applications(Model):
    """Reinstatement applications received in the month, and underwriting's decisions on
    record so far."""

    received: int = 0
    approved: int = 0
    refused: int = 0
    awaiting: int = 0  # no decision on record yet


class Conversion(Model):
    lapsed: int = 0  # lapses of reinstatable products in the month
    reinstated: int = 0  # of them, reinstated since
    rate: float | None = None


class JourneyEvents(Model):
    """The month's journey events (the report section `journeys`)."""

    started: int = 0
    started_by_trigger: dict[str, int] = {}
    lapsed: int = 0  # grace ended unpaid (long-term lapse or short-term not renewed)
    rescinded: int = 0
    paid_in_grace: int = 0
    paid_in_grace_by_milestone: dict[str, int] = {}
    reinstated: int = 0
    conversion: Conversion = Conversion()


class LapseReason(Model):
    reason: str
    count: int
    share: float


class Funnel(Model):
    since: str | None = None  # the first month of the window
    first_reminded: int = 0
    paid_in_grace: int = 0
    lapsed: int = 0
    reinstated: int = 0
    ended_otherwise: int = 0
    open: int = 0


class RepeatedDebitFailure(Model):
    customer_id: str
    name: str  # masked: surname and honorific (an organisation's own name)
    card: str | None  # ****1234
    failures: int
    last_failed_on: date
    last_reason: str | None


class MonthTrend(Model):
    month: str
    notifications: int
    accepted_rate: float | None
    delivered_rate: float | None
    evidence_rate: float | None
    inquiries: int
    on_time_rate: float | None
    started: int
    paid_in_grace: int
    lapsed: int
    reinstated: int
    conversion_rate: float | None


class BindCardCampaign(Model):
    """The month's bind-a-new-card messages and how many of those customers re-bound
    since (domain/campaign.py says what counts); a cohort, so a recent month still rises."""

    asked: int = 0
    rebound: int = 0
    rate: float | None = None


class MonthlyReport(Model):
    month: str
    starts_at: datetime
    ends_at: datetime
    notifications: list[DeliveryRate]  # per channel and milestone
    channels: list[DeliveryRate]  # per channel
    overall: DeliveryRate
    formal_demand: FormalDemand
    inquiries: list[InquiryVolume]  # per kind, reinstatement applications apart
    inquiries_total: InquiryVolume
    reinstatement_applications: Applications = Applications()
    journeys: JourneyEvents
    lapse_reasons: list[LapseReason]
    funnel: Funnel
    repeated_debit_failures: list[RepeatedDebitFailure]
    bind_card: BindCardCampaign = BindCardCampaign()
    trends: list[MonthTrend]  # the window's months, oldest first, this month last


# --- assembly -------------------------------------------------------------------------------


def rate(part: int, whole: int) -> float | None:
    """A share rounded to 4 places; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


def _order(values: Iterable[str], known: list[str]) -> list[str]:
    """Known values in their vocabulary order, then any others alphabetically."""
    values = set(values)
    return [v for v in known if v in values] + sorted(values - set(known))


def _delivery(rows: list[NotificationCount], top: int, channel: Channel | None = None,
              milestone: MessageKind | None = None) -> DeliveryRate:
    by_status: dict[NotificationStatus, int] = defaultdict(int)
    not_sent: dict[FailureKind, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    confirmable = confirmed = 0
    for r in rows:
        kind = failure_kind(r.error_code) if r.status in FAILED else None
        if kind in (FailureKind.NO_ADDRESS, FailureKind.CONTENT_RULE):
            not_sent[kind] += r.count
            continue
        by_status[r.status] += r.count
        if kind is FailureKind.PROVIDER:
            errors[r.error_code or UNKNOWN_ERROR] += r.count
        if r.channel in CONFIRMING_CHANNELS and (r.status in ACCEPTED or r.status in FAILED
                                                 or r.status is _S.UNKNOWN):
            confirmable += r.count
            confirmed += r.count if r.status is _S.DELIVERED else 0
    accepted = sum(by_status[s] for s in ACCEPTED)
    failed = sum(by_status[s] for s in FAILED)
    attempted = accepted + failed + by_status[_S.UNKNOWN]
    confirms = any(r.channel in CONFIRMING_CHANNELS for r in rows)
    ranked = sorted(errors.items(), key=lambda e: (-e[1], e[0]))[:top]
    return DeliveryRate(
        channel=channel, milestone=milestone,
        records=sum(by_status.values()) + sum(not_sent.values()),
        attempted=attempted, accepted=accepted, delivered=by_status[_S.DELIVERED],
        failed=failed, unknown=by_status[_S.UNKNOWN], pending=sum(by_status[s] for s in PENDING),
        skipped=by_status[_S.SKIPPED], no_address=not_sent[FailureKind.NO_ADDRESS],
        content_rule=not_sent[FailureKind.CONTENT_RULE], confirms_delivery=confirms,
        confirmable=confirmable, accepted_rate=rate(accepted, attempted),
        delivered_rate=rate(confirmed, confirmable) if confirms else None,
        failed_rate=rate(failed, attempted),
        top_errors=[ErrorCount(error_code=code, count=n) for code, n in ranked])


def _delivery_tables(rows: list[NotificationCount], top: int
                     ) -> tuple[list[DeliveryRate], list[DeliveryRate], DeliveryRate]:
    per_pair: dict[tuple[Channel, MessageKind | None], list[NotificationCount]] = \
        defaultdict(list)
    per_channel: dict[Channel, list[NotificationCount]] = defaultdict(list)
    for r in rows:
        per_pair[r.channel, r.milestone].append(r)
        per_channel[r.channel].append(r)
    channels = _order(per_channel, _CHANNEL_ORDER)
    milestones = _order((m for _, m in per_pair), _MILESTONE_ORDER)
    pairs = [_delivery(per_pair[c, m], top, c, m)
             for c in channels for m in milestones if (c, m) in per_pair]
    return (pairs, [_delivery(per_channel[c], top, c) for c in channels],
            _delivery(rows, top))


def _formal_demand(rows: list[FirstReminderCount]) -> FormalDemand:
    total = delivered = accepted = 0
    for row in rows:
        finding = formal_demand(row.records)
        total += row.journeys
        delivered += row.journeys if finding.delivered else 0
        accepted += row.journeys if finding.accepted else 0
    return FormalDemand(
        first_reminders=total, delivered=delivered, accepted_unconfirmed=accepted - delivered,
        unreached=total - accepted, evidence_rate=rate(delivered, total))


def _inquiry(kind: InquiryKind | None, rows: list[InquiryCount]) -> InquiryVolume:
    received = sum(r.received for r in rows)
    on_time = sum(r.on_time for r in rows)
    return InquiryVolume(kind=kind, received=received, on_time=on_time,
                         late=sum(r.late for r in rows),
                         unanswered=sum(r.unanswered for r in rows),
                         escalated=sum(r.escalated for r in rows),
                         on_time_rate=rate(on_time, received))


def _inquiries(records: ReportRecords, month: date) -> list[InquiryCount]:
    """The month's inquiries that wait for an answer: applications wait for a decision."""
    return [i for i in records.inquiries if i.month == month and i.kind != APPLICATION]


def _applications(rows: list[ApplicationCount]) -> Applications:
    received = sum(r.received for r in rows)
    approved = sum(r.approved for r in rows)
    refused = sum(r.refused for r in rows)
    return Applications(received=received, approved=approved, refused=refused,
                        awaiting=received - approved - refused)


def lapse_reason(trigger: TriggerKind, debit_reason: DebitFailureReason | None) -> str:
    if trigger is TriggerKind.RESCISSION:
        return RESCISSION
    if trigger is TriggerKind.DEBIT_FAILED:
        return (debit_reason or DebitFailureReason.OTHER).value
    return NO_PAYMENT


def _journeys(month: date, records: ReportRecords) -> tuple[JourneyEvents, list[LapseReason]]:
    starts = [s for s in records.starts if s.month == month]
    paid = [p for p in records.paid_in_grace if p.month == month]
    lapses = [x for x in records.lapses if x.month == month]
    by_trigger: dict[TriggerKind, int] = defaultdict(int)
    for s in starts:
        by_trigger[s.trigger] += s.count
    by_milestone: dict[str, int] = defaultdict(int)
    for p in paid:
        by_milestone[p.milestone or NO_MILESTONE] += p.count
    reasons: dict[str, int] = defaultdict(int)
    for x in lapses:
        reasons[lapse_reason(x.trigger, x.debit_reason)] += x.count
    rescinded = reasons.get(RESCISSION, 0)
    reinstatable = [x for x in lapses if x.reinstatable]
    cohort = sum(x.count for x in reinstatable)
    won_back = sum(x.count for x in reinstatable if x.reinstated)
    total = sum(reasons.values())
    journeys = JourneyEvents(
        started=sum(by_trigger.values()),
        started_by_trigger=dict(sorted(by_trigger.items())),
        lapsed=total - rescinded, rescinded=rescinded,
        paid_in_grace=sum(by_milestone.values()),
        paid_in_grace_by_milestone={
            m: by_milestone[m]
            for m in _order(by_milestone, [NO_MILESTONE, *_MILESTONE_ORDER])},
        reinstated=sum(r.count for r in records.reinstated if r.month == month),
        conversion=Conversion(lapsed=cohort, reinstated=won_back, rate=rate(won_back, cohort)))
    ranked = sorted(reasons.items(), key=lambda r: (-r[1], r[0]))
    return journeys, [LapseReason(reason=r, count=n, share=rate(n, total)) for r, n in ranked]


def _funnel(since: date, rows: list[FunnelCount]) -> Funnel:
    totals = {field: sum(getattr(r, field) for r in rows)
              for field in ("first_reminded", "paid_in_grace", "lapsed", "reinstated",
                            "ended_otherwise")}
    return Funnel(since=month_label(since), **totals,
                  open=totals["first_reminded"] - totals["paid_in_grace"] - totals["lapsed"]
                  - totals["ended_otherwise"])


def mask_debit_failure(row: DebitFailureCount) -> RepeatedDebitFailure:
    """Only what an operator needs to ask for a new card: no full name, no card number."""
    return RepeatedDebitFailure(
        customer_id=row.customer_id,
        name=row.name if row.is_organisation else short_name(row.name, row.gender),
        card=mask_card(row.card_last4) if row.card_last4 else None,
        failures=row.failures, last_failed_on=row.last_failed_at.astimezone(TZ).date(),
        last_reason=row.last_reason)


def _trend(month: date, records: ReportRecords, rules: ReportRules) -> MonthTrend:
    overall = _delivery([n for n in records.notifications if n.month == month], rules.top_errors)
    demand = _formal_demand([f for f in records.first_reminders if f.month == month])
    inquiries = _inquiry(None, _inquiries(records, month))
    journeys, _ = _journeys(month, records)
    return MonthTrend(
        month=month_label(month), notifications=overall.attempted,
        accepted_rate=overall.accepted_rate, delivered_rate=overall.delivered_rate,
        evidence_rate=demand.evidence_rate, inquiries=inquiries.received,
        on_time_rate=inquiries.on_time_rate, started=journeys.started,
        paid_in_grace=journeys.paid_in_grace, lapsed=journeys.lapsed,
        reinstated=journeys.reinstated, conversion_rate=journeys.conversion.rate)


def _bind_card(rows: list[BindCardRequestRow]) -> BindCardCampaign:
    won = sum(rebound(r.card_then, r.card_now, r.debit_succeeded_since) for r in rows)
    return BindCardCampaign(asked=len(rows), rebound=won, rate=rate(won, len(rows)))


def build_report(month: date, records: ReportRecords,
                 rules: ReportRules = DEFAULT_RULES) -> MonthlyReport:
    """The month's review from the window's counts (the window ends with `month`)."""
    starts_at, ends_at = window(month, 1)
    months = months_ending(month, rules.window_months)
    pairs, channels, overall = _delivery_tables(
        [n for n in records.notifications if n.month == month], rules.top_errors)
    inquiries = _inquiries(records, month)
    kinds = sorted({i.kind for i in inquiries})
    journeys, reasons = _journeys(month, records)
    failures = sorted(records.debit_failures,
                      key=lambda f: (-f.failures, -f.last_failed_at.timestamp(), f.customer_id))
    return MonthlyReport(
        month=month_label(month), starts_at=starts_at, ends_at=ends_at,
        notifications=pairs, channels=channels, overall=overall,
        formal_demand=_formal_demand([f for f in records.first_reminders if f.month == month]),
        inquiries=[_inquiry(k, [i for i in inquiries if i.kind == k]) for k in kinds],
        inquiries_total=_inquiry(None, inquiries),
        reinstatement_applications=_applications(
            [a for a in records.applications if a.month == month]),
        journeys=journeys, lapse_reasons=reasons,
        funnel=_funnel(months[0], [f for f in records.funnel if f.month in months]),
        repeated_debit_failures=[mask_debit_failure(f) for f in failures],
        bind_card=_bind_card([r for r in records.bind_card if r.month == month]),
        trends=[_trend(m, records, rules) for m in months])
