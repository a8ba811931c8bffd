"""A journey plan for people (a table) and for programs (JSON)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from domain.plan import TZ, JourneyPlan, PlannedMilestone

_WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")


def plan_table(plan: JourneyPlan) -> str:
    """The dated timeline as plain text: one row per milestone, then the numbered warnings."""
    lines = [f"policy {plan.policy_number}  trigger {plan.trigger}  "
             f"segments {', '.join(plan.segments)}",
             f"due {plan.due_date}  grace ends {plan.grace_ends_on or '-'}  "
             f"lapses {plan.lapses_on or '-'}  reinstate by {plan.reinstatement_deadline or '-'}"]
    table = Table(box=None, show_edge=False, pad_edge=False)
    for column in ("date", "day", "time", "milestone", "channels", "warnings"):
        table.add_column(column, overflow="fold")
    # Warnings are numbered once below the table: the same one often concerns many rows.
    number = {w: i for i, w in enumerate(plan.warnings, start=1)}
    for m in plan.milestones:
        at = m.at.astimezone(TZ)
        table.add_row(f"{at:%Y-%m-%d}", _WEEKDAYS[at.weekday()], f"{at:%H:%M}", m.key,
                      _channels(m), " ".join(f"[{number[w]}]" for w in m.warnings))
    out = io.StringIO()
    Console(file=out, width=120, color_system=None, soft_wrap=False).print(table)
    lines += [line.rstrip() for line in out.getvalue().splitlines()]
    lines += [f"[{i}] {w}" for w, i in number.items()]
    return "\n".join(lines)


def plan_json(plan: JourneyPlan) -> str:
    return plan.model_dump_json(indent=2)


def _channels(milestone: PlannedMilestone) -> str:
    """Channel names, with a channel's own time where its quiet hours move it."""
    first = milestone.at
    parts = []
    for slot in milestone.slots:
        at = slot.at.astimezone(TZ)
        if slot.at == first:
            parts.append(str(slot.channel))
        elif at.date() == first.astimezone(TZ).date():
            parts.append(f"{slot.channel} {at:%H:%M}")
        else:
            parts.append(f"{slot.channel} {at:%m-%d %H:%M}")
    return ", ".join(parts)
