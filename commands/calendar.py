"""`lapse calendar load FILE | list`: the official business calendar, a year at a time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import ValidationError

from commands.common import UserError, command, database
from domain.calendar import CalendarYear
from infra import store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calendar", help="load or list the official holiday calendar")
    csub = p.add_subparsers(dest="calendar_command", required=True, metavar="ACTION")
    load = csub.add_parser("load", help="load (or replace) one year from a JSON file")
    load.add_argument("file", type=Path)
    load.set_defaults(func=command(run_load))
    ls = csub.add_parser("list", help="the years loaded and where they came from")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=command(run_list))


def read_year(path: Path) -> CalendarYear:
    try:
        return CalendarYear.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.__class__.__name__}") from None
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise UserError(f"{path}: {where}: {first['msg']} "
                        f"({exc.error_count()} error(s); nothing was loaded)") from None


async def run_load(args: argparse.Namespace, settings) -> int:
    year = read_year(args.file)
    async with database(settings) as pool, pool.acquire() as conn:
        await store.save_calendar_year(conn, year, source=args.file.name)
    holidays = sum(1 for d in year.days if d.kind == "holiday")
    print(f"calendar {year.year} loaded: {holidays} holidays, "
          f"{len(year.days) - holidays} make-up workdays")
    return 0


async def run_list(args: argparse.Namespace, settings) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        years = await store.calendar_years_loaded(conn)
    if args.json:
        print(json.dumps({str(y): s for y, s in years.items()}))
    else:
        for y, s in years.items():
            print(f"{y}  {s}")
    return 0
