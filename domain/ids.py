"""Identifiers that one place builds and another reads: one format and one parser each.

A journey id names one journey of a policy for ever (its records, tasks and chain hang
on it), a milestone key names one message of a journey with its follow-up month and what
repeats it (a resend after contact repair, the emergency contact, a payment's own
message), and a notification id names one message to one recipient on one channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from pydantic_core import core_schema

from domain.models import Channel, MessageKind

_PREFIX = "lapse-"  # the workflow id of a policy's journey (CONTRACT.md)
_POLICY = r"[A-Z0-9][A-Z0-9-]{5,31}"
_RUN_ID = r"[0-9a-fA-F-]{8,64}"
_JOURNEY = re.compile(rf"^{_PREFIX}(?P<policy>{_POLICY})@(?P<run>{_RUN_ID})$")
_KIND_MONTH = re.compile(r"^(?P<kind>[a-z][a-z_]*?)(?:_(?P<month>[1-9][0-9]?))?$")
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


class MilestoneKey(str):
    """`kind[_month][-suffix[:ref]]`: a message kind (`first_reminder`, an event message
    such as `payment_confirmation`), a follow-up's month (`follow_up_3`), and what repeats
    the message or adds to it (`first_reminder-resend:2`, `payment_after_lapse-txn:T1`).

    Like the vocabulary's StrEnums it is the text it formats to, so records, histories,
    templates and SQL all see the same string; its parts are typed. Built from its parts
    or by `parse`, never by slicing the text."""

    kind: MessageKind
    month: int | None
    suffix: Suffix | None
    ref: str

    def __new__(cls, kind: MessageKind | str, month: int | None = None, *,
                suffix: Suffix | None = None, ref: str | int = "") -> MilestoneKey:
        try:
            kind = MessageKind(kind)
        except ValueError:
            raise IdError("milestone key: the base must be a message kind, or one with "
                          "its follow-up month (follow_up_3)") from None
        ref = str(ref)
        if month is not None and not 1 <= month <= 99:
            raise IdError("milestone key: a follow-up month is 1-99")
        if ref and (suffix is None or not _REF.match(ref)):
            raise IdError("milestone key: a reference needs a suffix and letters, digits "
                          "or _.:- only")
        text = kind.value + (f"_{month}" if month is not None else "")
        if suffix is not None:
            text += f"-{suffix.value}" + (f":{ref}" if ref else "")
        key = super().__new__(cls, text)
        for name, value in (("kind", kind), ("month", month), ("suffix", suffix), ("ref", ref)):
            object.__setattr__(key, name, value)
        return key

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a milestone key cannot be changed")

    def __getnewargs_ex__(self) -> tuple[tuple, dict]:
        return (self.kind, self.month), {"suffix": self.suffix, "ref": self.ref}

    @property
    def base(self) -> MilestoneKey:
        """The message this one repeats or adds to: the key without its suffix."""
        return self if self.suffix is None else MilestoneKey(self.kind, self.month)

    def with_suffix(self, suffix: Suffix, ref: str | int = "") -> MilestoneKey:
        return MilestoneKey(self.kind, self.month, suffix=suffix, ref=ref)

    @classmethod
    def parse(cls, text: str) -> MilestoneKey:
        head, sep, rest = (text or "").partition("-")
        m = _KIND_MONTH.match(head)
        if m is None:
            raise IdError("milestone key: the base must be a message kind, or one with "
                          "its follow-up month (follow_up_3)")
        month = int(m["month"]) if m["month"] else None
        if not sep:
            return cls(m["kind"], month)
        name, _, ref = rest.partition(":")
        try:
            suffix = Suffix(name)
        except ValueError:
            raise IdError("milestone key: unknown suffix") from None
        return cls(m["kind"], month, suffix=suffix, ref=ref)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: object, handler: object
                                     ) -> core_schema.CoreSchema:
        """A model field holds a MilestoneKey, read from its text and written as it."""
        return core_schema.no_info_plain_validator_function(
            cls._of, serialization=core_schema.to_string_ser_schema())

    @classmethod
    def _of(cls, value: object) -> MilestoneKey:
        if isinstance(value, MilestoneKey):
            return value
        if not isinstance(value, str):
            raise IdError("milestone key: expected text")
        return cls.parse(value)


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
