"""What a message is about, for whom, as plain values: the only input of rendering."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from domain.content.config import InsurerContact
from domain.content.masking import gender_from_id_number
from domain.content.naming import short_product_name, spoken_product_name
from domain.models import (
    Currency,
    Customer,
    DebitFailureReason,
    EmergencyContact,
    Gender,
    Model,
    Money,
    Policy,
    PolicyNumber,
    Product,
    ProductKind,
    Role,
    Segment,
    Trigger,
    TriggerKind,
)
from domain.plan import JourneyPlan
from domain.reinstatement import ReinstatementQuote


class Variant(StrEnum):
    """The wording a template uses for its reader. Facts (a failed debit, hardship, a
    short-term product) also shape the text of every variant; the variant is the voice."""

    STANDARD = "standard"
    ELDERLY = "elderly"
    GROUP_EMPLOYER = "group_employer"
    GROUP_MEMBER = "group_member"
    HARDSHIP = "hardship"
    DEBIT_FAILED = "debit_failed"
    SHORT_TERM = "short_term"


class Party(Model):
    """A person or organisation named in a message."""

    name: str = Field(min_length=1, max_length=60)
    gender: Gender | None = None
    is_organisation: bool = False
    short_name: str | None = Field(None, max_length=12)  # an organisation's, for short channels


class Recipient(Party):
    role: Role


class DebitFailureDetail(Model):
    failed_at: datetime
    amount: Money
    reason_code: DebitFailureReason
    card_last4: str | None = Field(None, pattern=r"^\d{4}$")
    bank_name: str | None = Field(None, max_length=40)


class MessageContext(Model):
    """Everything a template may say. Holds no ID or card number: messages never need them."""

    policy_number: PolicyNumber
    product_name: str = Field(min_length=1, max_length=60)
    product_short_name: str = Field(min_length=1, max_length=60)  # SMS and WeChat
    product_spoken_name: str = Field(min_length=1, max_length=120)  # voice
    product_kind: ProductKind
    trigger: TriggerKind
    recipient: Recipient
    policyholder: Party
    variant: Variant = Variant.STANDARD
    hardship: bool = False
    issued_on: date  # the day the message goes out; letters carry it
    currency: Currency = "CNY"
    amount_due: Money | None = None  # what is still outstanding
    due_date: date | None = None
    grace_ends_on: date | None = None
    lapses_on: date | None = None
    reinstatement_deadline: date | None = None
    reinstatement_years: int = Field(2, ge=0, le=10)
    interest_rate: Decimal | None = None
    insurer_fault: bool = False  # reinstatement without interest (section 5)
    reinstatement_quote: ReinstatementQuote | None = None
    debit_failure: DebitFailureDetail | None = None
    rescission_reason: Literal["fraud", "non_disclosure"] | None = None
    rescinded_on: date | None = None
    paid_amount: Money | None = None
    paid_on: date | None = None
    reinstated_on: date | None = None
    follow_up_month: int | None = Field(None, ge=1, le=24)
    group_size: int | None = Field(None, ge=1)
    payment_token: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{6,40}$")
    sms_segment_budget: int = Field(2, ge=1, le=7)
    insurer: InsurerContact = Field(default_factory=InsurerContact)

    @field_validator("amount_due", "paid_amount")
    @classmethod
    def _not_negative(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and v < 0:
            raise ValueError("must not be negative")
        return v

    @property
    def short_term(self) -> bool:
        return self.product_kind is ProductKind.SHORT_TERM


def select_variant(role: Role, product_kind: ProductKind, segments: Sequence[Segment],
                   trigger: TriggerKind) -> Variant:
    """One variant per message, by precedence: who reads it first, then their situation."""
    if role is Role.GROUP_EMPLOYER:
        return Variant.GROUP_EMPLOYER
    if role is Role.GROUP_MEMBER:
        return Variant.GROUP_MEMBER
    if Segment.ELDERLY in segments:
        return Variant.ELDERLY
    if product_kind is ProductKind.SHORT_TERM:
        return Variant.SHORT_TERM
    if Segment.HARDSHIP in segments:
        return Variant.HARDSHIP
    if trigger is TriggerKind.DEBIT_FAILED:
        return Variant.DEBIT_FAILED
    return Variant.STANDARD


def _party(person: Customer | EmergencyContact) -> Party:
    if isinstance(person, EmergencyContact):
        return Party(name=person.name)
    gender = person.gender
    if gender is None and person.id_number and not person.is_organisation:
        gender = gender_from_id_number(person.id_number)
    return Party(name=person.name, gender=gender, is_organisation=person.is_organisation,
                 short_name=person.short_name)


def build_context(
    *,
    policy: Policy,
    product: Product,
    trigger: Trigger,
    plan: JourneyPlan,
    recipient: Customer | EmergencyContact,
    issued_on: date,
    role: Role = Role.POLICYHOLDER,
    policyholder: Customer | None = None,
    variant: Variant | None = None,
    amount_due: Decimal | None = None,
    payment_token: str | None = None,
    reinstatement_quote: ReinstatementQuote | None = None,
    follow_up_month: int | None = None,
    insurer: InsurerContact | None = None,
) -> MessageContext:
    """The context of one recipient's messages on a journey, from the domain records.

    `policyholder` is needed when the recipient is not the policyholder (a group member,
    an emergency contact); `amount_due` defaults to the trigger's amount.
    """
    if isinstance(recipient, EmergencyContact) and role is not Role.EMERGENCY_CONTACT:
        raise ValueError("an EmergencyContact recipient needs role=emergency_contact")
    holder = policyholder if policyholder is not None else recipient
    if isinstance(holder, EmergencyContact):
        raise ValueError("pass the policyholder (a Customer) for an emergency-contact message")
    rules = product.rules
    debit = None
    if trigger.debit_failure is not None:
        failure = trigger.debit_failure
        debit = DebitFailureDetail(
            failed_at=failure.failed_at, amount=failure.amount, reason_code=failure.reason_code,
            card_last4=policy.payment_method.card_last4,
            bank_name=policy.payment_method.bank_name)
    due = trigger.amount_due if amount_due is None else amount_due
    return MessageContext(
        policy_number=policy.policy_number,
        product_name=product.name,
        product_short_name=short_product_name(product),
        product_spoken_name=spoken_product_name(product),
        product_kind=product.kind,
        trigger=trigger.kind,
        recipient=Recipient(**_party(recipient).model_dump(), role=role),
        policyholder=_party(holder),
        variant=variant or select_variant(role, product.kind, plan.segments, trigger.kind),
        hardship=Segment.HARDSHIP in plan.segments,
        issued_on=issued_on,
        currency=trigger.currency,
        amount_due=due if due > 0 else None,
        due_date=plan.due_date,
        grace_ends_on=plan.grace_ends_on,
        lapses_on=plan.lapses_on,
        reinstatement_deadline=plan.reinstatement_deadline,
        reinstatement_years=rules.reinstatement_years,
        interest_rate=rules.reinstatement_interest_rate,
        insurer_fault=trigger.insurer_fault,
        reinstatement_quote=reinstatement_quote,
        debit_failure=debit,
        rescission_reason=trigger.rescission_reason,
        # A rescission takes effect when the notice reaches the policyholder, unless decided.
        rescinded_on=(policy.rescission.decided_on if policy.rescission else
                      issued_on if trigger.kind is TriggerKind.RESCISSION else None),
        follow_up_month=follow_up_month,
        group_size=len(policy.member_ids) or None,
        payment_token=payment_token,
        sms_segment_budget=rules.sms_segment_budget,
        insurer=insurer or InsurerContact(),
    )
