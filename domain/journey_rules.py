"""The journey's rules that the workflow follows, as pure functions over plain values.

The workflow orchestrates (waits, sends, records); what a fact means is decided here:
what ends a journey and how, which fallback order applies, which channels stand in for
one that failed, and which messages must reach the policyholder provably.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum

from domain.ids import MilestoneKey
from domain.journey import Outcome, PaymentOutcome, RecipientScope, Stage
from domain.models import Channel, MessageKind, PolicyStatus, ProductKind, Segment, TriggerKind
from domain.plan import TZ, PlannedMilestone
from domain.provider_codes import OUR_SIDE


class ChannelRole(StrEnum):
    """What a channel does in a milestone: the formal written notice, the short message,
    or the call. A role whose channels all failed is filled by another channel of the
    same role before anything else (MISSION section 2: the lapse notice is a formal
    letter, by e-mail with its PDF or on paper)."""

    FORMAL = "formal"
    SHORT = "short"
    CALL = "call"


ROLE_OF: dict[Channel, ChannelRole] = {
    Channel.EMAIL: ChannelRole.FORMAL,
    Channel.LETTER: ChannelRole.FORMAL,
    Channel.SMS: ChannelRole.SHORT,
    Channel.WECHAT: ChannelRole.SHORT,
    Channel.WECOM: ChannelRole.SHORT,
    Channel.VOICE: ChannelRole.CALL,
    Channel.AGENT_CALL: ChannelRole.CALL,
}

# Channels whose delivery can be proven afterwards: a delivery receipt (SMS), a delivered
# event (e-mail), the print vendor's hand-over (letter), a connected call (voice, agent).
PROVABLE: frozenset[Channel] = frozenset({Channel.SMS, Channel.EMAIL, Channel.LETTER,
                                          Channel.VOICE, Channel.AGENT_CALL})

# The notices the law needs to reach the policyholder: the formal demand (Insurance Law
# art. 36) and the formal lapse notice. When none of their provable channels reached the
# policyholder, operations get a task.
FORMAL_NOTICES: frozenset[MessageKind] = frozenset({MessageKind.FIRST_REMINDER,
                                                    MessageKind.LAPSE_NOTICE,
                                                    MessageKind.RESCISSION_NOTICE})

FOLLOW_UPS: frozenset[MessageKind] = frozenset({MessageKind.FOLLOW_UP,
                                                MessageKind.REENROLMENT_OFFER})


def is_short_term(trigger: TriggerKind, product_kind: ProductKind) -> bool:
    """A short-term product (or an unpaid renewal) is not renewed rather than lapsed."""
    return trigger is TriggerKind.RENEWAL_UNPAID or product_kind is ProductKind.SHORT_TERM


def end_outcome(trigger: TriggerKind, product_kind: ProductKind) -> Outcome:
    """How a journey ends when its timeline is over and nobody paid or reinstated."""
    if trigger is TriggerKind.RESCISSION:
        return Outcome.RESCINDED
    if is_short_term(trigger, product_kind):
        return Outcome.NOT_RENEWED
    return Outcome.FOLLOW_UP_ENDED


def recheck_outcome(stage: Stage, status: PolicyStatus, outstanding: Decimal) -> Outcome | None:
    """What the policy as stored, re-read before a milestone goes out, does to a journey at
    `stage`: paid through another route (nothing more is owed), terminated or rescinded
    meanwhile, or reinstated after the lapse end it; None: the milestone goes out."""
    if stage is Stage.AT_RISK:
        if outstanding <= 0:
            return Outcome.PAID
        if status is not PolicyStatus.IN_FORCE:
            return Outcome.CANCELLED
        return None
    if status is PolicyStatus.IN_FORCE:
        return Outcome.REINSTATED
    return None


def payment_outcome(trigger: TriggerKind, stage: Stage, outstanding: Decimal) -> PaymentOutcome:
    """What a payment the ledger stored does to a journey, from what is still owed after it:
    in grace (or held) it ends the journey when nothing is owed, else it is recorded; after
    the lapse it is a step towards reinstatement, which the customer is told about; a
    rescission is not undone by a payment."""
    if trigger is TriggerKind.RESCISSION:
        return PaymentOutcome.RECORDED
    if stage in (Stage.AT_RISK, Stage.HELD):
        return PaymentOutcome.PAID_IN_FULL if outstanding <= 0 else PaymentOutcome.RECORDED
    return PaymentOutcome.AFTER_LAPSE


def fallback_segment(segments: list[Segment]) -> Segment:
    """Which fallback order applies: the elderly one for an elderly customer."""
    return Segment.ELDERLY if Segment.ELDERLY in segments else Segment.STANDARD


def stand_ins(failed: Channel, order: list[Channel], tried: set[Channel],
              usable: set[Channel]) -> list[Channel]:
    """The channels to try for a recipient `failed` could not reach: same role first,
    then the rest of the fallback order; never one already tried or without a template."""
    rest = [c for c in order if c not in tried and c != failed and c in usable]
    same = [c for c in rest if ROLE_OF[c] is ROLE_OF[failed]]
    others = [c for c in rest if c not in same]
    # A formal notice with no formal channel left still goes on paper if it can.
    if ROLE_OF[failed] is ChannelRole.FORMAL and Channel.LETTER in usable \
            and Channel.LETTER not in tried and Channel.LETTER not in same \
            and failed is not Channel.LETTER:
        same.append(Channel.LETTER)
        others = [c for c in others if c is not Channel.LETTER]
    return same + others


def segments_at(segments: Sequence[Segment], milestone_segment: Segment | None) -> list[Segment]:
    """The journey's segments at a milestone: elderly from the milestone on which the
    customer reaches the elderly age (the plan marks it, milestone by milestone), in place
    of standard."""
    out = list(segments)
    if milestone_segment is Segment.ELDERLY and Segment.ELDERLY not in out:
        out = [x for x in out if x is not Segment.STANDARD] + [Segment.ELDERLY]
    return out


def must_prove(kind: MessageKind | None, scope: RecipientScope) -> bool:
    """Whether this message must reach this recipient on a provable channel: a formal
    notice, to the policyholder."""
    return kind in FORMAL_NOTICES and scope == "policyholder"


def proven(reached_on: set[Channel]) -> bool:
    """Whether the channels that reached the policyholder include a provable one."""
    return bool(reached_on & PROVABLE)


def with_segment_channels(slots: Sequence[tuple[datetime, list[Channel]]],
                          extra: Sequence[Channel],
                          windows: Mapping[Channel, tuple[time, time]]
                          ) -> list[tuple[datetime, list[Channel]]]:
    """A milestone's slots with the channels a segment that arose during the journey adds
    (hardship: an agent's call), each from the milestone's first slot at its own window's
    opening; a channel the milestone has already keeps its slot."""
    have = {c for _, channels in slots for c in channels}
    added = [c for c in dict.fromkeys(extra) if c not in have]
    if not slots:
        return []
    return _by_time([*slots, *((allowed_at(slots[0][0], c, windows), [c]) for c in added)])


def worth_resending(kind: MessageKind | None, position: int | None, latest: int,
                    lapsed: bool) -> bool:
    """Whether a message that reached nobody goes again once operations repair the
    contact details (MISSION 3). An event's message (`position` None: a decision, an
    explanation) and the latest milestone gone do; so does a formal notice while it holds
    (the formal demand until the lapse, the lapse or rescission notice always). An earlier
    reminder or follow-up is superseded by the later one: a second reminder resent after
    the lapse would speak of a grace period that is over."""
    if position is None or position == latest:
        return True
    if kind is MessageKind.FIRST_REMINDER:
        return not lapsed
    return kind in FORMAL_NOTICES


def needs_home_visit(failed: Channel, scope: RecipientScope, kind: MessageKind | None,
                     segments: Sequence[Segment]) -> bool:
    """An elderly policyholder who did not answer the second reminder's call: a branch
    visits (MISSION section 3)."""
    return (failed is Channel.VOICE and scope == "policyholder"
            and kind is MessageKind.SECOND_REMINDER and Segment.ELDERLY in segments)


def follow_up_paused(kind: MessageKind, stage: Stage) -> bool:
    """Follow-ups and re-enrolment offers wait while underwriting decides a reinstatement."""
    return kind in FOLLOW_UPS and stage is Stage.REINSTATING


def rechecks_policy(kind: MessageKind) -> bool:
    """Whether a milestone re-reads the policy before it goes out (a payment, a
    termination or a reinstatement meanwhile may end the journey). A rescission notice
    goes out whatever the policy's status or balance says."""
    return kind is not MessageKind.RESCISSION_NOTICE


def due_after_hold(milestones: Sequence[PlannedMilestone], now: datetime,
                   lapses_at: datetime | None) -> list[MilestoneKey]:
    """A journey held for its data goes on: of the milestones that fell due while it was
    held, the latest goes out, and the formal demand while the policy has not lapsed;
    the others are superseded. Returns the superseded keys."""
    past = [i for i, m in enumerate(milestones) if m.at <= now]
    keep = set(past[-1:])
    for i in past:
        if milestones[i].kind is MessageKind.FIRST_REMINDER and (
                lapses_at is None or now < lapses_at):
            keep.add(i)
    return [milestones[i].key for i in past if i not in keep]


def redial_at(now: datetime, attempt: int, max_attempts: int, gap: timedelta,
              window: tuple[time, time], until: datetime | None) -> datetime | None:
    """When an unanswered or busy call is dialled again: after the gap, while the attempts
    allow, inside the call window (Shanghai time) and the milestone's time; None: fall
    back instead. The number's daily cap is counted by the activity."""
    if attempt > max_attempts:
        return None
    at = now + gap
    local = at.astimezone(TZ).time()
    if not (window[0] <= local < window[1]) or (until is not None and at > until):
        return None
    return at


def failed_for_good(reason: str | None) -> bool:
    """Whether a failure says the customer cannot be reached at that address (an invalid
    number, a bounce, a call unanswered, no address at all), not that we or the provider
    failed (`provider_codes.OUR_SIDE`). A failure without a reason counts as for good."""
    return reason not in OUR_SIDE


def allowed_at(at: datetime, channel: Channel,
               windows: Mapping[Channel, tuple[time, time]]) -> datetime:
    """The first moment from `at` at which `channel` may reach a customer: `at` inside its
    daily window (Shanghai time), else the window's next opening (MISSION 2: no SMS or
    WeChat outside 08:00-21:00, no call outside 09:00-21:00). A channel without a window
    is never held back."""
    window = windows.get(channel)
    if window is None:
        return at
    start, end = window
    local = at.astimezone(TZ)
    if start <= local.time() < end:
        return at
    day = local.date() if local.time() < start else local.date() + timedelta(days=1)
    return datetime.combine(day, start, TZ)


def event_slots(at: datetime, channels: Sequence[Channel],
                windows: Mapping[Channel, tuple[time, time]]
                ) -> list[tuple[datetime, list[Channel]]]:
    """An event message's channels grouped by the moment each may go out, earliest first."""
    return _by_time((allowed_at(at, channel, windows), [channel]) for channel in channels)


def _by_time(pairs: Iterable[tuple[datetime, list[Channel]]]
             ) -> list[tuple[datetime, list[Channel]]]:
    """Channels grouped by the moment they go out, earliest first, in the order given."""
    groups: dict[datetime, list[Channel]] = {}
    for at, channels in pairs:
        groups.setdefault(at, []).extend(channels)
    return sorted(groups.items())


# Later than this on the wall clock, a milestone is caught up (an outage, a hold), not just
# behind by a workflow task's latency (which compressed time turns into journey hours).
CAUGHT_UP_AFTER = timedelta(minutes=1)


def caught_up(planned: datetime, now: datetime, time_scale: float) -> bool:
    """Whether a step planned for `planned` is taken late enough to count as caught up."""
    return (now - planned) / time_scale >= CAUGHT_UP_AFTER


def milestone_moment(m: PlannedMilestone, now: datetime, time_scale: float,
                     windows: Mapping[Channel, tuple[time, time]]) -> datetime:
    """When a milestone goes: its planned moment, or, caught up late in the quiet hours of
    every one of its channels (data verified at 22:00, a worker back at 22:00 after the
    10:00 timer), when the first of them opens."""
    if not caught_up(m.at, now, time_scale):
        return m.at
    opens = min((allowed_at(now, c, windows) for c in m.channels), default=now)
    return opens if opens > now else m.at


def caught_up_slots(m: PlannedMilestone, now: datetime, time_scale: float,
                    windows: Mapping[Channel, tuple[time, time]], waited: bool
                    ) -> list[tuple[datetime, list[Channel]]]:
    """A milestone's slots as it goes. Caught up late, those gone by go now if their
    channels are open, else when they open (a call caught up at 08:00 waits for 09:00);
    `waited`: the milestone waited for the morning, and its slots are dated then."""
    slots = m.slots_by_time()
    late = [c for at, channels in slots if at <= now for c in channels]
    if not late or not caught_up(m.at, now, time_scale) \
            or (not waited and event_slots(now, late, windows) == [(now, late)]):
        return slots
    return _by_time([*event_slots(now, late, windows),
                     *((at, cs) for at, cs in slots if at > now)])


def still_due_after_close(kind: MessageKind) -> bool:
    """Whether a message that waited out quiet hours still goes once the journey has
    closed: the customer must hear underwriting's decision; anything else (a reminder
    resent, an explanation of reinstatement) is moot once the journey is over."""
    return kind in (MessageKind.REINSTATEMENT_APPROVED, MessageKind.REINSTATEMENT_REFUSED)
