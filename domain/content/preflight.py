"""Checks at load time that every message a product, customer or company setting can
produce renders within every content rule, so that a rule breaks when a file is loaded,
never when a message is due.

A product is rendered through every template and variant with the worst values it can
meet: the longest dates, amounts up to WORST_AMOUNT (or its largest premium), a failed
debit with the longest reason, and addressees as long as a customer may be (a customer
longer than that is refused by `customer_problems`). Problems name the template and the
rule, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache

from domain.calendar import add_years
from domain.content.config import PAYMENT_TOKEN_LENGTH, InsurerContact
from domain.content.context import (
    DebitFailureDetail,
    MessageContext,
    Party,
    Recipient,
    Role,
    select_variant,
)
from domain.content.formats import TZ, format_date
from domain.content.masking import short_name
from domain.content.naming import (
    SHORT_NAME_MAX,
    is_speakable,
    short_product_name,
    spoken_form,
    spoken_product_name,
)
from domain.content.render import (
    TemplateSet,
    check_message,
    default_templates,
    required_context,
)
from domain.content.rules import ContentRuleError, sms_length
from domain.models import (
    Channel,
    Customer,
    DebitFailureReason,
    MessageKind,
    Product,
    ProductKind,
    Segment,
    TriggerKind,
)
from domain.plan import CompanyRules, SendWindow
from domain.reinstatement import Due, reinstatement_quote

WORST_AMOUNT = Decimal("999999.99")  # or a product's largest premium, when higher
# How long an addressee may be in short channels (surname and honorific, or an
# organisation's name, which a WeChat `thing` field holds at most 20 of).
PERSON_NAME_MAX = 9  # 爱新觉罗先生/女士
ORGANISATION_NAME_MAX = 12
_WORST_PERSON = Party(name="爱新觉罗·某某")  # no gender: the longest honorific
_WORST_ORGANISATION = Party(name="某" * 60, short_name="某" * ORGANISATION_NAME_MAX,
                            is_organisation=True)
_NO_SUCH_MESSAGE = ("not_for_product", "no_variant")


@dataclass(frozen=True)
class Problem:
    """One rule broken: where (a template, a field) and which rule, without the value."""

    where: str
    rule: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.where} breaks {self.rule}" + (f" ({self.detail})" if self.detail else "")


def _worst_dates(product: Product) -> tuple[date, date, date, date]:
    """The due date (in 2026-2027) whose grace end, lapse date and deadline make the
    longest text: two-digit months and days where the grace period allows them."""
    rules = product.rules

    def dates(due: date) -> tuple[date, date, date, date]:
        grace = due + timedelta(days=rules.grace_days)
        lapses = grace + timedelta(days=1)
        return due, grace, lapses, add_years(lapses, max(rules.reinstatement_years, 1))

    days = (date(2026, 1, 1) + timedelta(days=n) for n in range(730))
    return max((dates(d) for d in days),
               key=lambda ds: sum(len(format_date(d)) for d in ds))


def _contexts(product: Product, insurer: InsurerContact, amount: Decimal
              ) -> Iterator[MessageContext]:
    """One context per reader, segment and trigger the product can meet."""
    due, grace, lapses, deadline = _worst_dates(product)
    short_term = product.kind is ProductKind.SHORT_TERM
    reinstatable = product.rules.reinstatable and not short_term
    quote = reinstatement_quote([Due(due_date=due, amount=amount)],
                                rate=product.rules.reinstatement_interest_rate,
                                on=deadline, insurer_fault=False,
                                deadline=deadline) if reinstatable else None
    debit = DebitFailureDetail(
        failed_at=datetime.combine(due, time(10, 10), TZ), amount=amount,
        reason_code=DebitFailureReason.ACCOUNT_MISMATCH, card_last4="6789",
        bank_name="中国工商银行股份有限公司")
    readers = [(Role.POLICYHOLDER, _WORST_PERSON, _WORST_PERSON),
               (Role.GROUP_EMPLOYER, _WORST_ORGANISATION, _WORST_ORGANISATION),
               (Role.GROUP_MEMBER, _WORST_PERSON, _WORST_ORGANISATION),
               (Role.EMERGENCY_CONTACT, _WORST_PERSON, _WORST_PERSON)]
    plain = TriggerKind.RENEWAL_UNPAID if short_term else TriggerKind.PREMIUM_OVERDUE
    # Only what changes a text: a group's readers have one wording whatever their age,
    # the employer's mentions hardship, insurer fault only changes the policyholder's.
    segment_sets = {
        Role.POLICYHOLDER: ([Segment.STANDARD], [Segment.ELDERLY, Segment.HARDSHIP],
                            [Segment.HARDSHIP]),
        Role.GROUP_EMPLOYER: ([Segment.STANDARD], [Segment.HARDSHIP]),
        Role.GROUP_MEMBER: ([Segment.STANDARD],),
        Role.EMERGENCY_CONTACT: ([Segment.STANDARD], [Segment.ELDERLY]),
    }
    for role, reader, holder in readers:
        for segments in segment_sets[role]:
            for trigger in (plain, TriggerKind.DEBIT_FAILED, TriggerKind.RESCISSION):
                faults = ((False, True) if trigger is plain and reinstatable
                          and role is Role.POLICYHOLDER else (False,))
                for fault in faults:
                    yield MessageContext(
                        policy_number="P" + "9" * 17, product_name=product.name,
                        product_short_name=short_product_name(product),
                        product_spoken_name=spoken_product_name(product),
                        product_kind=product.kind, trigger=trigger,
                        recipient=Recipient(**reader.model_dump(), role=role),
                        policyholder=holder,
                        variant=select_variant(role, product.kind, segments, trigger),
                        hardship=Segment.HARDSHIP in segments, issued_on=deadline,
                        amount_due=amount, due_date=due, grace_ends_on=grace, lapses_on=lapses,
                        reinstatement_deadline=deadline if reinstatable else None,
                        reinstatement_years=product.rules.reinstatement_years,
                        interest_rate=product.rules.reinstatement_interest_rate,
                        insurer_fault=fault, reinstatement_quote=quote,
                        debit_failure=debit if trigger is TriggerKind.DEBIT_FAILED else None,
                        rescission_reason="non_disclosure"
                        if trigger is TriggerKind.RESCISSION else None,
                        rescinded_on=deadline, paid_amount=amount, paid_on=deadline,
                        reinstated_on=deadline, follow_up_month=product.rules.follow_up_months
                        or 1, group_size=100_000, payment_token="x" * PAYMENT_TOKEN_LENGTH,
                        sms_segment_budget=product.rules.sms_segment_budget, insurer=insurer)


def _kinds_for(ctx: MessageContext) -> Iterable[MessageKind]:
    """The messages this reader can get in this situation (not a bind-a-new-card message
    without a failed debit, for one)."""
    if ctx.recipient.role is Role.EMERGENCY_CONTACT:
        return [MessageKind.EMERGENCY_CONTACT]
    if ctx.trigger is TriggerKind.RESCISSION:
        return [MessageKind.RESCISSION_NOTICE]
    return [k for k in MessageKind if k not in (MessageKind.EMERGENCY_CONTACT,
                                                MessageKind.RESCISSION_NOTICE)
            and not required_context(k, ctx)]


def message_problems(product: Product, insurer: InsurerContact | None = None,
                     largest_amount: Decimal | None = None,
                     templates: TemplateSet | None = None) -> list[Problem]:
    """Every content rule a message of `product` would break, once per template and rule."""
    amount = max(WORST_AMOUNT, largest_amount or Decimal("0"))
    if templates is not None:
        return _message_problems(product, insurer or InsurerContact(), amount, templates)
    # The same product is loaded again and again (tests, reloads): check it once.
    return list(_default_message_problems(product.model_dump_json(),
                                          (insurer or InsurerContact()).model_dump_json(),
                                          amount))


@lru_cache(maxsize=256)
def _default_message_problems(product: str, insurer: str, amount: Decimal
                              ) -> tuple[Problem, ...]:
    return tuple(_message_problems(Product.model_validate_json(product),
                                   InsurerContact.model_validate_json(insurer), amount,
                                   default_templates()))


def _message_problems(product: Product, insurer: InsurerContact, amount: Decimal,
                      templates: TemplateSet) -> list[Problem]:
    found: dict[tuple[str, str], Problem] = {}
    for ctx in _contexts(product, insurer, amount):
        for kind in _kinds_for(ctx):
            for channel in templates.channels(kind):
                try:
                    message, violations = check_message(kind, channel, ctx, templates)
                except ContentRuleError as err:
                    if err.rule in _NO_SUCH_MESSAGE:
                        continue
                    message, violations = None, err.violations
                    template_id = err.template_id
                else:
                    template_id = message.template_id
                for v in violations:
                    found.setdefault((template_id, v.rule), Problem(template_id, v.rule,
                                                                    v.detail))
    return list(found.values())


def _addressing(short: str, limit: int, too_long: Problem, spoken: str,
                unspeakable: Problem) -> list[Problem]:
    """A name as short channels write it must fit; as a voice says it, be speakable."""
    return (([too_long] if len(short) > limit else [])
            + ([] if is_speakable(spoken) else [unspeakable]))


def name_problems(product: Product) -> list[Problem]:
    """The product's own names: a short name that fits short channels, a spoken form."""
    short = short_product_name(product)
    derived = "derived from name, " if not product.short_name else ""
    return _addressing(
        short, SHORT_NAME_MAX,
        Problem("short_name", "short_name_too_long",
                f"{derived}{len(short)} characters, at most {SHORT_NAME_MAX}: set short_name"),
        spoken_product_name(product),
        Problem("spoken_name", "not_speakable", "cannot be derived from name: set spoken_name"))


def _channels_used(product: Product) -> set[Channel]:
    rules = product.rules
    used = {c for r in rules.channel_rules for c in r.channels}
    used |= {c for order in rules.fallback_order.values() for c in order}
    if rules.care_email_months:
        used |= {Channel.EMAIL, Channel.LETTER}
    return used


def _inside(moment: time, window: SendWindow) -> bool:
    return window.start <= moment < window.end


def send_time_problems(product: Product, company: CompanyRules | None = None) -> list[Problem]:
    """MISSION 8: a product's send time lies inside the window of every channel it uses
    (otherwise a milestone would move, and the second reminder must never move later)."""
    company = company or CompanyRules()
    send_time = product.rules.send_time
    missing = [c.value for c in sorted(_channels_used(product)) if c not in company.send_windows]
    if missing:
        return [Problem("rules.send_time", "no_send_window", ", ".join(missing))]
    outside = [f"{c.value} {w.start:%H:%M}-{w.end:%H:%M}"
               for c in sorted(_channels_used(product))
               if not _inside(send_time, w := company.send_windows[c])]
    if outside:
        return [Problem("rules.send_time", "outside_send_window",
                        f"{send_time:%H:%M} is outside the window of {', '.join(outside)}")]
    return []


def product_problems(product: Product, insurer: InsurerContact | None = None,
                     company: CompanyRules | None = None,
                     largest_amount: Decimal | None = None) -> list[Problem]:
    """Everything that would stop a message of `product` from going out."""
    names = name_problems(product)
    return (names + send_time_problems(product, company)
            + ([] if names else message_problems(product, insurer, largest_amount)))


def customer_problems(customer: Customer) -> list[Problem]:
    """A customer's name must fit how the product checks address people."""
    if customer.is_organisation:
        addressed = customer.short_name or customer.name
        return _addressing(
            addressed, ORGANISATION_NAME_MAX,
            Problem("name", "name_too_long",
                    f"SMS, WeChat and voice address an organisation by its name: at most "
                    f"{ORGANISATION_NAME_MAX} characters, or set short_name"),
            spoken_form(addressed), Problem("name", "not_speakable", "voice cannot say it"))
    addressed = short_name(customer.name, customer.gender)
    if sms_length(addressed) > PERSON_NAME_MAX:
        return [Problem("name", "name_too_long",
                        f"addressed as surname and honorific in SMS and WeChat: at most "
                        f"{PERSON_NAME_MAX} characters")]
    return []


def insurer_problems(insurer: InsurerContact) -> list[Problem]:
    """The company's own settings (hotline, signature, addresses...) in every template, with
    a reference product whose names are as long as a product's may be."""
    reference = Product(code="REFERENCE", name="辰" * SHORT_NAME_MAX, kind=ProductKind.LONG_TERM)
    short = reference.model_copy(update={
        "code": "REFERENCE-ST", "kind": ProductKind.SHORT_TERM,
        "rules": reference.rules.model_copy(update={"reinstatable": False})})
    found = {(p.where, p.rule): p for product in (reference, short)
             for p in message_problems(product, insurer)}
    return list(found.values())
