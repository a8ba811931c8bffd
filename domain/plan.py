"""The dated timeline of a journey: what the planner produces and the workflow follows."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from pydantic import Field

from domain.ids import MilestoneKey
from domain.models import Channel, Milestone, Model, Segment, TriggerKind

TZ = ZoneInfo("Asia/Shanghai")


class SendWindow(Model):
    """The local hours in which a channel may reach a customer."""

    start: time
    end: time


def _default_windows() -> dict[Channel, SendWindow]:
    written = SendWindow(start=time(8, 0), end=time(21, 0))
    spoken = SendWindow(start=time(9, 0), end=time(21, 0))
    return {
        Channel.SMS: written,
        Channel.WECHAT: written,
        Channel.WECOM: written,
        Channel.EMAIL: written,
        Channel.LETTER: written,
        Channel.VOICE: spoken,
        Channel.AGENT_CALL: spoken,
    }


class CompanyRules(Model):
    """Company-wide rules (quiet hours, dial limits). Numbers are MISSION.md defaults."""

    send_windows: dict[Channel, SendWindow] = Field(default_factory=_default_windows)
    max_dial_attempts_per_day: int = Field(6, ge=1, le=20)
    inquiry_response_business_days: int = Field(1, ge=1, le=10)
    # How long a message is worth retrying: until the end of its channels' window this
    # many business days after its day (never past the next milestone). Per milestone
    # kind; kinds not listed use `send_deadline_business_days`.
    send_deadline_business_days: int = Field(1, ge=0, le=10)
    send_deadline_by_milestone: dict[Milestone, int] = Field(default_factory=dict)
    # A busy or unanswered automated call is dialled again after this gap, within the
    # voice window, never more than max_dial_attempts_per_day to one number.
    redial_gap_minutes: int = Field(30, ge=5, le=240)
    # How long a held journey waits for operations before it escalates.
    hold_business_days: int = Field(1, ge=1, le=10)


class ChannelSlot(Model):
    channel: Channel
    at: datetime  # aware, Asia/Shanghai: the first allowed moment for this channel


class PlannedMilestone(Model):
    key: MilestoneKey  # unique in a plan: first_reminder, follow_up_3, ...
    kind: Milestone
    index: int | None = None  # the follow-up month k
    day: date  # the business day it goes out on
    at: datetime  # the earliest slot of its channels
    slots: list[ChannelSlot]
    warnings: list[str] = Field(default_factory=list)
    # The segment whose channels this milestone uses: elderly from the day the customer
    # turns the product's elderly age, decided for each milestone's own day.
    segment: Segment = Segment.STANDARD
    # Until when a send of this milestone is still useful (retries stop, failures are
    # recorded and fall back): CompanyRules.send_deadline_*; None in plans made before.
    until: datetime | None = None

    @property
    def channels(self) -> list[Channel]:
        return [s.channel for s in self.slots]

    def slots_by_time(self) -> list[tuple[datetime, list[Channel]]]:
        """The channels grouped by the moment they may go out, earliest first."""
        groups: dict[datetime, list[Channel]] = {}
        for slot in self.slots:
            groups.setdefault(slot.at, []).append(slot.channel)
        return sorted(groups.items())


class JourneyPlan(Model):
    policy_number: str
    trigger: TriggerKind
    segments: list[Segment]
    due_date: date  # D
    grace_ends_on: date | None  # E; None for a rescission
    lapses_on: date | None  # L = E + 1, cover suspended from 00:00
    lapses_at: datetime | None
    reinstatement_deadline: date | None  # L + reinstatement years, for reinstatable products
    milestones: list[PlannedMilestone]
    warnings: list[str] = Field(default_factory=list)

    def milestone(self, key: str) -> PlannedMilestone:
        for m in self.milestones:
            if m.key == key:
                return m
        raise KeyError(key)
