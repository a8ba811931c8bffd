"""The policy domain as validated values: products, customers, policies and triggers."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

CURRENCY = "CNY"


class Model(BaseModel):
    """Base for every domain value: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


# --- vocabulary -----------------------------------------------------------------------


class ProductKind(StrEnum):
    LONG_TERM = "long_term"
    SHORT_TERM = "short_term"


class Channel(StrEnum):
    SMS = "sms"
    WECHAT = "wechat"
    WECOM = "wecom"  # WeCom (企业微信) application messages, for group members and employers
    VOICE = "voice"
    AGENT_CALL = "agent_call"
    EMAIL = "email"
    LETTER = "letter"


class Segment(StrEnum):
    """Customer segments that change the handling (MISSION section 3)."""

    STANDARD = "standard"
    ELDERLY = "elderly"
    GROUP = "group"
    UNREACHABLE = "unreachable"
    HARDSHIP = "hardship"


class MessageKind(StrEnum):
    """Every message we send: the milestones of the timeline (`MILESTONES`), then the
    messages that answer an event of a journey or belong to the bind-a-new-card campaign."""

    FIRST_REMINDER = "first_reminder"
    SECOND_REMINDER = "second_reminder"
    LAPSE_NOTICE = "lapse_notice"
    FOLLOW_UP = "follow_up"
    REENROLMENT_OFFER = "reenrolment_offer"
    RESCISSION_NOTICE = "rescission_notice"
    PAYMENT_CONFIRMATION = "payment_confirmation"
    PAYMENT_AFTER_LAPSE = "payment_after_lapse"  # paid after lapse: explains reinstatement
    REINSTATEMENT_APPROVED = "reinstatement_approved"
    REINSTATEMENT_REFUSED = "reinstatement_refused"
    EMERGENCY_CONTACT = "emergency_contact"
    PUBLIC_NOTICE = "public_notice"
    BIND_CARD = "bind_card"  # the monthly campaign to customers whose debits keep failing


# The message kinds that are milestones of the timeline (MISSION section 2), in its order.
MILESTONES: tuple[MessageKind, ...] = (
    MessageKind.FIRST_REMINDER, MessageKind.SECOND_REMINDER, MessageKind.LAPSE_NOTICE,
    MessageKind.FOLLOW_UP, MessageKind.REENROLMENT_OFFER, MessageKind.RESCISSION_NOTICE)


def _milestone(kind: MessageKind) -> MessageKind:
    if kind not in MILESTONES:
        raise ValueError(f"is not a milestone ({', '.join(MILESTONES)})")
    return kind


# A message kind that is a milestone: what a channel rule or a planned milestone names.
Milestone = Annotated[MessageKind, AfterValidator(_milestone)]


class Role(StrEnum):
    """Who a message is for (a notification record's `recipient_role`)."""

    POLICYHOLDER = "policyholder"
    INSURED = "insured"
    GROUP_EMPLOYER = "group_employer"  # a group policy's policyholder, an organisation
    GROUP_MEMBER = "group_member"
    EMERGENCY_CONTACT = "emergency_contact"


class NotificationStatus(StrEnum):
    """Where a notification record is (README "Channels and providers")."""

    QUEUED = "queued"  # not sent yet, or refused for now: tried again
    SENDING = "sending"  # handed to the provider right now
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"  # the provider (or an agent) confirmed it reached the customer
    FAILED = "failed"
    BOUNCED = "bounced"
    SKIPPED = "skipped"  # never tried: superseded, or paused while underwriting decides
    UNKNOWN = "unknown"  # the request went out and no answer came: nobody knows yet


# A provider has it, or the customer does: the one definition of 'accepted'.
ACCEPTED: frozenset[NotificationStatus] = frozenset({NotificationStatus.SENT,
                                                     NotificationStatus.DELIVERED})


class TriggerKind(StrEnum):
    PREMIUM_OVERDUE = "premium_overdue"
    RENEWAL_UNPAID = "renewal_unpaid"
    DEBIT_FAILED = "debit_failed"
    RESCISSION = "rescission"


class PolicyStatus(StrEnum):
    IN_FORCE = "in_force"
    LAPSED = "lapsed"
    RESCINDED = "rescinded"
    TERMINATED = "terminated"


class Gender(StrEnum):
    MALE = "M"
    FEMALE = "F"


class PaymentMethodKind(StrEnum):
    BANK_DEBIT = "bank_debit"
    MANUAL = "manual"


class PaymentPeriod(StrEnum):
    """How often a premium falls due."""

    ANNUAL = "annual"
    SEMI_ANNUAL = "semi_annual"
    QUARTERLY = "quarterly"
    MONTHLY = "monthly"

    @property
    def months(self) -> int:
        return {"annual": 12, "semi_annual": 6, "quarterly": 3, "monthly": 1}[self.value]


class DebitFailureReason(StrEnum):
    INSUFFICIENT_BALANCE = "insufficient_balance"
    CARD_EXPIRED = "card_expired"
    CARD_CANCELLED = "card_cancelled"
    ACCOUNT_MISMATCH = "account_mismatch"
    OTHER = "other"


# --- field types ----------------------------------------------------------------------

_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_CN_MOBILE = re.compile(r"^\+861[3-9]\d{9}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_POLICY_NUMBER = re.compile(r"^[A-Z0-9][A-Z0-9-]{5,31}$")
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _phone(value: str) -> str:
    value = value.replace(" ", "").replace("-", "")
    if not _E164.match(value):
        raise ValueError("must be an E.164 number such as +8613800138000")
    if value.startswith("+861") and len(value) == 14 and not _CN_MOBILE.match(value):
        raise ValueError("is not a valid mainland mobile number (+86 1[3-9] and 9 digits)")
    return value


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("is not a valid e-mail address")
    return value.lower()


def _id_number(value: str) -> str:
    value = value.upper()
    if not re.fullmatch(r"\d{17}[\dX]", value):
        raise ValueError("must be an 18-character resident ID number (17 digits and a check digit)")
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != value[17]:
        raise ValueError("has a wrong check digit")
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone, e.g. 2026-12-01T10:00:00+08:00")
    return value


def _policy_number(value: str) -> str:
    if not _POLICY_NUMBER.match(value):
        raise ValueError("must be 6-32 upper-case letters, digits or '-'")
    return value


def _code(value: str) -> str:
    if not _CODE.match(value):
        raise ValueError("must be 1-40 letters, digits, '_' or '-'")
    return value


Phone = Annotated[str, AfterValidator(_phone)]
Moment = Annotated[datetime, AfterValidator(_aware)]  # a time with its time zone
Email = Annotated[str, AfterValidator(_email)]
IdNumber = Annotated[str, AfterValidator(_id_number)]
PolicyNumber = Annotated[str, AfterValidator(_policy_number)]
Code = Annotated[str, AfterValidator(_code)]
Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]
PositiveMoney = Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
Currency = Literal["CNY"]


# --- products ---------------------------------------------------------------------------


class ChannelRule(Model):
    """Channels sent together at one milestone for one segment, in order of preference."""

    milestone: Milestone
    segment: Segment
    channels: list[Channel] = Field(min_length=1)


def _default_channel_rules() -> list[ChannelRule]:
    m, s, c = MessageKind, Segment, Channel
    return [
        ChannelRule(milestone=m.FIRST_REMINDER, segment=s.STANDARD, channels=[c.SMS, c.WECHAT]),
        ChannelRule(milestone=m.FIRST_REMINDER, segment=s.ELDERLY,
                    channels=[c.VOICE, c.LETTER, c.SMS]),
        ChannelRule(milestone=m.SECOND_REMINDER, segment=s.STANDARD, channels=[c.VOICE]),
        ChannelRule(milestone=m.SECOND_REMINDER, segment=s.ELDERLY,
                    channels=[c.VOICE, c.AGENT_CALL, c.SMS]),
        ChannelRule(milestone=m.SECOND_REMINDER, segment=s.HARDSHIP,
                    channels=[c.VOICE, c.AGENT_CALL]),
        ChannelRule(milestone=m.LAPSE_NOTICE, segment=s.STANDARD,
                    channels=[c.EMAIL, c.SMS, c.WECHAT]),
        ChannelRule(milestone=m.LAPSE_NOTICE, segment=s.ELDERLY,
                    channels=[c.LETTER, c.VOICE, c.SMS]),
        ChannelRule(milestone=m.FOLLOW_UP, segment=s.STANDARD, channels=[c.SMS]),
        # Elderly customers: the call first, SMS as a supplement, every month too.
        ChannelRule(milestone=m.FOLLOW_UP, segment=s.ELDERLY, channels=[c.VOICE, c.SMS]),
        ChannelRule(milestone=m.REENROLMENT_OFFER, segment=s.STANDARD, channels=[c.SMS]),
        ChannelRule(milestone=m.REENROLMENT_OFFER, segment=s.ELDERLY,
                    channels=[c.VOICE, c.SMS]),
        # MISSION 8: by letter (e-mail with PDF, or paper) and SMS, and WeChat where the
        # customer has it (an important service notice).
        ChannelRule(milestone=m.RESCISSION_NOTICE, segment=s.STANDARD,
                    channels=[c.LETTER, c.EMAIL, c.SMS, c.WECHAT]),
    ]


def _default_fallbacks() -> dict[Segment, list[Channel]]:
    c = Channel
    return {
        Segment.STANDARD: [c.SMS, c.WECHAT, c.EMAIL, c.VOICE, c.LETTER],
        Segment.ELDERLY: [c.VOICE, c.AGENT_CALL, c.LETTER, c.SMS],
    }


class ProductRules(Model):
    """Everything about a product that shapes a journey. Numbers are MISSION.md defaults."""

    grace_days: int = Field(60, ge=0, le=365)
    first_reminder_business_days: int = Field(1, ge=1, le=3)
    second_reminder_days_before_grace_end: int = Field(15, ge=1, le=90)
    reinstatable: bool = True
    reinstatement_years: int = Field(2, ge=0, le=10)
    reinstatement_interest_rate: Decimal = Field(Decimal("0.055"), ge=0, le=1, decimal_places=4)
    follow_up_months: int = Field(6, ge=0, le=24)
    care_email_months: list[int] = Field(default_factory=lambda: [3, 6])
    # Three segments: a reminder must carry amount, dates, consequence, link and hotline.
    sms_segment_budget: int = Field(3, ge=1, le=7)
    elderly_age: int = Field(65, ge=50, le=120)
    send_time: time = time(10, 0)
    # How often premiums fall due (a policy may set its own): reinstatement owes each one.
    payment_period: PaymentPeriod = PaymentPeriod.ANNUAL
    channel_rules: list[ChannelRule] = Field(default_factory=_default_channel_rules)
    fallback_order: dict[Segment, list[Channel]] = Field(default_factory=_default_fallbacks)

    @model_validator(mode="after")
    def _consistent(self) -> ProductRules:
        bad = [k for k in self.care_email_months if not 1 <= k <= self.follow_up_months]
        if bad:
            raise ValueError(f"care_email_months {bad} fall outside follow-up months "
                             f"1..{self.follow_up_months}")
        seen: set[tuple[MessageKind, Segment]] = set()
        for rule in self.channel_rules:
            key = (rule.milestone, rule.segment)
            if key in seen:
                raise ValueError(f"channel_rules has two rules for {key[0]}/{key[1]}")
            seen.add(key)
        if Segment.STANDARD not in self.fallback_order:
            raise ValueError("fallback_order needs an entry for the standard segment")
        return self

    def channels_for(self, milestone: MessageKind, segment: Segment) -> list[Channel]:
        """A milestone's channels for a segment; a segment without a rule of its own uses
        the standard one."""
        by_key = {(r.milestone, r.segment): r.channels for r in self.channel_rules}
        return list(by_key.get((milestone, segment)) or by_key.get(
            (milestone, Segment.STANDARD), []))

    def fallbacks_for(self, segment: Segment) -> list[Channel]:
        return list(self.fallback_order.get(segment) or self.fallback_order[Segment.STANDARD])


# A spoken form is what a voice says: Chinese characters and pauses, nothing to spell out.
_SPOKEN = re.compile(r"^[\u3007\u3400-\u9fff\uf900-\ufaff，、·]{2,40}$")


def _spoken(value: str) -> str:
    if not _SPOKEN.match(value):
        raise ValueError("must be 2-40 Chinese characters (digits, Latin letters and "
                         "brackets written out as they are said)")
    return value


class Product(Model):
    record: Literal["product"] = "product"
    code: Code
    name: str = Field(min_length=1, max_length=60)
    kind: ProductKind
    # The name in SMS and WeChat (derived from `name` when absent) and the name a voice
    # says (derived when absent): see domain/content/naming.py.
    short_name: str | None = Field(None, min_length=2, max_length=12,
                                   pattern=r"^[^\s（）()【】\[\]]+$")
    spoken_name: Annotated[str, AfterValidator(_spoken)] | None = None
    rules: ProductRules = Field(default_factory=ProductRules)

    @model_validator(mode="after")
    def _short_term_not_reinstatable(self) -> Product:
        if self.kind is ProductKind.SHORT_TERM and self.rules.reinstatable:
            raise ValueError("a short_term product cannot be reinstatable "
                             "(set rules.reinstatable to false)")
        return self


# --- customers --------------------------------------------------------------------------


class PostalAddress(Model):
    province: str = Field(min_length=1, max_length=20)
    city: str = Field(min_length=1, max_length=30)
    district: str = Field("", max_length=30)
    street: str = Field(min_length=1, max_length=120)
    postcode: str = Field(pattern=r"^\d{6}$")


class EmergencyContact(Model):
    name: str = Field(min_length=1, max_length=40)
    phone: Phone
    relation: str = Field(min_length=1, max_length=20)


class Customer(Model):
    record: Literal["customer"] = "customer"
    customer_id: Code
    name: str = Field(min_length=1, max_length=60)
    gender: Gender | None = None
    id_number: IdNumber | None = None
    birth_date: date
    mobile: Phone | None = None
    email: Email | None = None
    wechat_openid: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{6,64}$")
    # A member's WeCom userid: 1-64 letters, digits or _-@., starting with a letter or digit.
    wecom_userid: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_@.-]{0,63}$")
    postal_address: PostalAddress | None = None
    emergency_contact: EmergencyContact | None = None
    preferred_channels: list[Channel] = Field(default_factory=list)
    is_organisation: bool = False
    # An organisation's abbreviated name (简称) for SMS, WeChat and voice.
    short_name: str | None = Field(None, min_length=2, max_length=12)

    @field_validator("birth_date")
    @classmethod
    def _plausible_birth(cls, v: date) -> date:
        if v.year < 1900:
            raise ValueError("is before 1900")
        return v

    @model_validator(mode="after")
    def _short_name_for_organisations(self) -> Customer:
        if self.short_name and not self.is_organisation:
            raise ValueError("short_name is for organisations; a person is addressed by "
                             "surname and honorific")
        return self

    def age_on(self, day: date) -> int:
        years = day.year - self.birth_date.year
        if (day.month, day.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years


# --- policies ---------------------------------------------------------------------------


class PaymentMethod(Model):
    kind: PaymentMethodKind
    bank_name: str | None = Field(None, max_length=40)
    # Only the last four digits are ever stored: the full card number is the bank's business.
    card_last4: str | None = Field(None, pattern=r"^\d{4}$")


class PremiumDue(Model):
    due_date: date
    amount: PositiveMoney
    paid_amount: Money = Decimal("0")

    @model_validator(mode="after")
    def _not_overpaid(self) -> PremiumDue:
        if self.paid_amount < 0 or self.paid_amount > self.amount:
            raise ValueError("paid_amount must be between 0 and amount")
        return self

    @property
    def outstanding(self) -> Decimal:
        return self.amount - self.paid_amount


class DebitAttempt(Model):
    attempted_at: Moment
    amount: PositiveMoney
    succeeded: bool
    reason_code: DebitFailureReason | None = None
    reason_text: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _reason_iff_failed(self) -> DebitAttempt:
        if not self.succeeded and self.reason_code is None:
            raise ValueError("a failed debit attempt needs a reason_code")
        return self


class Rescission(Model):
    decided_on: date
    reason: Literal["fraud", "non_disclosure"]


class Policy(Model):
    record: Literal["policy"] = "policy"
    policy_number: PolicyNumber
    product_code: Code
    policyholder_id: Code
    insured_ids: list[Code] = Field(default_factory=list, max_length=1)
    member_ids: list[Code] = Field(default_factory=list, max_length=100_000)
    effective_date: date
    premium: PositiveMoney
    currency: Currency = CURRENCY
    due_date: date
    status: PolicyStatus = PolicyStatus.IN_FORCE
    payment_method: PaymentMethod
    dues: list[PremiumDue] = Field(default_factory=list)
    # Overrides the product's payment period for this policy.
    payment_period: PaymentPeriod | None = None
    debit_attempts: list[DebitAttempt] = Field(default_factory=list)
    rescission: Rescission | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.insured_ids and self.member_ids:
            raise ValueError("a policy has either one insured (insured_ids) or group members "
                             "(member_ids), not both")
        if len(set(self.member_ids)) != len(self.member_ids):
            raise ValueError("member_ids has duplicates")
        if self.due_date < self.effective_date:
            raise ValueError("due_date is before effective_date")
        dates = [d.due_date for d in self.dues]
        if len(set(dates)) != len(dates):
            raise ValueError("dues has two entries for the same due_date")
        return self

    @property
    def is_group(self) -> bool:
        return bool(self.member_ids)

    @property
    def outstanding(self) -> Decimal:
        """What is owed on dues up to and including the current due date."""
        open_dues = [d for d in self.dues if d.due_date <= self.due_date]
        if not open_dues:
            return self.premium
        return sum((d.outstanding for d in open_dues), Decimal("0"))


# --- triggers ---------------------------------------------------------------------------


class DebitFailure(Model):
    """The payload of the `debit_failed` signal, and the detail of a debit-failed trigger."""

    failed_at: Moment
    amount: PositiveMoney
    reason_code: DebitFailureReason
    reason_text: str = Field("", max_length=200)


class Trigger(Model):
    """What starts a journey. Identifiers and amounts only: never personal data."""

    kind: TriggerKind
    policy_number: PolicyNumber
    due_date: date
    amount_due: Money
    currency: Currency = CURRENCY
    debit_failure: DebitFailure | None = None
    rescission_reason: Literal["fraud", "non_disclosure"] | None = None
    # The lapse was the insurer's fault (its system failed, a debit was not attempted
    # on time): reinstatement is then offered without interest.
    insurer_fault: bool = False

    @model_validator(mode="after")
    def _details(self) -> Trigger:
        if self.kind is TriggerKind.DEBIT_FAILED and self.debit_failure is None:
            raise ValueError("a debit_failed trigger needs debit_failure details")
        if self.kind is TriggerKind.RESCISSION and self.rescission_reason is None:
            raise ValueError("a rescission trigger needs rescission_reason")
        if self.kind is not TriggerKind.RESCISSION and self.amount_due <= 0:
            raise ValueError("amount_due must be positive")
        return self


# --- the policy file --------------------------------------------------------------------

PolicyFileRecord = Annotated[Product | Customer | Policy, Field(discriminator="record")]
