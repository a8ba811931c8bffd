"""The official calendars shipped in the chinese_calendar package, as CalendarYear values."""

from __future__ import annotations

import datetime as dt

import chinese_calendar
from chinese_calendar import Holiday

from domain.calendar import CalendarDay, CalendarYear

PACKAGE_SOURCE = f"chinese-calendar {chinese_calendar.__version__}"


def package_years() -> list[CalendarYear]:
    """Every year the installed chinese_calendar knows (the package raises outside them)."""
    known = {d.year for d in chinese_calendar.holidays}
    return [_year(y) for y in range(min(known), max(known) + 1)]


def _year(year: int) -> CalendarYear:
    days = []
    day = dt.date(year, 1, 1)
    while day.year == year:
        on_holiday, name = chinese_calendar.get_holiday_detail(day)
        # A name marks a statutory holiday or its make-up workday; plain weekends have none.
        if name is not None:
            days.append(
                CalendarDay(
                    date=day,
                    kind="holiday" if on_holiday else "workday",
                    name=Holiday(name).chinese,
                )
            )
        day += dt.timedelta(days=1)
    return CalendarYear(year=year, days=days)
