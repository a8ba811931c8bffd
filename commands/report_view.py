"""The monthly review for people (tables) and for spreadsheets (CSV files)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from domain.report import DeliveryRate, InquiryVolume, MonthlyReport, MonthTrend

ALL = "all"
_DELIVERY_COLUMNS = ("channel", "milestone", "records", "attempted", "accepted", "delivered",
                     "failed", "unknown", "pending", "skipped", "no_address", "content_rule",
                     "confirms_delivery", "confirmable", "accepted_rate", "delivered_rate",
                     "failed_rate", "top_errors")
NOT_APPLICABLE = "n/a"
_INQUIRY_COLUMNS = ("kind", "received", "on_time", "late", "unanswered", "escalated",
                    "on_time_rate")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def confirmed(row: DeliveryRate) -> str:
    """The confirmed rate; n/a where the channel never confirms delivery."""
    return percent(row.delivered_rate) if row.confirms_delivery else NOT_APPLICABLE


def _errors(row: DeliveryRate) -> str:
    return " ".join(f"{e.error_code}={e.count}" for e in row.top_errors)


def _delivery_rows(report: MonthlyReport) -> list[DeliveryRate]:
    """Each channel's milestones, then the channel's total; the overall total last."""
    rows = []
    for total in report.channels:
        rows += [r for r in report.notifications if r.channel == total.channel]
        rows.append(total)
    rows.append(report.overall)
    return rows


def _inquiry_rows(report: MonthlyReport) -> list[InquiryVolume]:
    return [*report.inquiries, report.inquiries_total]


def _numeric(value: object) -> bool:
    return isinstance(value, int) or (isinstance(value, str) and (
        value in ("-", NOT_APPLICABLE) or value.endswith("%")))


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[object]]) -> Table:
    """Counts and rates right-aligned, words left; rows never wrap."""
    rows = [list(row) for row in rows]
    table = Table(title=title, title_justify="left", box=None, show_edge=False,
                  pad_edge=False)
    for i, column in enumerate(columns):
        right = bool(rows) and all(_numeric(row[i]) for row in rows)
        table.add_column(column, justify="right" if right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


def report_tables(report: MonthlyReport) -> str:
    """The review as plain-text tables, section by section, each saying what it counts."""
    j, fd, f, a = (report.journeys, report.formal_demand, report.funnel,
                   report.reinstatement_applications)
    out = io.StringIO()
    # Wide enough for every table; sentences are not wrapped either.
    console = Console(file=out, width=200, color_system=None, soft_wrap=True)
    last_day = report.ends_at - timedelta(days=1)
    console.print(f"monthly review {report.month} ({report.starts_at:%Y-%m-%d} to "
                  f"{last_day:%Y-%m-%d}, Asia/Shanghai)\n")
    console.print(_table(
        "notifications created in the month, by channel and milestone",
        ("channel", "milestone", "attempted", "accepted", "confirmed", "failed", "unknown",
         "pending", "no address", "content rule", "accepted %", "confirmed %", "failed %",
         "top provider errors"),
        ((r.channel or ALL, r.milestone or ALL, r.attempted, r.accepted, r.delivered,
          r.failed, r.unknown, r.pending, r.no_address, r.content_rule,
          percent(r.accepted_rate), confirmed(r), percent(r.failed_rate),
          _errors(r) or "-") for r in _delivery_rows(report))))
    console.print("  attempted = handed to a provider (accepted + failed + unknown); the rates "
                  "are over it. failed = the provider refused it or could not deliver it.\n"
                  "  no address = not sent: no address for the channel, or it is suppressed; "
                  "content rule = not sent: the text broke a content rule.\n"
                  "  confirmed = delivery confirmed (SMS and e-mail: the provider's receipt; "
                  f"voice: the call answered); {NOT_APPLICABLE} where a channel never "
                  "confirms delivery (WeChat, WeCom, letters, agent calls).")
    console.print(f"\nformal demand (journeys whose first reminder to the policyholder went out "
                  f"in the month): {fd.first_reminders}, delivery proven {fd.delivered} "
                  f"({percent(fd.evidence_rate)}), accepted without proof "
                  f"{fd.accepted_unconfirmed}, not reached {fd.unreached}\n")
    console.print(_table(
        "inquiries received in the month (on time = answered within one business day)",
        ("kind", "received", "on time", "late", "unanswered", "escalated", "on time %"),
        ((i.kind or ALL, i.received, i.on_time, i.late, i.unanswered, i.escalated,
          percent(i.on_time_rate)) for i in _inquiry_rows(report))))
    console.print(f"\nreinstatement applications received in the month: {a.received}; "
                  f"decided so far: approved {a.approved}, refused {a.refused}; "
                  f"awaiting underwriting {a.awaiting}\n")
    started = ", ".join(f"{k} {v}" for k, v in j.started_by_trigger.items()) or "-"
    paid = ", ".join(f"{k} {v}" for k, v in j.paid_in_grace_by_milestone.items()) or "-"
    console.print(f"journeys, what happened in the month (whenever the journey started):\n"
                  f"  started: {j.started} ({started})\n"
                  f"  paid in grace: {j.paid_in_grace} (last reminder before paying: {paid})\n"
                  f"  lapsed (grace ended unpaid): {j.lapsed}   rescinded: {j.rescinded}   "
                  f"reinstated: {j.reinstated}\n"
                  f"  reinstatement conversion: {j.conversion.reinstated} of the month's "
                  f"{j.conversion.lapsed} reinstatable lapses reinstated so far "
                  f"({percent(j.conversion.rate)})\n")
    console.print(_table("lapse reasons (the month's lapses and rescissions)",
                         ("reason", "lapses", "share"),
                         ((r.reason, r.count, percent(r.share))
                          for r in report.lapse_reasons)))
    console.print(f"\nfunnel, by start month: the {f.first_reminded} journeys started {f.since} "
                  f"to {report.month} with a first reminder, and what became of them by now: "
                  f"{f.paid_in_grace} paid in grace, {f.lapsed} lapsed ({f.reinstated} "
                  f"reinstated since), {f.ended_otherwise} ended otherwise, {f.open} still open"
                  f"\n  (it follows those journeys past {report.month} and leaves out the ones "
                  "started earlier, so it differs from the month's figures above)\n")
    console.print(_table(
        "customers whose debits failed repeatedly (ask them to bind a new card)",
        ("customer", "name", "card", "failures", "last failed", "last reason"),
        ((d.customer_id, d.name, d.card or "-", d.failures, d.last_failed_on,
          d.last_reason or "-") for d in report.repeated_debit_failures)))
    b = report.bind_card
    console.print(f"\nbind-a-new-card messages sent in the month: {b.asked}; re-bound since: "
                  f"{b.rebound} ({percent(b.rate)})")
    console.print()
    console.print(_table(
        "trends (each month's own figures, as above)",
        ("month", "notifications", "accepted %", "confirmed %", "evidence %",
         "inquiries", "on time %", "started", "paid", "lapsed", "reinstated",
         "conversion %"),
        ((t.month, t.notifications, percent(t.accepted_rate), percent(t.delivered_rate),
          percent(t.evidence_rate), t.inquiries, percent(t.on_time_rate), t.started,
          t.paid_in_grace, t.lapsed, t.reinstated, percent(t.conversion_rate))
         for t in report.trends)))
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


# --- CSV ------------------------------------------------------------------------------------


def _summary(report: MonthlyReport) -> list[tuple[str, str, object]]:
    """The single figures as (section, item, value) rows."""
    j, fd, f = report.journeys, report.formal_demand, report.funnel
    rows: list[tuple[str, str, object]] = [
        ("formal_demand", k, v) for k, v in fd.model_dump().items()]
    rows += [("started", k, v) for k, v in j.started_by_trigger.items()]
    rows += [("started", ALL, j.started)]
    rows += [("paid_in_grace", k, v) for k, v in j.paid_in_grace_by_milestone.items()]
    rows += [("paid_in_grace", ALL, j.paid_in_grace), ("lapsed", ALL, j.lapsed),
             ("rescinded", ALL, j.rescinded), ("reinstated", ALL, j.reinstated)]
    rows += [("conversion", k, v) for k, v in j.conversion.model_dump().items()]
    rows += [("reinstatement_applications", k, v)
             for k, v in report.reinstatement_applications.model_dump().items()]
    rows += [("funnel", k, v) for k, v in f.model_dump().items()]
    rows += [("bind_card", k, v) for k, v in report.bind_card.model_dump().items()]
    return rows


def _cell(value: object) -> object:
    return "" if value is None else value


def _write(path: Path, header: Iterable[str], rows: Iterable[Iterable[object]]) -> Path:
    # With a byte-order mark, spreadsheet programs read the Chinese names as UTF-8.
    with path.open("w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows([_cell(v) for v in row] for row in rows)
    return path


def write_csv(report: MonthlyReport, directory: Path) -> list[Path]:
    """One CSV file per table of the review, named after it; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    return [
        _write(d / "notifications.csv", _DELIVERY_COLUMNS,
               ([r.channel or ALL, r.milestone or ALL, *(
                   getattr(r, c) for c in _DELIVERY_COLUMNS[2:-1]), _errors(r)]
                for r in _delivery_rows(report))),
        _write(d / "inquiries.csv", _INQUIRY_COLUMNS,
               ([i.kind or ALL, *(getattr(i, c) for c in _INQUIRY_COLUMNS[1:])]
                for i in _inquiry_rows(report))),
        _write(d / "summary.csv", ("section", "item", "value"), _summary(report)),
        _write(d / "lapse_reasons.csv", ("reason", "lapses", "share"),
               ((r.reason, r.count, r.share) for r in report.lapse_reasons)),
        _write(d / "repeated_debit_failures.csv",
               ("customer_id", "name", "card", "failures", "last_failed_on", "last_reason"),
               ((x.customer_id, x.name, x.card, x.failures, x.last_failed_on, x.last_reason)
                for x in report.repeated_debit_failures)),
        _write(d / "trends.csv", tuple(MonthTrend.model_fields),
               (t.model_dump().values() for t in report.trends)),
    ]
