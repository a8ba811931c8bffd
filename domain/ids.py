"""Identifiers that one place builds and another reads: one format and one parser each.

A journey id names one journey of a policy for ever (its records, tasks and chain hang
on it), a milestone key names one message of a journey with what repeats it (a resend
after contact repair, the emergency contact, a payment's own message), and a
notification id names one message to one recipient on one channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from domain.models import Channel

_PREFIX = "lapse-"  # the workflow id of a policy's journey (CONTRACT.md)
_POLICY = r"[A-Z0-9][A-Z0-9-]{5,31}"
_RUN_ID = r"[0-9a-fA-F-]{8,64}"
_JOURNEY = re.compile(rf"^{_PREFIX}(?P<policy>{_POLICY})@(?P<run>{_RUN_ID})$")
_BASE = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
_REF = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_RECIPIENT = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")


def workflow_id(policy_number: str) -> str:
    """`lapse-{policy_number}`: one running journey per policy (CONTRACT.md)."""
    return f"{_PREFIX}{policy_number}"


class IdError(ValueError):
    """An identifier that does not have its format. The message names the kind of id and
    the rule, never the value (it may come from outside)."""


@dataclass(frozen=True, order=True)
class JourneyId:
    """`lapse-{policy}@{first run id}`: the whole first run id, which is unique (a prefix
    of a UUIDv7 repeats for about a minute)."""

    policy_number: str
    first_run_id: str

    def __str__(self) -> str:
        return f"{workflow_id(self.policy_number)}@{self.first_run_id}"

    @classmethod
    def of(cls, workflow_id: str, first_run_id: str) -> JourneyId:
        if not workflow_id.startswith(_PREFIX):
            raise IdError(f"journey id: the workflow id must start with '{_PREFIX}'")
        return cls.parse(f"{workflow_id}@{first_run_id}")

    @classmethod
    def parse(cls, text: str) -> JourneyId:
        m = _JOURNEY.match(text or "")
        if m is None:
            raise IdError("journey id: expected lapse-POLICY@RUN_ID")
        return cls(m["policy"], m["run"])


class Suffix(StrEnum):
    """What makes a message a repeat of (or an addition to) its base message."""

    RESEND = "resend"  # after contact repair; ref: the repair's sequence number
    EMERGENCY = "emergency"  # the emergency contact, when the holder is unreachable
    REDIAL = "redial"  # a busy or unanswered call dialled again; ref: the attempt
    TXN = "txn"  # a payment's own message; ref: the transaction id
    APPLICATION = "application"  # a reinstatement decision; ref: the application id


@dataclass(frozen=True)
class MilestoneKey:
    """`base[-suffix[:ref]]`: base is a planned milestone's key (`first_reminder`,
    `follow_up_3`) or an event message's kind (`payment_confirmation`)."""

    base: str
    suffix: Suffix | None = None
    ref: str = ""

    def __post_init__(self) -> None:
        if not _BASE.match(self.base):
            raise IdError("milestone key: the base must be a lower-case word")
        if self.ref and (self.suffix is None or not _REF.match(self.ref)):
            raise IdError("milestone key: a reference needs a suffix and letters, digits "
                          "or _.:- only")

    def __str__(self) -> str:
        if self.suffix is None:
            return self.base
        return f"{self.base}-{self.suffix.value}" + (f":{self.ref}" if self.ref else "")

    def with_suffix(self, suffix: Suffix, ref: str | int = "") -> MilestoneKey:
        return MilestoneKey(self.base, suffix, str(ref))

    @classmethod
    def parse(cls, text: str) -> MilestoneKey:
        base, sep, rest = (text or "").partition("-")
        if not sep:
            return cls(base)
        name, _, ref = rest.partition(":")
        try:
            suffix = Suffix(name)
        except ValueError:
            raise IdError("milestone key: unknown suffix") from None
        return cls(base, suffix, ref)


@dataclass(frozen=True)
class NotificationId:
    """`{journey id}/{milestone key}/{channel}/{recipient id}`: one message to one
    recipient on one channel, the same on every retry."""

    journey: JourneyId
    key: MilestoneKey
    channel: Channel
    recipient_id: str

    def __str__(self) -> str:
        return f"{self.journey}/{self.key}/{self.channel.value}/{self.recipient_id}"

    @classmethod
    def parse(cls, text: str) -> NotificationId:
        parts = (text or "").split("/")
        if len(parts) != 4:
            raise IdError("notification id: expected JOURNEY/MILESTONE/CHANNEL/RECIPIENT")
        journey, key, channel, recipient = parts
        try:
            ch = Channel(channel)
        except ValueError:
            raise IdError("notification id: unknown channel") from None
        if not _RECIPIENT.match(recipient):
            raise IdError("notification id: the recipient id has a bad format")
        return cls(JourneyId.parse(journey), MilestoneKey.parse(key), ch, recipient)


REFERENCE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$"
_REFERENCE = re.compile(REFERENCE_PATTERN)


def check_reference(text: str) -> str:
    """An inquiry or application id: a code (Q-1a2b3c), never a phone number or a name."""
    if not _REFERENCE.match(text or ""):
        raise IdError("an inquiry or application id is a code of up to 64 letters, digits "
                      "or _.:- starting with a letter (not a phone number or a name)")
    return text


def task_id(journey_id: str, kind: str, reference: str) -> str:
    """One task per journey, kind and reason: creating it again changes nothing."""
    return f"{journey_id}/{kind}/{reference}"
