"""The official business calendar (holidays and make-up working days) and calendar arithmetic."""

from __future__ import annotations

import calendar as _gregorian
import datetime as dt
from collections.abc import Iterable
from typing import Literal

from pydantic import Field, field_validator, model_validator

from domain.models import Model

# Longer than any run of holidays the State Council has ever declared; stops a bad file
# (every day a holiday) from looping forever.
_MAX_SCAN_DAYS = 400


class CalendarDay(Model):
    date: dt.date
    # "workday" is an official make-up working day on a weekend.
    kind: Literal["holiday", "workday"]
    name: str = Field(min_length=1, max_length=100)


class CalendarYear(Model):
    """One year of the State Council's schedule; also the file format of `lapse calendar load`."""

    year: int = Field(ge=2000, le=2100)
    days: list[CalendarDay]

    @field_validator("days")
    @classmethod
    def _in_order(cls, days: list[CalendarDay]) -> list[CalendarDay]:
        return sorted(days, key=lambda d: d.date)

    @model_validator(mode="after")
    def _consistent(self) -> CalendarYear:
        seen: dict[dt.date, str] = {}
        for day in self.days:
            if day.date.year != self.year:
                raise ValueError(f"{day.date} is not in {self.year}")
            if day.date in seen:
                if seen[day.date] != day.kind:
                    raise ValueError(f"{day.date} is listed both as a holiday and as a "
                                     "make-up workday")
                raise ValueError(f"{day.date} is listed twice")
            seen[day.date] = day.kind
            if day.kind == "workday" and day.date.weekday() < 5:
                raise ValueError(f"{day.date} is a {day.date:%A}: a make-up workday must fall "
                                 "on a Saturday or Sunday")
        return self


def fallback_warning(year: int) -> str:
    return (f"calendar for {year} is not loaded: business days fall back to Monday-Friday; "
            "load it with `lapse calendar load FILE`")


def add_months(day: dt.date, months: int) -> dt.date:
    """Calendar month arithmetic clamped to month end: 31 January + 1 month = 28/29 February."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = _gregorian.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


def add_years(day: dt.date, years: int) -> dt.date:
    """Calendar years, clamped: 29 February + 1 year = 28 February."""
    return add_months(day, 12 * years)


class BusinessCalendar:
    """Business days from loaded years; a year not loaded falls back to Monday-Friday.

    The calendar never fails on a missing year: a journey must still be planned. Callers
    ask `fallback_warnings` for the span they computed over and pass the warnings on.
    """

    def __init__(self, years: Iterable[CalendarYear] = ()) -> None:
        # A later year replaces an earlier one, so operator-loaded years can override a seed.
        self._years = {y.year: y for y in years}
        self._kinds = {d.date: d.kind for y in self._years.values() for d in y.days}

    @property
    def years(self) -> list[int]:
        return sorted(self._years)

    def covers(self, year: int) -> bool:
        return year in self._years

    def is_business_day(self, day: dt.date) -> bool:
        kind = self._kinds.get(day)
        if kind is not None:
            return kind == "workday"
        return day.weekday() < 5

    def next_business_day(self, day: dt.date, include_today: bool = False) -> dt.date:
        return self._scan(day, 1, include_today)

    def previous_business_day(self, day: dt.date, include_today: bool = False) -> dt.date:
        return self._scan(day, -1, include_today)

    def add_business_days(self, day: dt.date, n: int) -> dt.date:
        """The n-th business day after `day` (before it for negative n; n = 0: on/after `day`)."""
        if n == 0:
            return self.next_business_day(day, include_today=True)
        step = 1 if n > 0 else -1
        for _ in range(abs(n)):
            day = self._scan(day, step, include_today=False)
        return day

    def fallback_warnings(self, first: dt.date, last: dt.date) -> list[str]:
        """Warnings for every year between two dates (either order) that is not loaded."""
        low, high = sorted((first.year, last.year))
        return [fallback_warning(y) for y in range(low, high + 1) if not self.covers(y)]

    def _scan(self, day: dt.date, step: int, include_today: bool) -> dt.date:
        if include_today and self.is_business_day(day):
            return day
        for offset in range(1, _MAX_SCAN_DAYS + 1):
            candidate = day + dt.timedelta(days=step * offset)
            if self.is_business_day(candidate):
                return candidate
        raise ValueError(f"no business day within {_MAX_SCAN_DAYS} days of {day}: "
                         "check the loaded calendar")
