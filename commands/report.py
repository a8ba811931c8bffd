"""`lapse report --month YYYY-MM`: the monthly review as tables, JSON, CSV files and a chart."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable
from datetime import date
from pathlib import Path
from typing import TextIO, TypeVar

from commands.common import UserError, command, database
from commands.report_view import report_tables, write_csv
from domain.report import build_report, parse_month
from infra.report_queries import fetch_records

T = TypeVar("T")


def _month(text: str) -> date:
    try:
        return parse_month(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the monthly review: notification success, formal-demand "
                                      "evidence, inquiries, lapses, reinstatements, debits")
    p.add_argument("--month", type=_month, required=True, metavar="YYYY-MM",
                   help="the calendar month to review (Asia/Shanghai)")
    p.add_argument("--json", action="store_true", help="print the review as JSON")
    p.add_argument("--csv", type=Path, metavar="DIR",
                   help="also write one CSV file per table into DIR (created if needed)")
    p.add_argument("--chart", type=Path, metavar="FILE.png",
                   help="also draw the charts into one PNG file")
    p.set_defaults(func=command(run))


async def run(args: argparse.Namespace, settings) -> int:
    if args.chart and args.chart.suffix.lower() != ".png":
        raise UserError(f"--chart {args.chart}: the chart is a PNG file; name it *.png")
    async with database(settings) as pool:
        records = await fetch_records(pool, args.month)
    report = build_report(args.month, records)
    # Program output on stdout; the files written are noted where they do not mix with it.
    notes = sys.stderr if args.json else sys.stdout
    _say(report.model_dump_json(indent=2) if args.json else report_tables(report), sys.stdout)
    if args.csv:
        for path in await _writing(asyncio.to_thread(write_csv, report, args.csv)):
            _say(f"wrote {path}", notes)
    if args.chart:
        from commands.report_charts import write_chart  # matplotlib loads slowly

        _say(f"wrote {await _writing(asyncio.to_thread(write_chart, report, args.chart))}",
             notes)
    return 0


def _say(text: str, stream: TextIO) -> None:
    """Print; a reader that stopped early (`lapse report ... | head`) has what it wanted, so
    the rest goes nowhere (the files are still written) and no error is raised."""
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        # Python's own flush at exit then finds no closed pipe either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


async def _writing(work: Awaitable[T]) -> T:
    """A file written for --csv or --chart; an error writing it names the file."""
    try:
        return await work
    except OSError as err:
        raise UserError(f"cannot write {err.filename or 'the file'}: {err.strerror}") from None
