"""The business calendars the domain tests plan against: the official years up to 2026,
and the same with a plausible 2027 added (tests only: the State Council had not published
2027)."""

from __future__ import annotations

from pathlib import Path

from domain.calendar import BusinessCalendar, CalendarYear
from infra.calendar_seed import package_years

FIXTURE_2027 = Path(__file__).resolve().parent / "data" / "calendar-2027.json"
# Up to 2026 only, so that the tests hold when a newer chinese_calendar knows 2027.
SEED = [y for y in package_years() if y.year <= 2026]
CAL = BusinessCalendar(SEED)
CAL_2027 = BusinessCalendar([*SEED, CalendarYear.model_validate_json(FIXTURE_2027.read_bytes())])
