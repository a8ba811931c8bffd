"""The journey timeline of MISSION section 2: which milestone goes out when, over which channels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from domain.calendar import BusinessCalendar, add_months, add_years
from domain.ids import MilestoneKey
from domain.journey_rules import fallback_segment, is_short_term
from domain.models import (
    Channel,
    MessageKind,
    Product,
    Segment,
    Trigger,
    TriggerKind,
)
from domain.plan import TZ, ChannelSlot, CompanyRules, JourneyPlan, PlannedMilestone

_COMPANY_DEFAULTS = CompanyRules()


@dataclass(frozen=True)
class _Draft:
    """A milestone before its send times: `base` is the rule's date, `day` the business day."""

    kind: MessageKind
    index: int | None
    base: date
    day: date
    channels: list[Channel]
    segment: Segment = Segment.STANDARD

    @property
    def key(self) -> MilestoneKey:
        return MilestoneKey(self.kind, self.index)


def plan_journey(trigger: Trigger, product: Product, segments: set[Segment],
                 calendar: BusinessCalendar, company: CompanyRules = _COMPANY_DEFAULTS,
                 starts_at: datetime | None = None,
                 elderly_from: date | None = None) -> JourneyPlan:
    """The dated timeline of a journey; `starts_at` (aware) clips what is already past."""
    if starts_at is not None and starts_at.tzinfo is None:
        raise ValueError("starts_at needs a time zone, e.g. 2026-09-01T10:00:00+08:00")
    planner = _Planner(product, segments, calendar, company, elderly_from)
    due = trigger.due_date
    if trigger.kind is TriggerKind.RESCISSION:
        # No grace and no reinstatement: one formal notice, from the decision date on.
        drafts = [planner.draft(MessageKind.RESCISSION_NOTICE, due,
                                calendar.next_business_day(due, include_today=True))]
        grace_ends_on = lapses_on = lapses_at = deadline = None
        must_send = MessageKind.RESCISSION_NOTICE
    else:
        rules = product.rules
        grace_ends_on = due + timedelta(days=rules.grace_days)
        lapses_on = grace_ends_on + timedelta(days=1)
        lapses_at = datetime.combine(lapses_on, time(0), TZ)
        short_term = is_short_term(trigger.kind, product.kind)
        reinstatable = rules.reinstatable and not short_term
        deadline = add_years(lapses_on, rules.reinstatement_years) if reinstatable else None
        drafts = planner.grace_drafts(due, grace_ends_on, lapses_on)
        drafts += planner.after_lapse_drafts(lapses_on, reinstatable, short_term)
        must_send = MessageKind.FIRST_REMINDER

    milestones, clip_warnings = planner.place_all(drafts, starts_at, must_send, lapses_at)
    milestones = planner.with_deadlines(milestones)
    warnings = [w for m in milestones for w in m.warnings] + clip_warnings
    return JourneyPlan(
        policy_number=trigger.policy_number,
        trigger=trigger.kind,
        segments=sorted(segments),
        due_date=due,
        grace_ends_on=grace_ends_on,
        lapses_on=lapses_on,
        lapses_at=lapses_at,
        reinstatement_deadline=deadline,
        milestones=milestones,
        warnings=list(dict.fromkeys(warnings)),
    )


class PlanCache:
    """The plans of journeys that differ only by policy, made once: a scan plans thousands
    of journeys whose trigger kind, due date, product, segments, clock and elderly day are
    the same, and `plan_journey` reads nothing else of them (the policy number is only
    copied into the plan). One cache is kept for one scan; a product, calendar or company
    rules other than the ones a plan was made with (not the same object, or not equal)
    make a new plan."""

    def __init__(self) -> None:
        self._plans: dict[tuple, tuple[Product, BusinessCalendar, CompanyRules,
                                       JourneyPlan]] = {}
        self.made = 0  # the plans actually made; the rest were copies

    def plan(self, trigger: Trigger, product: Product, segments: set[Segment],
             calendar: BusinessCalendar, company: CompanyRules = _COMPANY_DEFAULTS,
             starts_at: datetime | None = None,
             elderly_from: date | None = None) -> JourneyPlan:
        key = (trigger.kind, trigger.due_date, product.code, frozenset(segments), starts_at,
               elderly_from)
        found = self._plans.get(key)
        if (found is not None and found[0] is product and found[1] is calendar
                and (found[2] is company or found[2] == company)):
            return found[3].model_copy(update={"policy_number": trigger.policy_number})
        plan = plan_journey(trigger, product, segments, calendar, company, starts_at,
                            elderly_from)
        self.made += 1
        self._plans[key] = (product, calendar, company, plan)
        return plan


class _Planner:
    def __init__(self, product: Product, segments: set[Segment], calendar: BusinessCalendar,
                 company: CompanyRules, elderly_from: date | None = None) -> None:
        self.product = product
        self.rules = product.rules
        self.calendar = calendar
        self.company = company
        # Hardship changes the wording only, and group policies use the standard channels.
        self.segment = fallback_segment(list(segments))
        self.elderly_from = elderly_from

    def segment_on(self, day: date) -> Segment:
        """Elderly from the day the customer turns the elderly age, for each milestone."""
        if self.elderly_from is not None and day >= self.elderly_from:
            return Segment.ELDERLY
        return self.segment

    def draft(self, kind: MessageKind, base: date, day: date,
              index: int | None = None, extra: Channel | None = None) -> _Draft:
        segment = self.segment_on(day)
        channels = self.rules.channels_for(kind, segment)
        if not channels:
            raise ValueError(f"product {self.product.code} has no channel rule for {kind} "
                             f"(segment {segment}); add one to its channel_rules")
        if extra is not None and extra not in channels:
            channels.append(extra)
        return _Draft(kind, index, base, day, channels, segment)

    def grace_drafts(self, due: date, grace_ends_on: date, lapses_on: date) -> list[_Draft]:
        cal, rules = self.calendar, self.rules
        first_day = cal.add_business_days(due, rules.first_reminder_business_days)
        drafts = [self.draft(MessageKind.FIRST_REMINDER, due, first_day)]
        second = grace_ends_on - timedelta(days=rules.second_reminder_days_before_grace_end)
        # Moved earlier, not later, so the customer keeps the time to pay.
        second_day = cal.previous_business_day(second, include_today=True)
        # A grace period too short for two reminders keeps only the formal demand.
        if second_day > first_day:
            drafts.append(self.draft(MessageKind.SECOND_REMINDER, second, second_day))
        drafts.append(self.draft(MessageKind.LAPSE_NOTICE, lapses_on,
                                 cal.next_business_day(lapses_on, include_today=True)))
        return drafts

    def after_lapse_drafts(self, lapses_on: date, reinstatable: bool,
                           short_term: bool) -> list[_Draft]:
        if reinstatable:
            kind, care = MessageKind.FOLLOW_UP, set(self.rules.care_email_months)
            months = range(1, self.rules.follow_up_months + 1)
        elif short_term:
            # MISSION 8: the not-renewed notice carries the re-enrolment offer, repeated
            # once one month later, by SMS and e-mail (on paper for the elderly, as the
            # care messages); none when the product has no follow-up months.
            kind, care = MessageKind.REENROLMENT_OFFER, {1}
            months = range(1, min(self.rules.follow_up_months, 1) + 1)
        else:
            return []
        drafts = []
        for k in months:
            base = add_months(lapses_on, k)
            day = self.calendar.next_business_day(base, include_today=True)
            # Elderly customers get the care message on paper instead of by e-mail.
            care_channel = (Channel.LETTER if self.segment_on(day) is Segment.ELDERLY
                            else Channel.EMAIL)
            drafts.append(self.draft(kind, base, day, index=k,
                                     extra=care_channel if k in care else None))
        return drafts

    def place_all(self, drafts: list[_Draft], starts_at: datetime | None,
                  must_send: MessageKind,
                  lapses_at: datetime | None) -> tuple[list[PlannedMilestone], list[str]]:
        """Send times for every draft, clipped to `starts_at`; warnings for what was dropped."""
        placed = [self.place(d) for d in drafts]
        if starts_at is None:
            return placed, []
        started = f"{starts_at.astimezone(TZ):%Y-%m-%d %H:%M}"
        start_day = starts_at.astimezone(TZ).date()
        kept: list[PlannedMilestone] = []
        warnings: list[str] = []
        for draft, milestone in zip(drafts, placed, strict=True):
            if milestone.at >= starts_at:
                kept.append(milestone)
                continue
            if draft.kind is not must_send and draft.day < start_day:
                warnings.append(f"{draft.key} was due on {draft.day}, before the journey "
                                f"started ({started}): not sent")
                continue
            moved = self.place(draft, not_before=starts_at, note=(
                f"{draft.key} moved from {milestone.at:%Y-%m-%d %H:%M} because the journey "
                f"started at {started}"))
            if (draft.kind is MessageKind.FIRST_REMINDER and lapses_at is not None
                    and moved.at >= lapses_at):
                # The grace period is over: the lapse notice becomes the notice that must go out.
                warnings.append(f"{draft.key} can no longer go out before the lapse "
                                f"({lapses_at:%Y-%m-%d %H:%M}): not sent")
                must_send = MessageKind.LAPSE_NOTICE
                continue
            kept.append(moved)
        return kept, warnings

    def with_deadlines(self, milestones: list[PlannedMilestone]) -> list[PlannedMilestone]:
        """Each milestone's send deadline: the end of its channels' latest window on the
        n-th business day after its day, never past the next milestone."""
        out = []
        for i, m in enumerate(milestones):
            days = self.company.send_deadline_by_milestone.get(
                m.kind, self.company.send_deadline_business_days)
            day = m.day
            for _ in range(days):
                day = self.calendar.next_business_day(day)
            end = max(self.company.send_windows[c].end for c in m.channels)
            until = datetime.combine(day, end, TZ)
            if i + 1 < len(milestones):
                until = min(until, milestones[i + 1].at)
            out.append(m.model_copy(update={"until": max(until, m.at)}))
        return out

    def place(self, draft: _Draft, not_before: datetime | None = None,
              note: str | None = None) -> PlannedMilestone:
        slots = []
        for channel in draft.channels:
            at = self._allowed(channel, draft.day, self.rules.send_time)
            if not_before is not None and at < not_before:
                local = not_before.astimezone(TZ)
                at = self._allowed(channel, local.date(), local.time())
            slots.append(ChannelSlot(channel=channel, at=at))
        at = min(s.at for s in slots)
        last = max(s.at.date() for s in slots)
        warnings = self.calendar.fallback_warnings(min(draft.base, draft.day, at.date()), last)
        return PlannedMilestone(key=draft.key, kind=draft.kind, index=draft.index, day=at.date(),
                                segment=draft.segment,
                                at=at, slots=slots,
                                warnings=warnings + ([note] if note else []))

    def _allowed(self, channel: Channel, day: date, moment: time) -> datetime:
        """The first moment at/after `moment` on `day` inside the channel's send window."""
        window = self.company.send_windows.get(channel)
        if window is None:
            raise ValueError(f"company rules have no send window for {channel}; "
                             "add one to send_windows")
        if not self.calendar.is_business_day(day) or moment >= window.end:
            day, moment = self.calendar.next_business_day(day), window.start
        return datetime.combine(day, max(moment, window.start), TZ)
