"""The journey's rules as pure functions (domain/journey_rules.py): what a payment does,
who is visited, when a call is dialled again, what goes out after a hold."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from domain.ids import MilestoneKey
from domain.journey import PaymentOutcome, Stage
from domain.journey_rules import (
    allowed_at,
    caught_up_slots,
    due_after_hold,
    event_slots,
    failed_for_good,
    follow_up_paused,
    milestone_moment,
    must_prove,
    needs_home_visit,
    payment_outcome,
    proven,
    rechecks_policy,
    redial_at,
    segments_at,
    still_due_after_close,
    with_segment_channels,
    worth_resending,
)
from domain.models import Channel, MessageKind, Segment, TriggerKind
from domain.plan import TZ, ChannelSlot, PlannedMilestone
from domain.provider_codes import OUR_SIDE, meaning


@pytest.mark.parametrize(("trigger", "stage", "owed", "outcome"), [
    (TriggerKind.PREMIUM_OVERDUE, Stage.AT_RISK, "0", PaymentOutcome.PAID_IN_FULL),
    (TriggerKind.PREMIUM_OVERDUE, Stage.AT_RISK, "0.01", PaymentOutcome.RECORDED),
    (TriggerKind.DEBIT_FAILED, Stage.HELD, "0", PaymentOutcome.PAID_IN_FULL),
    (TriggerKind.RENEWAL_UNPAID, Stage.AT_RISK, "1200.00", PaymentOutcome.RECORDED),
    (TriggerKind.PREMIUM_OVERDUE, Stage.LAPSED, "0", PaymentOutcome.AFTER_LAPSE),
    (TriggerKind.PREMIUM_OVERDUE, Stage.REINSTATING, "100.00", PaymentOutcome.AFTER_LAPSE),
    (TriggerKind.RESCISSION, Stage.AT_RISK, "0", PaymentOutcome.RECORDED),
])
def test_what_a_stored_payment_does_to_the_journey(trigger, stage, owed, outcome):
    assert payment_outcome(trigger, stage, Decimal(owed)) is outcome


def test_elderly_from_the_milestone_the_plan_marks_elderly():
    standard = [Segment.STANDARD, Segment.HARDSHIP]
    assert segments_at(standard, Segment.STANDARD) == standard
    assert segments_at(standard, None) == standard
    assert segments_at(standard, Segment.ELDERLY) == [Segment.HARDSHIP, Segment.ELDERLY]
    already = [Segment.ELDERLY, Segment.UNREACHABLE]
    assert segments_at(already, Segment.ELDERLY) == already


@pytest.mark.parametrize(("failed", "scope", "kind", "segments", "visit"), [
    (Channel.VOICE, "policyholder", MessageKind.SECOND_REMINDER, [Segment.ELDERLY], True),
    (Channel.VOICE, "policyholder", MessageKind.SECOND_REMINDER, [Segment.STANDARD], False),
    (Channel.SMS, "policyholder", MessageKind.SECOND_REMINDER, [Segment.ELDERLY], False),
    (Channel.VOICE, "members", MessageKind.SECOND_REMINDER, [Segment.ELDERLY], False),
    (Channel.VOICE, "policyholder", MessageKind.FIRST_REMINDER, [Segment.ELDERLY], False),
    (Channel.VOICE, "policyholder", None, [Segment.ELDERLY], False),
])
def test_a_home_visit_only_for_the_elderly_policyholder_who_missed_the_second_call(
        failed, scope, kind, segments, visit):
    assert needs_home_visit(failed, scope, kind, segments) is visit


def test_formal_notices_must_reach_the_policyholder_provably():
    assert must_prove(MessageKind.FIRST_REMINDER, "policyholder")
    assert must_prove(MessageKind.LAPSE_NOTICE, "policyholder")
    assert must_prove(MessageKind.RESCISSION_NOTICE, "policyholder")
    assert not must_prove(MessageKind.FIRST_REMINDER, "members")
    assert not must_prove(MessageKind.SECOND_REMINDER, "policyholder")
    assert not must_prove(None, "policyholder")
    assert proven({Channel.WECHAT, Channel.EMAIL})
    assert not proven({Channel.WECHAT})
    assert not proven(set())


def test_follow_ups_pause_while_underwriting_decides_and_rescission_is_never_rechecked():
    assert follow_up_paused(MessageKind.FOLLOW_UP, Stage.REINSTATING)
    assert follow_up_paused(MessageKind.REENROLMENT_OFFER, Stage.REINSTATING)
    assert not follow_up_paused(MessageKind.FOLLOW_UP, Stage.LAPSED)
    assert not follow_up_paused(MessageKind.LAPSE_NOTICE, Stage.REINSTATING)
    assert not rechecks_policy(MessageKind.RESCISSION_NOTICE)
    assert rechecks_policy(MessageKind.FIRST_REMINDER)


WINDOW = (time(9), time(21))
GAP = timedelta(minutes=30)


def shanghai(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 7, hour, minute, tzinfo=TZ)


@pytest.mark.parametrize(("now", "attempt", "until", "expected"), [
    (shanghai(10), 2, None, shanghai(10, 30)),
    (shanghai(20, 29), 6, None, shanghai(20, 59)),
    (shanghai(20, 30), 2, None, None),  # 21:00 is outside the call window
    (shanghai(8, 0), 2, None, None),  # 08:30 is before it
    (shanghai(10), 7, None, None),  # no attempt left
    (shanghai(10), 2, shanghai(10, 15), None),  # past the milestone's time
    (shanghai(10), 2, shanghai(10, 30), shanghai(10, 30)),
])
def test_a_call_is_dialled_again_inside_the_window_the_attempts_and_the_milestone(
        now, attempt, until, expected):
    assert redial_at(now, attempt, 6, GAP, WINDOW, until) == expected


def test_a_utc_clock_is_read_in_shanghai_for_the_call_window():
    # 02:00 UTC is 10:00 in Shanghai (inside the window); 14:00 UTC is 22:00 (outside).
    morning = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    assert redial_at(morning, 1, 6, GAP, WINDOW, None) == morning + GAP
    assert redial_at(morning + timedelta(hours=12), 1, 6, GAP, WINDOW, None) is None


def planned(kind: MessageKind, day: int, index: int | None = None) -> PlannedMilestone:
    at = datetime(2026, 12, day, 10, tzinfo=TZ)
    key = MilestoneKey(kind, month=index) if index else MilestoneKey(kind)
    return PlannedMilestone(key=key, kind=kind, index=index, day=date(2026, 12, day), at=at,
                            slots=[ChannelSlot(channel=Channel.SMS, at=at)])


PLAN = [planned(MessageKind.FIRST_REMINDER, 1), planned(MessageKind.SECOND_REMINDER, 10),
        planned(MessageKind.LAPSE_NOTICE, 20), planned(MessageKind.FOLLOW_UP, 25, 1)]


def test_after_a_hold_the_latest_due_and_the_formal_demand_before_the_lapse_go_out():
    lapses = datetime(2026, 12, 20, 0, tzinfo=TZ)
    # Held until the 12th: the first reminder (the formal demand) and the second go out.
    assert due_after_hold(PLAN, datetime(2026, 12, 12, tzinfo=TZ), lapses) == []
    # Held until after the lapse: only the lapse notice; the reminders are superseded.
    assert due_after_hold(PLAN, datetime(2026, 12, 21, tzinfo=TZ), lapses) == [
        "first_reminder", "second_reminder"]
    # Held until the 26th: only the follow-up.
    assert due_after_hold(PLAN, datetime(2026, 12, 26, tzinfo=TZ), lapses) == [
        "first_reminder", "second_reminder", "lapse_notice"]
    # Nothing due yet: nothing superseded.
    assert due_after_hold(PLAN, datetime(2026, 11, 30, tzinfo=TZ), lapses) == []
    # Without a lapse (a rescission): the formal demand always goes out.
    assert due_after_hold(PLAN, datetime(2026, 12, 21, tzinfo=TZ), None) == [
        "second_reminder"]


@pytest.mark.parametrize(("reason", "for_good"), [
    ("21211", True), ("30005", True), ("no-answer", True), ("bounce", True), ("5.1.1", True),
    ("43004", True), ("no_address", True), ("suppressed", True), (None, True), ("", True),
    ("provider_unavailable", False), ("20003", False), ("content_rule", False),
    ("sms_over_budget", False), ("dial_limit", False), ("503", False), ("42001", False),
])
def test_only_a_failure_of_the_customers_address_is_for_good(reason, for_good):
    assert failed_for_good(reason) is for_good


def test_every_failure_on_our_side_has_a_meaning_operators_can_read():
    assert all(meaning(code) is not None for code in OUR_SIDE)


WINDOWS = {Channel.SMS: (time(8), time(21)), Channel.VOICE: (time(9), time(21))}


@pytest.mark.parametrize(("hour", "minute", "channel", "expected"), [
    (10, 0, Channel.SMS, shanghai(10)),
    (8, 0, Channel.SMS, shanghai(8)),  # the window opens at 08:00 sharp
    (7, 59, Channel.SMS, shanghai(8)),
    (20, 59, Channel.SMS, shanghai(20, 59)),
    (21, 0, Channel.SMS, datetime(2026, 12, 8, 8, 0, tzinfo=TZ)),  # closes at 21:00
    (23, 30, Channel.SMS, datetime(2026, 12, 8, 8, 0, tzinfo=TZ)),
    (8, 30, Channel.VOICE, shanghai(9)),
    (3, 0, Channel.EMAIL, shanghai(3)),  # no window given: never held back
])
def test_an_event_message_waits_for_its_channels_window(hour, minute, channel, expected):
    assert allowed_at(shanghai(hour, minute), channel, WINDOWS) == expected


def test_an_event_message_goes_channel_by_channel_as_each_window_opens():
    assert event_slots(shanghai(8, 30), [Channel.SMS, Channel.VOICE], WINDOWS) == [
        (shanghai(8, 30), [Channel.SMS]), (shanghai(9), [Channel.VOICE])]
    assert event_slots(shanghai(12), [Channel.SMS, Channel.VOICE], WINDOWS) == [
        (shanghai(12), [Channel.SMS, Channel.VOICE])]
    # A UTC clock is read in Shanghai: 14:00 UTC is 22:00 there.
    assert allowed_at(datetime(2026, 12, 7, 14, 0, tzinfo=UTC), Channel.SMS, WINDOWS) == \
        datetime(2026, 12, 8, 8, 0, tzinfo=TZ)


def test_after_the_close_only_underwritings_decision_still_goes():
    assert still_due_after_close(MessageKind.REINSTATEMENT_APPROVED)
    assert still_due_after_close(MessageKind.REINSTATEMENT_REFUSED)
    assert not still_due_after_close(MessageKind.PAYMENT_AFTER_LAPSE)
    assert not still_due_after_close(MessageKind.FIRST_REMINDER)


M = MessageKind


@pytest.mark.parametrize(("kind", "position", "lapsed", "resent"), [
    (None, None, True, True),  # an event's message (a decision, an explanation)
    (M.FOLLOW_UP, 4, True, True),  # the latest milestone gone
    (M.FOLLOW_UP, 3, True, False),  # superseded by the next follow-up
    (M.SECOND_REMINDER, 1, False, False),  # superseded by the lapse notice
    (M.FIRST_REMINDER, 0, False, True),  # the formal demand, before the lapse
    (M.FIRST_REMINDER, 0, True, False),  # ... and after it: its grace period is over
    (M.LAPSE_NOTICE, 2, True, True),  # a formal notice holds
])
def test_a_repaired_contact_gets_again_only_what_still_holds(kind, position, lapsed, resent):
    assert worth_resending(kind, position, latest=4, lapsed=lapsed) is resent


def test_a_segment_adds_its_channels_at_their_own_opening():
    at10 = datetime(2027, 1, 4, 10, tzinfo=TZ)
    at8 = datetime(2027, 1, 4, 8, tzinfo=TZ)
    windows = {Channel.SMS: (time(8), time(21)), Channel.AGENT_CALL: (time(9), time(21))}
    assert with_segment_channels([(at10, [Channel.VOICE])], [Channel.VOICE, Channel.AGENT_CALL],
                                 windows) == [(at10, [Channel.VOICE, Channel.AGENT_CALL])]
    # Caught up at 08:00, the agent's call waits for 09:00; SMS keeps its own slot.
    assert with_segment_channels([(at8, [Channel.SMS])], [Channel.AGENT_CALL, Channel.SMS],
                                 windows) == [(at8, [Channel.SMS]),
                                              (at8 + timedelta(hours=1), [Channel.AGENT_CALL])]


def _milestone(at: datetime, *channels: Channel) -> PlannedMilestone:
    return PlannedMilestone(key=MilestoneKey(MessageKind.FIRST_REMINDER),
                            kind=MessageKind.FIRST_REMINDER, day=at.date(), at=at,
                            slots=[ChannelSlot(channel=c, at=at) for c in channels])


WINDOWS = {Channel.SMS: (time(8), time(21)), Channel.WECHAT: (time(8), time(21)),
           Channel.VOICE: (time(9), time(21))}


def test_a_milestone_caught_up_in_quiet_hours_goes_when_its_first_channel_opens():
    planned = datetime(2026, 11, 23, 10, tzinfo=TZ)
    m = _milestone(planned, Channel.SMS, Channel.VOICE)
    night = datetime(2026, 11, 23, 22, tzinfo=TZ)
    morning = datetime(2026, 11, 24, 8, tzinfo=TZ)
    assert milestone_moment(m, night, 1, WINDOWS) == morning
    assert milestone_moment(m, planned + timedelta(hours=3), 1, WINDOWS) == planned  # open
    # 12 journey hours late in compressed time is a workflow task's latency: no wait.
    assert milestone_moment(m, night, 176_400, WINDOWS) == planned
    # At 08:00 the SMS goes, dated then; the call waits for 09:00.
    assert caught_up_slots(m, morning, 1, WINDOWS, waited=True) == [
        (morning, [Channel.SMS]), (morning + timedelta(hours=1), [Channel.VOICE])]
    assert caught_up_slots(m, planned, 1, WINDOWS, waited=False) == m.slots_by_time()
