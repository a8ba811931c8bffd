"""What the demo draws: the addresses, the live table of the journeys (one line a journey,
within 100 columns) and the closing summary; pure over the players and the records."""

from __future__ import annotations

from decimal import Decimal

from rich import box
from rich.table import Table

from commands.demo_personas import Player
from domain.plan import TZ
from domain.provider_codes import explain
from domain.scan import ScanSummary
from infra.demo_queries import DemoRecords


def _labelled(rows: list[tuple[str, str]]) -> Table:
    # A value wraps under itself, never under its label, on a narrow terminal.
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def address_grid(rows: list[tuple[str, str]]) -> Table:
    """Where to follow the demo, a place a line, indented under the demo's first line."""
    return _labelled([(f"  {label}", value) for label, value in rows])


def journeys_table(players: list[Player]) -> Table:
    """One line a journey, within 100 columns: the scenario the demo plays, where the
    journey stands (a closed one by its outcome), its messages, its next milestone and
    what the customer (or operations) did last."""
    clock = max((p.status.journey_now for p in players if p.status), default=None)
    title = "journeys" + (f", journey time {clock.astimezone(TZ):%Y-%m-%d}" if clock else "")
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  show_edge=False)
    for col in ("policy", "scenario", "stage", "sent", "failed", "next", "did"):
        table.add_column(col, no_wrap=True,
                         justify="right" if col in ("sent", "failed") else "left")
    for p in players:
        s = p.status
        if s is None:
            table.add_row(p.policy_number, p.role.name, p.error or "starting", "", "", "", "")
            continue
        stage_text = f"closed: {s.outcome.value}" if s.outcome else s.stage.value
        nxt = s.next_milestone
        table.add_row(
            p.policy_number, p.role.name,
            f"[red]{p.error}[/]" if p.error else stage_text,
            str(sum(1 for n in s.notifications if n.status == "sent")),
            str(sum(1 for n in s.notifications if n.status == "failed")),
            f"{nxt.name} {nxt.at.astimezone(TZ):%m-%d}" if nxt else "-",
            p.done[-1] if p.done else "-")
    return table


def summary_table(players: list[Player], scan: ScanSummary, records: DemoRecords) -> Table:
    """How the journeys ended, what the scan skipped, the messages per channel and status
    (and the commonest reasons for failures), agents' tasks, the public notice and the
    premium collected."""
    outcomes: dict[str, int] = {}
    for p in players:
        key = p.error or (p.status.outcome.value if p.status and p.status.outcome else "open")
        outcomes[key] = outcomes.get(key, 0) + 1
    rows = [("journeys", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))),
            ("scan skipped", ", ".join(f"{k} {v}" for k, v in scan.skipped.items()) or "-")]
    channels: dict[str, list[str]] = {}
    for channel, status, n in records.messages:
        channels.setdefault(channel, []).append(f"{status} {n}")
    rows += [(f"messages {c}", ", ".join(parts)) for c, parts in channels.items()]
    if records.failures:
        rows.append(("failed because", "; ".join(
            f"{channel} {explain(code, channel)} ×{n}"
            for channel, code, n in records.failures)))
    rows.append(("agent tasks", ", ".join(f"{kind} {n}" for kind, n in records.tasks) or "-"))
    listed = records.listed
    rows.append(("public notice", f"{listed} {'policy' if listed == 1 else 'policies'} "
                 "listed (holder unreachable)"))
    paid = sum((p.status.amount_paid for p in players if p.status), Decimal("0"))
    rows.append(("premium collected", f"¥{paid:,.2f}"))
    table = _labelled(rows)
    table.title, table.title_justify = "demo summary", "left"
    return table
