"""A journey page's dated timeline (the key dates and the next milestone from the journey's
`status`, and every message it sent with what the records say became of it) and its open
inquiries, the overdue ones flagged."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time

from domain.journey import InquiryView, JourneyStatus
from domain.plan import TZ
from infra.deliveries import JourneyRecord
from web.console import words


@dataclass
class Entry:
    at: datetime
    title: str
    kind: str  # "date" (a key date), "sent" (messages on record), "planned" (next)
    shown_at: str
    done: bool  # already past on the journey's clock
    channels: list[str] = field(default_factory=list)
    messages: list[JourneyRecord] = field(default_factory=list)


def _date_entry(title: str, on: date, now: datetime, end_of_day: bool = False) -> Entry:
    moment = datetime.combine(on, time.max if end_of_day else time.min, TZ)
    return Entry(moment, title, "date", words.day(on), moment <= now)


def build(status: JourneyStatus, records: list[JourneyRecord]) -> list[Entry]:
    now = status.journey_now
    entries = [_date_entry("保费应缴日", status.due_date, now)]
    if status.grace_ends_at:
        entries.append(_date_entry("宽限期最后一天", status.grace_ends_at, now, end_of_day=True))
    if status.lapses_at:
        entries.append(Entry(status.lapses_at, "保单效力中止", "date", words.at(status.lapses_at),
                             status.lapses_at <= now))
    if status.reinstatement:
        entries.append(_date_entry("复效申请截止", status.reinstatement.deadline, now,
                                   end_of_day=True))
    # What the journey noted it sent, grouped by milestone, with the records of each.
    sent: dict[str, Entry] = {}
    for n in status.notifications:
        entry = sent.setdefault(n.milestone, Entry(n.at, words.milestone(n.milestone), "sent",
                                                   "", True))
        entry.at = min(entry.at, n.at)
        if n.channel.value not in entry.channels:
            entry.channels.append(n.channel.value)
    for r in records:
        entry = sent.setdefault(r.milestone, Entry(r.created_at, words.milestone(r.milestone),
                                                   "sent", "", True))
        entry.messages.append(r)
        if r.channel not in entry.channels:
            entry.channels.append(r.channel)
    for entry in sent.values():
        entry.shown_at = words.at(entry.at)
    entries.extend(sent.values())
    nxt = status.next_milestone
    if nxt is not None and status.outcome is None:
        entries.append(Entry(nxt.at, words.milestone(nxt.name), "planned", words.at(nxt.at),
                             False, [c.value for c in nxt.channels]))
    if status.outcome is not None:
        # A closed journey's later key dates (a lapse that a payment prevented) never came.
        entries = [e for e in entries if e.done]
    return sorted(entries, key=lambda e: (e.at, e.kind != "date"))


@dataclass(frozen=True)
class OpenInquiry:
    view: InquiryView
    overdue: bool  # not answered by its respond-by time, on the journey's clock


def inquiries(status: JourneyStatus | None) -> list[OpenInquiry]:
    """The open inquiries, the one to answer first on top."""
    if status is None:
        return []
    return [OpenInquiry(i, i.respond_by < status.journey_now)
            for i in sorted(status.open_inquiries, key=lambda i: i.respond_by)]
