"""Rendering a message: pick the template and variant, fill it, check every content rule."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import Field, field_validator

from domain.content import rules
from domain.content.context import MessageContext, Party, Variant
from domain.content.formats import (
    TZ,
    format_amount,
    format_date,
    format_datetime,
    format_rate,
    speak_amount,
    speak_count,
    speak_date,
    speak_datetime,
    speak_digits,
    speak_rate,
)
from domain.content.glossary import words
from domain.content.masking import full_name, mask_policy_number, short_name, spoken_name
from domain.content.naming import spoken_form
from domain.content.rules import ContentRuleError, Violation
from domain.models import Channel, DebitFailureReason, MessageKind, Model

TEMPLATE_DIR = Path(__file__).parent / "templates"

# Markers the templates' el() macro puts around each element; removed before sending.
_OPEN, _SEP, _CLOSE, _SUBJECT_END = "\ue000", "\ue001", "\ue002", "\ue003"
_MARK = re.compile(f"({_OPEN}[a-z_]+{_SEP}|{_CLOSE})")

DEBIT_REASONS = {
    DebitFailureReason.INSUFFICIENT_BALANCE: "账户余额不足",
    DebitFailureReason.CARD_EXPIRED: "银行卡已过期",
    DebitFailureReason.CARD_CANCELLED: "银行卡已注销",
    DebitFailureReason.ACCOUNT_MISMATCH: "账户信息与银行登记不一致",
    DebitFailureReason.OTHER: "银行未能完成扣款",
}
# MISSION 8: an SMS may shorten the reason.
DEBIT_REASONS_SHORT = {
    DebitFailureReason.INSUFFICIENT_BALANCE: "余额不足",
    DebitFailureReason.CARD_EXPIRED: "卡已过期",
    DebitFailureReason.CARD_CANCELLED: "卡已注销",
    DebitFailureReason.ACCOUNT_MISMATCH: "账户信息不符",
    DebitFailureReason.OTHER: "银行未扣款",
}
RESCISSION_REASONS = {
    # Completes "经核查，您投保……时，": the wording of Insurance Law art. 16.
    "non_disclosure": "未如实告知的事项足以影响本公司决定是否同意承保或者提高保险费率",
    "fraud": "故意未履行如实告知义务",
}

_NO_FALLBACK = frozenset({Variant.GROUP_MEMBER, Variant.SHORT_TERM})
_SHORT_TERM_ONLY = frozenset({MessageKind.REENROLMENT_OFFER})
_REINSTATABLE_ONLY = frozenset({MessageKind.FOLLOW_UP, MessageKind.REINSTATEMENT_APPROVED,
                                MessageKind.REINSTATEMENT_REFUSED})


class TemplateSpec(Model):
    """One manifest entry: a template file for one message kind on one channel."""

    id: str
    version: int = Field(ge=1)
    kind: MessageKind
    channel: Channel
    variants: list[Variant] = Field(min_length=1)
    required: list[str]

    @field_validator("required")
    @classmethod
    def _known_elements(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - rules.ELEMENTS)
        if unknown:
            raise ValueError(f"unknown elements {unknown}; known: {sorted(rules.ELEMENTS)}")
        return v

    @property
    def file(self) -> str:
        return f"{self.id}.j2"

    def resolve(self, wanted: Variant) -> Variant:
        """The variant this template renders for `wanted`. Wording falls back to standard,
        except for a group member (the standard text speaks to the payer) and a short-term
        product (the standard text may offer reinstatement, which it cannot have)."""
        if wanted in self.variants:
            return wanted
        if wanted not in _NO_FALLBACK and Variant.STANDARD in self.variants:
            return Variant.STANDARD
        raise ContentRuleError(self.id, [Violation(rule="no_variant", detail=wanted.value)])


class RenderedMessage(Model):
    """The exact text of one message, and which template version made it."""

    template_id: str
    template_version: int
    kind: MessageKind
    channel: Channel
    variant: Variant
    subject: str | None = None  # e-mail subject, letter title
    body: str
    fields: dict[str, str] | None = None  # WeChat template fields, keyed as in the template
    link: str | None = None  # where a WeChat message opens
    segments: int | None = None  # SMS only


class TemplateSet:
    """The templates of one directory, checked against its manifest when loaded."""

    def __init__(self, directory: Path) -> None:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
        specs = [TemplateSpec.model_validate(t) for t in manifest["templates"]]
        self.specs = {(s.kind, s.channel): s for s in specs}
        problems = _manifest_problems(directory, specs)
        if set(manifest.get("elements", {})) != rules.ELEMENTS:
            problems.append("the manifest's elements must describe exactly rules.ELEMENTS")
        if len(self.specs) != len(specs):
            problems.append("two templates for the same kind and channel")
        if problems:
            raise ValueError(f"templates in {directory} are inconsistent: " + "; ".join(problems))
        self.env = Environment(
            loader=FileSystemLoader(directory), undefined=StrictUndefined, autoescape=False,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
        self.env.globals.update(MARK_OPEN=_OPEN, MARK_SEP=_SEP, MARK_CLOSE=_CLOSE,
                                SUBJECT_END=_SUBJECT_END)

    def spec(self, kind: MessageKind, channel: Channel) -> TemplateSpec:
        try:
            return self.specs[(kind, channel)]
        except KeyError:
            raise ContentRuleError(f"{kind.value}.{channel.value}",
                                   [Violation(rule="no_template")]) from None

    def channels(self, kind: MessageKind) -> list[Channel]:
        return [c for (k, c) in self.specs if k is kind]


def _manifest_problems(directory: Path, specs: list[TemplateSpec]) -> list[str]:
    problems = []
    for s in specs:
        if s.id != f"{s.kind.value}.{s.channel.value}":
            problems.append(f"{s.id}: id must be kind.channel")
        if not (directory / s.file).is_file():
            problems.append(f"{s.id}: {s.file} is missing")
        missing = rules.KIND_ELEMENTS[s.kind] - set(s.required)
        if missing:
            problems.append(f"{s.id}: required lacks {sorted(missing)}")
    listed = {s.file for s in specs}
    stray = [p.name for p in directory.glob("*.j2")
             if not p.name.startswith("_") and p.name not in listed]
    if stray:
        problems.append(f"not in the manifest: {sorted(stray)}")
    return problems


@cache
def default_templates() -> TemplateSet:
    return TemplateSet(TEMPLATE_DIR)


# --- the values a template sees ------------------------------------------------------------

def _opt(fmt: Callable[[Any], str], value: Any) -> str | None:
    return None if value is None else fmt(value)


def _display(party: Party, channel: Channel, masked: bool, addressed: bool) -> str:
    """How a person is named: in full in letters, surname and honorific where masked.
    A voice cannot say 先生/女士; it greets someone of unknown gender as 客户."""
    if party.is_organisation:
        # An organisation's name is not personal data: in full on paper, its short name
        # where space is short, and its digits and letters in words on the phone.
        name = party.short_name or party.name if masked else party.name
        return spoken_form(name) if channel is Channel.VOICE else name
    if channel is Channel.VOICE:
        return "客户" if addressed and party.gender is None else spoken_name(party.name,
                                                                            party.gender)
    return short_name(party.name, party.gender) if masked else full_name(party.name,
                                                                         party.gender)


def _policy_display(kind: MessageKind, channel: Channel, policy_number: str) -> str:
    """尾号1234 in SMS and voice (as customers know it), AT****1234 where a field or a public
    list needs a number, the full number in letters, e-mails and agent scripts."""
    tail = policy_number[-4:]
    if channel is Channel.VOICE:
        return f"尾号{speak_digits(tail)}"
    if channel is Channel.SMS:
        return f"尾号{tail}"
    if channel in rules.MASKED_CHANNELS or kind in rules.ALWAYS_MASKED_KINDS:
        return mask_policy_number(policy_number)
    return policy_number


def build_view(kind: MessageKind, channel: Channel, ctx: MessageContext,
               variant: Variant) -> dict[str, Any]:
    """Every value a template may print, already masked and formatted for the channel."""
    masked = channel in rules.MASKED_CHANNELS or kind in rules.ALWAYS_MASKED_KINDS
    spoken = channel is Channel.VOICE
    day: Callable[[date], str] = speak_date if spoken else format_date
    money: Callable[[Decimal], str] = speak_amount if spoken else format_amount
    count: Callable[[int], str] = speak_count if spoken else str
    # Chat-sized channels carry the short name, a voice the spoken one, paper the full one.
    product = {Channel.SMS: ctx.product_short_name, Channel.WECHAT: ctx.product_short_name,
               Channel.WECOM: ctx.product_short_name,
               Channel.VOICE: ctx.product_spoken_name}.get(channel, ctx.product_name)
    insurer = ctx.insurer
    debit = None
    if ctx.debit_failure is not None:
        f = ctx.debit_failure
        card = f.card_last4 and (f"尾号{speak_digits(f.card_last4)}" if spoken
                                 else f"尾号{f.card_last4}")
        debit = {
            "at": (speak_datetime if spoken else format_datetime)(f.failed_at),
            "date": day(f.failed_at.astimezone(TZ).date()),
            "amount": money(f.amount),
            "reason": DEBIT_REASONS[f.reason_code],
            "reason_short": DEBIT_REASONS_SHORT[f.reason_code],
            "card": card or None,
            "bank": f.bank_name,
        }
    quote = ctx.reinstatement_quote and {
        "back_premium": money(ctx.reinstatement_quote.back_premium),
        "interest": money(ctx.reinstatement_quote.interest),
        "total": money(ctx.reinstatement_quote.total),
    }
    pay_link = (insurer.payment_link_base + ctx.payment_token if ctx.payment_token
                else insurer.online_service_url)
    return {
        "kind": kind.value,
        "channel": channel.value,
        "variant": variant.value,
        "elderly": variant is Variant.ELDERLY,
        "group_employer": variant is Variant.GROUP_EMPLOYER,
        "group_member": variant is Variant.GROUP_MEMBER,
        "short_term": ctx.short_term,
        "hardship": ctx.hardship and not ctx.short_term,
        "insurer_fault": ctx.insurer_fault,
        "name": _display(ctx.recipient, channel, masked, addressed=True),
        "holder": _display(ctx.policyholder, channel, masked, addressed=False),
        "policy": _policy_display(kind, channel, ctx.policy_number),
        "product": product,
        "amount": _opt(money, ctx.amount_due),
        "paid_amount": _opt(money, ctx.paid_amount),
        "due_date": _opt(day, ctx.due_date),
        "grace_ends_on": _opt(day, ctx.grace_ends_on),
        "lapses_on": _opt(day, ctx.lapses_on),
        "reinstatement_deadline": _opt(day, ctx.reinstatement_deadline),
        "rescinded_on": _opt(day, ctx.rescinded_on),
        "paid_on": _opt(day, ctx.paid_on),
        "reinstated_on": _opt(day, ctx.reinstated_on),
        "issued_on": day(ctx.issued_on),
        "years": count(ctx.reinstatement_years),
        "rate": _opt(speak_rate if spoken else format_rate, ctx.interest_rate),
        "quote": quote,
        "debit": debit,
        "rescission_reason": _opt(RESCISSION_REASONS.get, ctx.rescission_reason),
        "fraud": ctx.rescission_reason == "fraud",
        "group_size": _opt(count, ctx.group_size),
        "month": _opt(count, ctx.follow_up_month),
        "pay_link": pay_link,
        "hotline": speak_digits(insurer.hotline) if spoken else insurer.hotline,
        "online": insurer.online_service_spoken if spoken else insurer.online_service_url,
        "online_spoken": insurer.online_service_spoken,
        "branch_address": insurer.branch_address,
        "branch_hours": insurer.branch_hours,
        "insurer": insurer.short_name,
        "legal_name": insurer.legal_name,
        "department": insurer.service_department,
        "signature": insurer.sms_signature,
        "words": words(ctx.short_term),
    }


# --- rendering and checking -----------------------------------------------------------------

_NEEDS: dict[MessageKind, tuple[str, ...]] = {
    MessageKind.FIRST_REMINDER: ("amount_due", "due_date", "grace_ends_on", "lapses_on"),
    MessageKind.SECOND_REMINDER: ("amount_due", "grace_ends_on", "lapses_on"),
    MessageKind.LAPSE_NOTICE: ("lapses_on",),
    MessageKind.FOLLOW_UP: ("lapses_on", "reinstatement_deadline"),
    MessageKind.REENROLMENT_OFFER: ("lapses_on",),
    MessageKind.RESCISSION_NOTICE: ("rescission_reason", "rescinded_on"),
    MessageKind.PAYMENT_CONFIRMATION: ("paid_amount", "paid_on"),
    MessageKind.PAYMENT_AFTER_LAPSE: ("paid_amount", "lapses_on"),
    MessageKind.REINSTATEMENT_APPROVED: ("reinstated_on",),
    MessageKind.REINSTATEMENT_REFUSED: ("lapses_on",),
    MessageKind.BIND_CARD: ("debit_failure",),
}
"""Context fields a kind cannot be rendered without."""
_NEEDS_WHEN_REINSTATABLE = frozenset({MessageKind.LAPSE_NOTICE, MessageKind.PAYMENT_AFTER_LAPSE})


def required_context(kind: MessageKind, ctx: MessageContext) -> list[str]:
    """The context fields `kind` needs that `ctx` lacks (empty when it can be rendered)."""
    needs = list(_NEEDS.get(kind, ()))
    if kind in _NEEDS_WHEN_REINSTATABLE and not ctx.short_term:
        needs.append("reinstatement_deadline")
    return [f for f in needs if getattr(ctx, f) is None]


def _extract(text: str, found: dict[str, str], template_id: str) -> str:
    """Remove the element markers, collecting what each element said."""
    clean = ""
    open_elements: list[tuple[str, int]] = []
    for piece in _MARK.split(text):
        if piece.startswith(_OPEN):
            open_elements.append((piece[1:-1], len(clean)))
        elif piece == _CLOSE:
            if not open_elements:
                raise ContentRuleError(template_id, [Violation(rule="unbalanced_element")])
            name, start = open_elements.pop()
            found[name] = found.get(name, "") + clean[start:]
        else:
            clean += piece
    if open_elements:
        raise ContentRuleError(template_id, [Violation(rule="unbalanced_element",
                                                       detail=open_elements[-1][0])])
    return clean


_URL_THEN_TEXT = re.compile(r"(https?://[\x21-\x7e]+?)(?=[^\x21-\x7e\s])")


def _space_after_links(text: str) -> str:
    """A link is followed by a space, so that phones do not read on into the next word."""
    return _URL_THEN_TEXT.sub(lambda m: m.group(1) + " ", text)


def _one_line(text: str) -> str:
    """SMS, WeChat values and voice: one run of text; template line breaks are layout."""
    return _space_after_links("".join(line.strip() for line in text.splitlines()))


def _paragraphs(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return _space_after_links(re.sub(r"\n{3,}", "\n\n", "\n".join(lines)))


def _link(kind: MessageKind, channel: Channel, variant: Variant, view: dict[str, Any],
          ctx: MessageContext) -> str | None:
    """Where a WeChat or WeCom message opens: the payment page (where a card is bound too)
    for a first reminder (on WeCom only for the employer, who pays) and the bind-a-new-card
    message, else the online service."""
    if channel not in (Channel.WECHAT, Channel.WECOM):
        return None
    payer = channel is Channel.WECHAT or variant is not Variant.GROUP_MEMBER
    if kind is MessageKind.BIND_CARD or (kind is MessageKind.FIRST_REMINDER and payer):
        return view["pay_link"]
    return ctx.insurer.online_service_url


def _compose(kind: MessageKind, channel: Channel, ctx: MessageContext, templates: TemplateSet
             ) -> tuple[RenderedMessage, TemplateSpec, dict[str, Any], dict[str, str]]:
    spec = templates.spec(kind, channel)
    if kind in (_SHORT_TERM_ONLY if not ctx.short_term else _REINSTATABLE_ONLY):
        # A long-term policy is reinstated, never re-enrolled; a short-term one the reverse.
        raise ContentRuleError(spec.id, [Violation(rule="not_for_product",
                                                   detail=ctx.product_kind.value)])
    variant = spec.resolve(ctx.variant)
    missing = required_context(kind, ctx)
    if missing:
        raise ContentRuleError(spec.id, [Violation(rule="missing_context", detail=f)
                                         for f in missing])
    view = build_view(kind, channel, ctx, variant)
    raw = templates.env.get_template(spec.file).render(view)
    tidy = _one_line if channel in (Channel.SMS, Channel.VOICE) else _paragraphs
    raw_elements: dict[str, str] = {}
    subject = None
    if _SUBJECT_END in raw:
        head, raw = raw.split(_SUBJECT_END, 1)
        subject = _one_line(_extract(head, raw_elements, spec.id))
    fields = None
    if channel is Channel.WECHAT:
        # Each line of a WeChat template is `key|label|value`.
        fields, lines = {}, []
        for line in filter(None, (ln.strip() for ln in raw.splitlines())):
            key, label, value = line.split("|", 2)
            fields[key] = _one_line(_extract(value, raw_elements, spec.id))
            lines.append(f"{label}：{fields[key]}")
        body = "\n".join(lines)
    else:
        body = tidy(_extract(raw, raw_elements, spec.id))
    elements = {name: _one_line(text) for name, text in raw_elements.items()}
    message = RenderedMessage(
        template_id=spec.id, template_version=spec.version, kind=kind, channel=channel,
        variant=variant, subject=subject, body=body, fields=fields,
        link=_link(kind, channel, variant, view, ctx),
        segments=rules.sms_segments(body) if channel is Channel.SMS else None)
    return message, spec, view, elements


def _violations(message: RenderedMessage, spec: TemplateSpec, ctx: MessageContext,
                view: dict[str, Any], elements: dict[str, str]) -> list[Violation]:
    kind, channel = message.kind, message.channel
    text = "\n".join(filter(None, (message.subject, message.body, message.link)))
    found = rules.check_elements(
        elements,
        rules.required_elements(kind, channel, message.variant, ctx, spec.required),
        rules.element_expectations(kind, channel, ctx, view))
    found += rules.check_forbidden_words(text)
    shows_full_number = view["policy"] == ctx.policy_number
    found += rules.check_pii(text, [ctx.policy_number] if shows_full_number else [])
    found += rules.check_rendered(text)
    if channel is Channel.SMS:
        found += rules.check_sms_length(message.body, ctx.sms_segment_budget)
    found += rules.check_stilted(text)
    found += rules.check_glossary(text, short_term=ctx.short_term,
                                  rescission=kind is MessageKind.RESCISSION_NOTICE)
    found += rules.check_brackets(text)
    found += rules.check_amounts(text)
    found += rules.check_places(text)
    if channel is Channel.VOICE:
        found += rules.check_speakable(text, names=[
            view["name"], view["holder"]] if not ctx.recipient.is_organisation else [])
    if message.fields is not None:
        found += rules.check_wechat_fields(message.fields)
    if channel is Channel.WECOM:
        found += rules.check_wecom_length(message.subject, message.body, message.link)
    amounts = [view["amount"], view["paid_amount"]]
    if kind is MessageKind.EMERGENCY_CONTACT:
        policy = [ctx.policy_number, mask_policy_number(ctx.policy_number),
                  f"尾号{ctx.policy_number[-4:]}", view["policy"]]
        found += rules.check_emergency_contact(text, [ctx.product_name, *policy, *amounts])
    if kind is MessageKind.PUBLIC_NOTICE:
        found += rules.check_public_notice(text, [ctx.product_name, *amounts])
    return found


def _kind(kind: MessageKind | str) -> MessageKind:
    return MessageKind(str(kind))


def check_message(kind: MessageKind | str, channel: Channel,
                  ctx: MessageContext, templates: TemplateSet | None = None
                  ) -> tuple[RenderedMessage, list[Violation]]:
    """Render and report every broken rule instead of raising on them.

    Still raises ContentRuleError when there is nothing to check: no template for the
    kind and channel, no wording for the variant, or a context field the kind needs."""
    message, spec, view, elements = _compose(_kind(kind), channel, ctx,
                                             templates or default_templates())
    return message, _violations(message, spec, ctx, view, elements)


def render_message(kind: MessageKind | str, channel: Channel,
                   ctx: MessageContext, templates: TemplateSet | None = None
                   ) -> RenderedMessage:
    """The message to send, or ContentRuleError naming the template and the rules broken."""
    message, violations = check_message(kind, channel, ctx, templates)
    if violations:
        raise ContentRuleError(message.template_id, violations)
    return message


def available_channels(kind: MessageKind | str,
                       templates: TemplateSet | None = None) -> list[Channel]:
    """The channels that have a template for `kind` (WeChat only for important notices)."""
    return (templates or default_templates()).channels(_kind(kind))
