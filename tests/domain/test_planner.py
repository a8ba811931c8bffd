"""The journey timeline against the real 2026 calendar (expected dates worked out by hand)."""

import json
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from commands.plan_view import plan_json, plan_table
from domain.calendar import fallback_warning
from domain.models import (
    Channel,
    DebitFailure,
    DebitFailureReason,
    MessageKind,
    Product,
    ProductKind,
    ProductRules,
    Segment,
    Trigger,
    TriggerKind,
)
from domain.plan import TZ, CompanyRules, JourneyPlan, SendWindow
from domain.planner import PlanCache, plan_journey
from tests.calendar_helpers import CAL, CAL_2027

NO_2027 = fallback_warning(2027)
STANDARD = {Segment.STANDARD}
SMS, WECHAT, VOICE, AGENT, EMAIL, LETTER = (
    Channel.SMS, Channel.WECHAT, Channel.VOICE, Channel.AGENT_CALL, Channel.EMAIL, Channel.LETTER)


def long_term(**rules) -> Product:
    return Product(code="WL01", name="安心终身寿险", kind=ProductKind.LONG_TERM,
                   rules=ProductRules(**rules))


def short_term(**rules) -> Product:
    return Product(code="ACC1", name="一年期意外险", kind=ProductKind.SHORT_TERM,
                   rules=ProductRules(reinstatable=False, **rules))


def trigger(due: date, kind: TriggerKind = TriggerKind.PREMIUM_OVERDUE, **extra) -> Trigger:
    return Trigger(kind=kind, policy_number="P2026000001", due_date=due,
                   amount_due=Decimal("0") if kind is TriggerKind.RESCISSION
                   else Decimal("1200.00"), **extra)


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=TZ)


def days(plan: JourneyPlan) -> dict[str, date]:
    return {m.key: m.day for m in plan.milestones}


def test_due_just_before_national_day():
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(), STANDARD, CAL)
    assert plan.grace_ends_on == date(2026, 11, 29)
    assert plan.lapses_on == date(2026, 11, 30)
    assert plan.lapses_at == at(2026, 11, 30, 0, 0)
    assert plan.reinstatement_deadline == date(2028, 11, 30)
    assert days(plan) == {
        "first_reminder": date(2026, 10, 8),  # 1 to 7 October are holidays
        "second_reminder": date(2026, 11, 13),  # 14 November is a Saturday: the Friday before
        "lapse_notice": date(2026, 11, 30),
        "follow_up_1": date(2026, 12, 30),
        "follow_up_2": date(2027, 2, 1),  # 30 January 2027 is a Saturday
        "follow_up_3": date(2027, 3, 1),  # 28 February 2027 is a Sunday
        "follow_up_4": date(2027, 3, 30),
        "follow_up_5": date(2027, 4, 30),
        "follow_up_6": date(2027, 5, 31),  # 30 May 2027 is a Sunday
    }
    first = plan.milestone("first_reminder")
    assert first.at == at(2026, 10, 8, 10, 0)
    assert first.channels == [SMS, WECHAT]
    assert plan.milestone("second_reminder").channels == [VOICE]
    assert plan.milestone("lapse_notice").channels == [EMAIL, SMS, WECHAT]
    assert [plan.milestone(f"follow_up_{k}").channels for k in (1, 2, 3, 6)] == [
        [SMS], [SMS], [SMS, EMAIL], [SMS, EMAIL]]
    assert [m.index for m in plan.milestones if m.kind is MessageKind.FOLLOW_UP] == [
        1, 2, 3, 4, 5, 6]
    assert plan.milestone("follow_up_1").warnings == []
    assert plan.milestone("follow_up_2").warnings == [NO_2027]
    assert plan.warnings == [NO_2027]


def test_make_up_days_count_as_business_days():
    three = plan_journey(trigger(date(2026, 9, 30)), long_term(first_reminder_business_days=3),
                         STANDARD, CAL)
    assert three.milestone("first_reminder").day == date(2026, 10, 10)  # a Saturday
    sunday = plan_journey(trigger(date(2026, 9, 18)), long_term(), STANDARD, CAL)
    assert sunday.milestone("first_reminder").at == at(2026, 9, 20, 10, 0)  # a Sunday


def test_grace_ending_on_a_holiday():
    plan = plan_journey(trigger(date(2026, 8, 2)), long_term(), STANDARD, CAL)
    assert plan.grace_ends_on == date(2026, 10, 1)
    assert plan.lapses_on == date(2026, 10, 2)
    assert plan.lapses_at == at(2026, 10, 2, 0, 0)
    assert days(plan)["first_reminder"] == date(2026, 8, 3)  # D is a Sunday
    assert days(plan)["second_reminder"] == date(2026, 9, 16)
    assert days(plan)["lapse_notice"] == date(2026, 10, 8)
    assert days(plan)["follow_up_1"] == date(2026, 11, 2)


def test_second_reminder_on_a_holiday_moves_earlier():
    plan = plan_journey(trigger(date(2026, 8, 19)), long_term(), STANDARD, CAL)
    assert plan.grace_ends_on == date(2026, 10, 18)
    # E - 15 = 3 October, a holiday: the last business day before it.
    assert days(plan)["second_reminder"] == date(2026, 9, 30)
    assert days(plan)["lapse_notice"] == date(2026, 10, 19)


def test_a_grace_period_too_short_for_a_second_reminder():
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(grace_days=10), STANDARD, CAL)
    assert plan.grace_ends_on == date(2026, 10, 10)
    assert list(days(plan))[:3] == ["first_reminder", "lapse_notice", "follow_up_1"]
    assert days(plan)["lapse_notice"] == date(2026, 10, 12)  # L = 11 October, a Sunday


def test_lapse_on_31_january_clamps_follow_ups_to_month_end():
    plan = plan_journey(trigger(date(2025, 12, 1)), long_term(), STANDARD, CAL)
    assert plan.lapses_on == date(2026, 1, 31)
    assert plan.reinstatement_deadline == date(2028, 1, 31)
    assert days(plan) == {
        "first_reminder": date(2025, 12, 2),
        "second_reminder": date(2026, 1, 15),
        "lapse_notice": date(2026, 2, 2),  # 31 January 2026 is a Saturday
        "follow_up_1": date(2026, 2, 28),  # clamped, and a make-up Saturday (Spring Festival)
        "follow_up_2": date(2026, 3, 31),
        "follow_up_3": date(2026, 4, 30),
        "follow_up_4": date(2026, 6, 1),  # 31 May 2026 is a Sunday
        "follow_up_5": date(2026, 6, 30),
        "follow_up_6": date(2026, 7, 31),
    }
    assert plan.warnings == []


def test_lapse_on_31_january_of_a_leap_year():
    plan = plan_journey(trigger(date(2023, 12, 1)), long_term(), STANDARD, CAL)
    assert plan.lapses_on == date(2024, 1, 31)
    assert days(plan)["follow_up_1"] == date(2024, 2, 29)


def test_reinstatement_deadline_from_29_february():
    plan = plan_journey(trigger(date(2023, 12, 30)), long_term(), STANDARD, CAL)
    assert plan.lapses_on == date(2024, 2, 29)
    assert plan.reinstatement_deadline == date(2026, 2, 28)
    assert days(plan)["follow_up_1"] == date(2024, 3, 29)


def test_journey_into_2027_without_its_calendar():
    plan = plan_journey(trigger(date(2026, 12, 7)), long_term(), STANDARD, CAL)
    assert plan.grace_ends_on == date(2027, 2, 5)
    assert plan.lapses_on == date(2027, 2, 6)  # a Saturday
    assert days(plan)["first_reminder"] == date(2026, 12, 8)
    assert days(plan)["second_reminder"] == date(2027, 1, 21)
    assert days(plan)["lapse_notice"] == date(2027, 2, 8)  # Monday-Friday fallback
    assert plan.milestone("first_reminder").warnings == []
    assert plan.milestone("lapse_notice").warnings == [NO_2027]
    assert plan.warnings == [NO_2027]


def test_journey_into_2027_with_its_calendar_loaded():
    plan = plan_journey(trigger(date(2026, 12, 7)), long_term(), STANDARD, CAL_2027)
    assert days(plan)["second_reminder"] == date(2027, 1, 21)
    # The fixture's Spring Festival runs 5-13 February; 14 February is a make-up Sunday.
    assert days(plan)["lapse_notice"] == date(2027, 2, 14)
    assert days(plan)["follow_up_1"] == date(2027, 3, 8)
    assert days(plan)["follow_up_2"] == date(2027, 4, 6)
    assert plan.warnings == []


def test_quiet_hours_move_voice_but_not_sms():
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(send_time=time(8, 30)),
                        {Segment.ELDERLY}, CAL)
    first = plan.milestone("first_reminder")
    assert {s.channel: s.at for s in first.slots} == {
        VOICE: at(2026, 10, 8, 9, 0), LETTER: at(2026, 10, 8, 8, 30), SMS: at(2026, 10, 8, 8, 30)}
    assert first.at == at(2026, 10, 8, 8, 30)
    standard = plan_journey(trigger(date(2026, 9, 30)), long_term(send_time=time(8, 30)),
                            STANDARD, CAL)
    assert standard.milestone("second_reminder").at == at(2026, 11, 13, 9, 0)


def test_early_send_time_waits_for_the_window():
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(send_time=time(7, 0)),
                        STANDARD, CAL)
    assert plan.milestone("first_reminder").at == at(2026, 10, 8, 8, 0)


@pytest.mark.parametrize("send_time", [time(21, 0), time(21, 30)])
def test_late_send_time_moves_to_the_next_business_day(send_time):
    plan = plan_journey(trigger(date(2026, 9, 29)), long_term(send_time=send_time),
                        STANDARD, CAL)
    # The first reminder falls on 30 September; the next business day is 8 October.
    first = plan.milestone("first_reminder")
    assert first.day == date(2026, 10, 8)
    assert [s.at for s in first.slots] == [at(2026, 10, 8, 8, 0)] * 2
    # Second reminder: 13 November (Friday) too late for a call: Monday 16th at 09:00.
    assert plan.milestone("second_reminder").at == at(2026, 11, 16, 9, 0)


def test_company_send_windows_are_configuration():
    company = CompanyRules(send_windows={
        **CompanyRules().send_windows, Channel.SMS: SendWindow(start=time(11, 0), end=time(20, 0))})
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(), STANDARD, CAL, company)
    slots = {s.channel: s.at for s in plan.milestone("first_reminder").slots}
    assert slots == {SMS: at(2026, 10, 8, 11, 0), WECHAT: at(2026, 10, 8, 10, 0)}
    missing = CompanyRules(send_windows={Channel.SMS: SendWindow(start=time(8), end=time(21))})
    with pytest.raises(ValueError, match="no send window for wechat"):
        plan_journey(trigger(date(2026, 9, 30)), long_term(), STANDARD, CAL, missing)


def test_rescission_is_one_notice_on_the_next_business_day():
    t = trigger(date(2026, 10, 1), TriggerKind.RESCISSION, rescission_reason="non_disclosure")
    plan = plan_journey(t, long_term(), STANDARD, CAL)
    assert [m.key for m in plan.milestones] == ["rescission_notice"]
    notice = plan.milestones[0]
    assert notice.kind is MessageKind.RESCISSION_NOTICE
    assert notice.at == at(2026, 10, 8, 10, 0)
    assert notice.channels == [LETTER, EMAIL, SMS, WECHAT]
    assert (plan.grace_ends_on, plan.lapses_on, plan.lapses_at,
            plan.reinstatement_deadline) == (None, None, None, None)
    same_day = plan_journey(trigger(date(2026, 9, 30), TriggerKind.RESCISSION,
                                    rescission_reason="fraud"), long_term(), STANDARD, CAL)
    assert same_day.milestones[0].day == date(2026, 9, 30)


def test_short_term_offers_re_enrolment_instead_of_reinstatement():
    t = trigger(date(2026, 3, 31), TriggerKind.RENEWAL_UNPAID)
    plan = plan_journey(t, short_term(), STANDARD, CAL)
    assert plan.lapses_on == date(2026, 5, 31)
    assert plan.reinstatement_deadline is None
    assert days(plan) == {
        "first_reminder": date(2026, 4, 1),
        "second_reminder": date(2026, 5, 15),
        "lapse_notice": date(2026, 6, 1),  # 31 May is a Sunday
        "reenrolment_offer_1": date(2026, 6, 30),  # repeated once, a month later
    }
    offers = [m for m in plan.milestones if m.kind is MessageKind.REENROLMENT_OFFER]
    assert [m.index for m in offers] == [1]
    assert offers[0].channels == [SMS, EMAIL]  # MISSION 8: by SMS and e-mail
    elderly = plan_journey(t, short_term(), {Segment.ELDERLY}, CAL)
    assert LETTER in elderly.milestone("reenrolment_offer_1").channels
    none = plan_journey(t, short_term(follow_up_months=0, care_email_months=[]), STANDARD, CAL)
    assert "reenrolment_offer_1" not in days(none)


def test_a_debit_failure_on_a_short_term_product_is_still_short_term():
    failure = DebitFailure(failed_at=at(2026, 3, 31, 2, 0), amount=Decimal("1200.00"),
                           reason_code=DebitFailureReason.CARD_EXPIRED)
    t = trigger(date(2026, 3, 31), TriggerKind.DEBIT_FAILED, debit_failure=failure)
    plan = plan_journey(t, short_term(), STANDARD, CAL)
    assert plan.reinstatement_deadline is None
    assert "reenrolment_offer_1" in days(plan) and "follow_up_1" not in days(plan)


def test_a_renewal_trigger_on_a_long_term_product_gets_no_reinstatement():
    plan = plan_journey(trigger(date(2026, 3, 31), TriggerKind.RENEWAL_UNPAID), long_term(),
                        STANDARD, CAL)
    assert plan.reinstatement_deadline is None
    assert "reenrolment_offer_1" in days(plan) and "reenrolment_offer_2" not in days(plan)


def test_a_long_term_product_that_cannot_be_reinstated_has_no_follow_ups():
    plan = plan_journey(trigger(date(2026, 3, 31)), long_term(reinstatable=False), STANDARD, CAL)
    assert list(days(plan)) == ["first_reminder", "second_reminder", "lapse_notice"]
    assert plan.reinstatement_deadline is None


def test_a_channel_rule_names_a_milestone_not_any_message():
    rule = {"milestone": "payment_confirmation", "segment": "standard", "channels": ["sms"]}
    with pytest.raises(ValidationError, match="is not a milestone"):
        ProductRules.model_validate({"channel_rules": [rule]})
    assert ProductRules.model_validate({"channel_rules": [
        rule | {"milestone": "first_reminder"}]}).channel_rules[0].milestone \
        is MessageKind.FIRST_REMINDER


def test_elderly_channels_and_care_letter():
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(),
                        {Segment.ELDERLY, Segment.HARDSHIP}, CAL)
    assert plan.segments == [Segment.ELDERLY, Segment.HARDSHIP]
    assert plan.milestone("first_reminder").channels == [VOICE, LETTER, SMS]
    assert plan.milestone("second_reminder").channels == [VOICE, AGENT, SMS]
    assert plan.milestone("lapse_notice").channels == [LETTER, VOICE, SMS]
    # Every follow-up too: the call first, SMS as a supplement (MISSION section 3).
    assert plan.milestone("follow_up_1").channels == [VOICE, SMS]
    assert plan.milestone("follow_up_3").channels == [VOICE, SMS, LETTER]


def test_a_customer_who_turns_65_during_the_journey_is_elderly_from_that_day():
    # Due 2026-09-30: the first follow-up goes on 2026-12-30; turning 65 on 2027-01-15
    # makes the follow-ups from February elderly, everything before it standard.
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(), STANDARD, CAL,
                        elderly_from=date(2027, 1, 15))
    assert plan.milestone("first_reminder").channels == [SMS, WECHAT]
    assert plan.milestone("first_reminder").segment is Segment.STANDARD
    assert plan.milestone("follow_up_1").channels == [SMS]
    assert plan.milestone("follow_up_2").segment is Segment.ELDERLY
    assert plan.milestone("follow_up_2").channels == [VOICE, SMS]
    assert plan.milestone("follow_up_3").channels == [VOICE, SMS, LETTER]


def test_group_and_hardship_use_standard_channels():
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(),
                        {Segment.GROUP, Segment.HARDSHIP}, CAL)
    assert plan.milestone("first_reminder").channels == [SMS, WECHAT]
    assert plan.milestone("second_reminder").channels == [VOICE]


def test_starts_at_before_the_journey_changes_nothing():
    t, p = trigger(date(2026, 9, 30)), long_term()
    assert plan_journey(t, p, STANDARD, CAL, starts_at=at(2026, 10, 1, 0, 0)) == plan_journey(
        t, p, STANDARD, CAL)


def test_starts_at_late_in_grace_moves_the_first_reminder_and_drops_the_past():
    # Saturday 14 November, 20:30: the first allowed slot is Monday 16th.
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(), STANDARD, CAL,
                        starts_at=at(2026, 11, 14, 20, 30))
    assert [m.key for m in plan.milestones][:2] == ["first_reminder", "lapse_notice"]
    first = plan.milestone("first_reminder")
    assert first.day == date(2026, 11, 16)
    assert [s.at for s in first.slots] == [at(2026, 11, 16, 8, 0)] * 2
    assert first.warnings == ["first_reminder moved from 2026-10-08 10:00 because the journey "
                              "started at 2026-11-14 20:30"]
    assert plan.milestone("lapse_notice").at == at(2026, 11, 30, 10, 0)
    assert ("second_reminder was due on 2026-11-13, before the journey started "
            "(2026-11-14 20:30): not sent") in plan.warnings


def test_starts_at_on_the_second_reminder_day_keeps_it():
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(), STANDARD, CAL,
                        starts_at=at(2026, 11, 13, 15, 0))
    assert plan.milestone("first_reminder").at == at(2026, 11, 13, 15, 0)
    assert plan.milestone("second_reminder").at == at(2026, 11, 13, 15, 0)


def test_starts_at_after_the_lapse_sends_the_lapse_notice_instead():
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(), STANDARD, CAL,
                        starts_at=at(2026, 12, 1, 12, 0))
    assert [m.key for m in plan.milestones][:2] == ["lapse_notice", "follow_up_1"]
    assert plan.milestone("lapse_notice").at == at(2026, 12, 1, 12, 0)
    assert plan.milestone("follow_up_1").at == at(2026, 12, 30, 10, 0)
    assert ("first_reminder can no longer go out before the lapse (2026-11-30 00:00): not sent"
            in plan.warnings)


def test_starts_at_moves_a_late_rescission_notice():
    t = trigger(date(2026, 9, 30), TriggerKind.RESCISSION, rescission_reason="fraud")
    plan = plan_journey(t, long_term(), STANDARD, CAL, starts_at=at(2026, 10, 3, 9, 0))
    assert plan.milestones[0].at == at(2026, 10, 8, 8, 0)


def test_starts_at_must_be_aware():
    with pytest.raises(ValueError, match="time zone"):
        plan_journey(trigger(date(2026, 9, 30)), long_term(), STANDARD, CAL,
                     starts_at=datetime(2026, 10, 1))


def test_plan_views():
    plan = plan_journey(trigger(date(2026, 9, 30)), long_term(send_time=time(8, 30)),
                        {Segment.ELDERLY}, CAL)
    table = plan_table(plan)
    assert "2026-10-08  周四  08:30  first_reminder" in table
    assert "voice 09:00, letter, sms" in table
    assert f"[1] {NO_2027}" in table
    assert JourneyPlan.model_validate(json.loads(plan_json(plan))) == plan


_JOURNEYS = st.lists(st.tuples(
    st.sampled_from(["P2026000001", "P2026000002", "P2026000003"]),
    st.sampled_from([TriggerKind.PREMIUM_OVERDUE, TriggerKind.RENEWAL_UNPAID,
                     TriggerKind.RESCISSION]),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
    st.sampled_from(["long", "short"]),
    st.sampled_from([frozenset(STANDARD), frozenset({Segment.ELDERLY}),
                     frozenset({Segment.STANDARD, Segment.HARDSHIP})]),
    st.sampled_from([None, at(2026, 6, 1, 9, 0), at(2026, 9, 30, 20, 0)]),
    st.sampled_from([None, date(2026, 8, 1)])), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(journeys=_JOURNEYS)
def test_a_scans_plan_cache_plans_each_journey_as_planning_it_alone_would(journeys):
    """The scan plans journeys alike once (`PlanCache`): whatever the order and the mix,
    each journey gets the plan `plan_journey` makes for it alone, its own policy number
    included, never a neighbour's."""
    products = {"long": long_term(), "short": short_term()}
    cache = PlanCache()
    for number, kind, due, product, segments, starts_at, elderly in journeys:
        extra = {"rescission_reason": "fraud"} if kind is TriggerKind.RESCISSION else {}
        t = trigger(due, kind, **extra).model_copy(update={"policy_number": number})
        args = (t, products[product], set(segments), CAL_2027, CompanyRules(), starts_at,
                elderly)
        assert cache.plan(*args) == plan_journey(*args)
    shapes = {(k, d, p, s, a, e) for _, k, d, p, s, a, e in journeys}
    assert cache.made == len(shapes)


def test_a_plan_cache_plans_again_for_other_rules():
    cache = PlanCache()
    t = trigger(date(2026, 9, 25))
    first = cache.plan(t, long_term(), STANDARD, CAL_2027)
    other = long_term(grace_days=30)  # the same product code, other rules
    assert cache.plan(t, other, STANDARD, CAL_2027) == plan_journey(t, other, STANDARD, CAL_2027)
    assert cache.plan(t, long_term(), STANDARD, CAL) == plan_journey(t, long_term(), STANDARD,
                                                                     CAL)
    assert cache.made == 3 and first.lapses_on != cache.plan(t, other, STANDARD,
                                                             CAL_2027).lapses_on


@settings(max_examples=60, deadline=None)
@given(due=st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 30)),
       minutes=st.integers(min_value=0, max_value=120),
       segments=st.sampled_from([frozenset(STANDARD), frozenset({Segment.ELDERLY})]))
def test_the_daily_scan_starts_journeys_when_their_first_reminder_is_due(due, minutes,
                                                                         segments):
    """The Schedule runs at the default send time: a premium due the business day before
    gets its journey with the first reminder due, sent at once rather than after a timer
    (and an upsert); a day after D that is no business day has it on the next one."""
    from commands.scan import DEFAULT_HOUR

    scan_day = due + timedelta(days=1)
    starts_at = at(scan_day.year, scan_day.month, scan_day.day, DEFAULT_HOUR, 0) \
        + timedelta(minutes=minutes)
    plan = plan_journey(trigger(due), long_term(), set(segments), CAL, starts_at=starts_at)
    first = plan.milestone("first_reminder")
    if CAL.is_business_day(scan_day):
        assert first.at <= starts_at and first.day == scan_day
    else:
        assert first.day == CAL.next_business_day(scan_day) and first.at > starts_at
