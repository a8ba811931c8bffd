"""The exact text of every message of a journey plan, for review before the journey starts."""

from __future__ import annotations

from collections.abc import Sequence

from domain.content import (
    ContentRuleError,
    MessageContext,
    MessageKind,
    RenderedMessage,
    Role,
    TemplateSet,
    Violation,
    check_message,
)
from domain.models import Channel
from domain.plan import TZ, JourneyPlan

_WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_INDENT = "    "


def messages_preview(plan: JourneyPlan, contexts: Sequence[MessageContext],
                     templates: TemplateSet | None = None) -> str:
    """Every message of every milestone, for each recipient context (the policyholder, each
    group member, ...), as it would be sent on that day; broken rules are shown, not raised.
    An emergency contact's context gets the one message it may ever receive, at the end."""
    lines = [f"messages for policy {plan.policy_number}  trigger {plan.trigger}  "
             f"segments {', '.join(plan.segments)}"]
    readers = [c for c in contexts if c.recipient.role is not Role.EMERGENCY_CONTACT]
    for milestone in plan.milestones:
        at = milestone.at.astimezone(TZ)
        lines += ["", f"== {milestone.key}  {at:%Y-%m-%d} {_WEEKDAYS[at.weekday()]} =="]
        for ctx in readers:
            ctx = ctx.model_copy(update={"issued_on": milestone.day,
                                         "follow_up_month": milestone.index})
            for slot in milestone.slots:
                lines += _one(milestone.kind, slot.channel, ctx,
                              f"{slot.at.astimezone(TZ):%H:%M}", templates)
    for ctx in contexts:
        if ctx.recipient.role is Role.EMERGENCY_CONTACT:
            lines += ["", "== emergency_contact  only if the policyholder cannot be reached =="]
            for channel in (Channel.SMS, Channel.VOICE):
                lines += _one(MessageKind.EMERGENCY_CONTACT, channel, ctx, "", templates)
    return "\n".join(lines)


def _one(kind: MessageKind | str, channel: Channel, ctx: MessageContext, when: str,
         templates: TemplateSet | None) -> list[str]:
    head = f"-- {channel.value} {when}".rstrip() + f"  to {ctx.recipient.role.value}"
    try:
        message, violations = check_message(kind, channel, ctx, templates)
    except ContentRuleError as err:
        return [head, f"{_INDENT}!! not rendered: {_rules(err.violations)}"]
    lines = [f"{head}  {message.template_id} v{message.template_version}"
             f"  variant {message.variant.value}{_segments(message, ctx)}"]
    if message.subject:
        lines.append(f"{_INDENT}[{message.subject}]")
    lines += [_INDENT + line if line else "" for line in message.body.splitlines()]
    if message.link:
        lines.append(f"{_INDENT}(opens {message.link})")
    if violations:
        lines.append(f"{_INDENT}!! breaks rules: {_rules(violations)}")
    return lines


def _segments(message: RenderedMessage, ctx: MessageContext) -> str:
    if message.segments is None:
        return ""
    return f"  {message.segments} segment(s) of {ctx.sms_segment_budget}"


def _rules(violations: list[Violation]) -> str:
    return "; ".join(v.rule + (f" ({v.detail})" if v.detail else "") for v in violations)
