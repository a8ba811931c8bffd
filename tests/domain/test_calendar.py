"""The business calendar: official 2026 data, the Monday-Friday fallback, the file format."""

from datetime import date

import pytest
from pydantic import ValidationError

from domain.calendar import (
    BusinessCalendar,
    CalendarDay,
    CalendarYear,
    add_months,
    add_years,
    fallback_warning,
)
from infra.calendar_seed import package_years
from tests.calendar_helpers import CAL, CAL_2027, SEED


def test_seed_covers_the_package_years_with_chinese_names():
    years = [y.year for y in package_years()]
    assert years[0] == 2004
    assert years == list(range(2004, years[-1] + 1))
    y2026 = next(y for y in SEED if y.year == 2026)
    by_date = {d.date: d for d in y2026.days}
    assert by_date[date(2026, 2, 17)] == CalendarDay(date=date(2026, 2, 17), kind="holiday",
                                                     name="春节")
    assert by_date[date(2026, 10, 1)].name == "国庆节"
    assert by_date[date(2026, 10, 10)].kind == "workday"  # Saturday make-up for National Day
    assert by_date[date(2026, 1, 4)].kind == "workday"  # Sunday make-up for New Year
    assert date(2026, 3, 7) not in by_date  # an ordinary Saturday is not listed


def test_official_2026_holidays_and_make_up_days():
    assert CAL.is_business_day(date(2026, 9, 20))  # Sunday, make-up working day
    assert CAL.is_business_day(date(2026, 10, 10))  # Saturday, make-up working day
    assert not CAL.is_business_day(date(2026, 9, 19))  # ordinary Saturday
    assert not any(CAL.is_business_day(date(2026, 10, d)) for d in range(1, 8))
    assert not CAL.is_business_day(date(2026, 9, 25))  # Friday, Mid-Autumn
    assert CAL.is_business_day(date(2026, 10, 8))


def test_next_and_previous_business_day_around_national_day():
    assert CAL.next_business_day(date(2026, 9, 30)) == date(2026, 10, 8)
    assert CAL.next_business_day(date(2026, 9, 30), include_today=True) == date(2026, 9, 30)
    assert CAL.previous_business_day(date(2026, 10, 8)) == date(2026, 9, 30)
    assert CAL.previous_business_day(date(2026, 10, 3), include_today=True) == date(2026, 9, 30)
    assert CAL.next_business_day(date(2026, 2, 13)) == date(2026, 2, 14)  # make-up Saturday
    assert CAL.next_business_day(date(2026, 2, 14)) == date(2026, 2, 24)  # after Spring Festival


def test_add_business_days_counts_make_up_days():
    assert CAL.add_business_days(date(2026, 9, 30), 1) == date(2026, 10, 8)
    assert CAL.add_business_days(date(2026, 9, 30), 3) == date(2026, 10, 10)
    assert CAL.add_business_days(date(2026, 10, 12), -3) == date(2026, 10, 8)
    assert CAL.add_business_days(date(2026, 10, 3), 0) == date(2026, 10, 8)


def test_a_year_not_loaded_falls_back_to_monday_to_friday_with_a_warning():
    assert CAL.covers(2026) and not CAL.covers(2027)
    assert CAL.is_business_day(date(2027, 1, 1))  # a Friday: New Year is unknown
    assert not CAL.is_business_day(date(2027, 1, 2))
    assert CAL.fallback_warnings(date(2026, 12, 31), date(2027, 1, 4)) == [fallback_warning(2027)]
    assert CAL.fallback_warnings(date(2027, 1, 4), date(2026, 12, 31)) == [fallback_warning(2027)]
    assert CAL.fallback_warnings(date(2026, 1, 1), date(2026, 12, 31)) == []
    assert "2027" in fallback_warning(2027) and "lapse calendar load" in fallback_warning(2027)


def test_a_loaded_year_is_used_and_silences_the_warning():
    assert CAL_2027.covers(2027)
    assert not CAL_2027.is_business_day(date(2027, 1, 1))
    assert CAL_2027.is_business_day(date(2027, 2, 14))  # the fixture's make-up Sunday
    assert CAL_2027.next_business_day(date(2027, 2, 5)) == date(2027, 2, 14)
    assert CAL_2027.fallback_warnings(date(2026, 12, 31), date(2027, 12, 31)) == []
    assert CAL_2027.years[-2:] == [2026, 2027]


def test_a_later_year_replaces_an_earlier_one():
    empty_2026 = CalendarYear(year=2026, days=[])
    cal = BusinessCalendar([*SEED, empty_2026])
    assert cal.is_business_day(date(2026, 10, 1))
    assert not cal.is_business_day(date(2026, 10, 10))


def test_month_arithmetic_clamps_to_month_end():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2026, 3, 31), -1) == date(2026, 2, 28)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert add_years(date(2024, 2, 29), 2) == date(2026, 2, 28)
    assert add_years(date(2026, 11, 30), 2) == date(2028, 11, 30)


def test_calendar_file_days_come_out_in_date_order():
    year = CalendarYear.model_validate({"year": 2027, "days": [
        {"date": "2027-10-01", "kind": "holiday", "name": "国庆节"},
        {"date": "2027-01-01", "kind": "holiday", "name": "元旦"},
    ]})
    assert [d.date for d in year.days] == [date(2027, 1, 1), date(2027, 10, 1)]


@pytest.mark.parametrize(("days", "message"), [
    ([{"date": "2027-02-10", "kind": "workday", "name": "春节"}],
     "2027-02-10 is a Wednesday: a make-up workday must fall on a Saturday or Sunday"),
    ([{"date": "2026-12-31", "kind": "holiday", "name": "元旦"}], "2026-12-31 is not in 2027"),
    ([{"date": "2027-01-01", "kind": "holiday", "name": "元旦"},
      {"date": "2027-01-01", "kind": "holiday", "name": "元旦"}], "2027-01-01 is listed twice"),
    ([{"date": "2027-02-14", "kind": "holiday", "name": "春节"},
      {"date": "2027-02-14", "kind": "workday", "name": "春节"}],
     "2027-02-14 is listed both as a holiday and as a make-up workday"),
    ([{"date": "2027-01-01", "kind": "day_off", "name": "元旦"}], "'holiday' or 'workday'"),
    ([{"date": "2027-01-01", "kind": "holiday", "name": ""}], "at least 1 character"),
    ([{"date": "2027-01-01", "kind": "holiday", "name": "元旦", "note": "x"}],
     "Extra inputs are not permitted"),
])
def test_calendar_file_errors_say_what_is_wrong(days, message):
    with pytest.raises(ValidationError, match=message):
        CalendarYear.model_validate({"year": 2027, "days": days})


def test_calendar_file_year_must_be_plausible():
    with pytest.raises(ValidationError, match="greater than or equal to 2000"):
        CalendarYear.model_validate({"year": 1999, "days": []})
