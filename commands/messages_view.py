"""The exact text of every message of a journey plan, for review before the journey starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domain.content import RenderedMessage, Violation
from domain.journey import SendRequest
from domain.plan import TZ, JourneyPlan

_WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_INDENT = "    "
EMERGENCY_KEY = "emergency_contact"


@dataclass(frozen=True)
class Shown:
    """One message as the journey would send it: its request, reader and rendering (no
    message when it cannot be rendered at all; the rules it breaks otherwise)."""

    req: SendRequest
    role: str
    message: RenderedMessage | None
    violations: list[Violation]


def messages_preview(plan: JourneyPlan, shown: Sequence[Shown], sms_budget: int) -> str:
    """Every message of every milestone, for each reader (the policyholder or employer,
    each group member), then the emergency contact's one message; broken rules are shown
    with `!!`, not raised."""
    lines = [f"messages for policy {plan.policy_number}  trigger {plan.trigger}  "
             f"segments {', '.join(plan.segments)}"]
    for milestone in plan.milestones:
        at = milestone.at.astimezone(TZ)
        lines += ["", f"== {milestone.key}  {at:%Y-%m-%d} {_WEEKDAYS[at.weekday()]} =="]
        for s in shown:
            if s.req.milestone_key == milestone.key:
                lines += _one(s, f"{s.req.journey_at.astimezone(TZ):%H:%M}", sms_budget)
    contact = [s for s in shown if s.req.milestone_key == EMERGENCY_KEY]
    if contact:
        lines += ["", "== emergency_contact  only if the policyholder cannot be reached =="]
        for s in contact:
            lines += _one(s, "", sms_budget)
    return "\n".join(lines)


def _one(s: Shown, when: str, sms_budget: int) -> list[str]:
    head = f"-- {s.req.channel.value} {when}".rstrip() + f"  to {s.role}"
    message = s.message
    if message is None:
        return [head, f"{_INDENT}!! not rendered: {_rules(s.violations)}"]
    segments = (f"  {message.segments} segment(s) of {sms_budget}"
                if message.segments is not None else "")
    lines = [f"{head}  {message.template_id} v{message.template_version}"
             f"  variant {message.variant.value}{segments}"]
    if message.subject:
        lines.append(f"{_INDENT}[{message.subject}]")
    lines += [_INDENT + line if line else "" for line in message.body.splitlines()]
    if message.link:
        lines.append(f"{_INDENT}(opens {message.link})")
    if s.violations:
        lines.append(f"{_INDENT}!! breaks rules: {_rules(s.violations)}")
    return lines


def _rules(violations: list[Violation]) -> str:
    return "; ".join(v.rule + (f" ({v.detail})" if v.detail else "") for v in violations)
