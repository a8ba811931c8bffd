"""Evidence for a dispute: the chain's head, what counts as a break, and the formal-demand rule.

The hash chain itself is kept by PostgreSQL (migrations/0005_evidence.sql); the checks
here are pure: they turn what the chain and the records say into named breaks, and the
first reminder's records into a finding on the formal demand (Insurance Law art. 36).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from domain.models import ACCEPTED, Channel, Model, NotificationStatus

# --- the head, as a journey's history keeps it ---------------------------------------------


class ChainHead(Model):
    """The latest entry of a journey's chain: `hash` is its entry hash (hex)."""

    journey_id: str
    seq: int = Field(ge=0)
    hash: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class Anchored(Model):
    """A base for activity results that hand the chain's head to the journey's history:
    the verifier looks for a top-level `chain_head` in every activity result."""

    chain_head: ChainHead | None = None


# --- what may change after a row was first chained ---------------------------------------

# Fields that move as a record lives on (a status, an answer time).
_MUTABLE: dict[str, frozenset[str]] = {
    "notifications": frozenset({"status", "error_code", "attempts"}),
    "print_queue": frozenset({"status", "handed_over_at"}),
    "journeys": frozenset({"stage", "outcome", "lapsed_at", "closed_at"}),
    "inquiries": frozenset({"note"}),
}
# Fields that may be set once, from empty: (table, field) -> the fact that says it is set.
_SET_ONCE: dict[tuple[str, str], str] = {
    ("notifications", "provider"): "provider_set",
    ("notifications", "provider_message_id"): "provider_set",
    ("print_queue", "tracking_number"): "tracking_set",
    ("inquiries", "handled_at"): "handled",
    ("inquiries", "escalated_at"): "escalated",
}
# A message's text may be rendered again only for a new attempt that no provider has had.
_REATTEMPT = frozenset({"template_id", "template_version", "subject", "body"})
_NOT_TAKEN = ("queued", "sending")


def disallowed_changes(table: str, changed: Iterable[str], before: dict, after: dict
                       ) -> list[str]:
    """The fields of one new version of a row that were not allowed to change.

    `before` and `after` are the clear facts of the previous and the new version.
    """
    bad = []
    for field in sorted(changed):
        if field in _MUTABLE.get(table, ()):
            continue
        fact = _SET_ONCE.get((table, field))
        if fact is not None and not before.get(fact):
            continue
        if table == "notifications" and field in _REATTEMPT and (
                before.get("status") in _NOT_TAKEN and after.get("status") == "sending"):
            continue
        if table == "notification_sends" and after.get("notification_status") == "sending":
            continue  # the same new attempt: what it goes to and carries
        bad.append(field)
    return bad


# --- a notification's status must agree with its events ----------------------------------

# Forward only; a failure may follow a delivery (an e-mail that bounces after acceptance).
_S = NotificationStatus
STATUS_RANK: dict[NotificationStatus, int] = {
    _S.QUEUED: 0, _S.SENDING: 1, _S.UNKNOWN: 1, _S.SENT: 2, _S.DELIVERED: 3, _S.FAILED: 4,
    _S.BOUNCED: 4, _S.SKIPPED: 4}


def status_from_events(events: Iterable[tuple[str, bool]]) -> NotificationStatus | None:
    """The status a record must have after its events, oldest first: (status, from_provider).

    Our own events (a send attempt, an agent's or operator's word) set the status while no
    provider has settled it (`unknown` included: a look-up that proves the provider never
    got the message sends it again), or move it forward; a provider's event only moves it
    forward; events that are not statuses (opened, clicked) are history only.
    """
    current = None
    for status, from_provider in events:
        if status not in STATUS_RANK:
            continue
        forward = current is None or STATUS_RANK[status] > STATUS_RANK[current]
        if forward or (not from_provider and current in (_S.QUEUED, _S.SENDING, _S.UNKNOWN)):
            current = NotificationStatus(status)
    return current


# --- breaks ------------------------------------------------------------------------------


class BreakKind(StrEnum):
    ENTRY_ALTERED = "entry_altered"  # an entry no longer hashes to its own hash
    ENTRY_MISSING = "entry_missing"  # a gap in the sequence
    LINK_BROKEN = "link_broken"  # an entry does not carry its predecessor's hash
    RECORD_CHANGED = "record_changed"  # a row differs from its last chained version
    RECORD_MISSING = "record_missing"  # a chained row is gone
    RECORD_NOT_CHAINED = "record_not_chained"  # a row that no entry covers
    CHANGE_NOT_ALLOWED = "change_not_allowed"  # a chained change to a field that must not
    STATUS_DISAGREES = "status_disagrees"  # a notification's status against its events
    HEAD_MISMATCH = "head_mismatch"  # Temporal's head differs from the chain's entry
    HEAD_BEYOND_CHAIN = "head_beyond_chain"  # Temporal has a head past the chain's end
    ANCHOR_NOT_IN_HISTORY = "anchor_not_in_history"  # PostgreSQL says anchored; history not
    NOT_ANCHORED = "not_anchored"  # a closed journey without any head in Temporal


class Break(Model):
    kind: BreakKind
    chain: str  # the journey id, or "policy P..." for a policy's own chain
    seq: int | None = None
    table: str | None = None
    key: str | None = None
    fields: list[str] = []
    detail: str = ""

    def line(self) -> str:
        where = f"{self.chain}" + (f" #{self.seq}" if self.seq is not None else "")
        what = f" {self.table} {self.key}" if self.table else ""
        fields = f" [{', '.join(self.fields)}]" if self.fields else ""
        return f"{self.kind.value}: {where}{what}{fields}: {self.detail}"


class Verification(Model):
    """What `lapse verify` found: clean when there is no break."""

    policy_number: str | None  # None: every policy
    chains: int
    entries: int
    records: int
    histories: int | None  # workflow runs whose history was compared; None: not compared
    histories_unavailable: int | None = None  # runs the server no longer has (retention)
    breaks: list[Break]

    @property
    def clean(self) -> bool:
        return not self.breaks


def chain_label(kind: str, chain_id: str) -> str:
    return chain_id if kind == "journey" else f"policy {chain_id}"


# --- the formal demand (Insurance Law art. 36) ----------------------------------------------


class Proof(StrEnum):
    PROVIDER_RECEIPT = "provider_receipt"  # the provider's delivery receipt (callback)
    LETTER_TRACKING = "letter_tracking"  # a registered letter's tracking number
    AGENT_CALL = "agent_call"  # an agent's record of the call reaching the customer


PROOF_WORDS = {
    Proof.PROVIDER_RECEIPT: "服务商送达回执",
    Proof.LETTER_TRACKING: "挂号信邮件号",
    Proof.AGENT_CALL: "坐席外呼记录",
}

Receipt = Literal["provider", "own"]  # who said 'delivered': a provider's callback, or us


class DemandRecord(Model):
    """One first-reminder record to the policyholder (or group employer), as facts.

    The monthly review passes the facts only; the evidence pack also the times and
    references, so that the finding can say when and on what.
    """

    channel: Channel
    status: NotificationStatus
    receipt: Receipt | None = None  # who recorded the latest 'delivered' event, if any
    tracked: bool = False  # a letter with a tracking number
    notification_id: str | None = None
    receipt_at: datetime | None = None
    provider_message_id: str | None = None
    tracking_number: str | None = None
    posted_at: datetime | None = None
    agent: str | None = None


class DemandFinding(Model):
    delivered: bool  # proven delivered
    accepted: bool  # a provider (or our print queue, or an agent) took it on
    proof: Proof | None = None
    at: datetime | None = None
    channel: Channel | None = None
    notification_id: str | None = None
    reference: str | None = None  # provider message id, tracking number or agent


def proof_of(record: DemandRecord) -> Proof | None:
    """What proves this record reached the customer, if anything does."""
    if record.channel is Channel.LETTER and record.tracked:
        return Proof.LETTER_TRACKING
    if record.status is not NotificationStatus.DELIVERED or record.receipt is None:
        return None
    if record.channel is Channel.AGENT_CALL:
        return Proof.AGENT_CALL  # an agent reported the call reached the customer
    # Our own 'delivered' on another channel is an operator's word, not a receipt.
    return Proof.PROVIDER_RECEIPT if record.receipt == "provider" else None


def formal_demand(records: Iterable[DemandRecord]) -> DemandFinding:
    """Whether the formal demand was delivered, when (the earliest proof) and on what."""
    records = list(records)
    proven = [(p, r, r.posted_at if p is Proof.LETTER_TRACKING else r.receipt_at)
              for r in records if (p := proof_of(r)) is not None]
    accepted = bool(proven) or any(r.status in ACCEPTED for r in records)
    if not proven:
        return DemandFinding(delivered=False, accepted=accepted)
    # The earliest proof; a proof without a time (the monthly review's facts) last.
    proof, r, at = min(proven, key=lambda p: (p[2] is None, p[2].timestamp() if p[2] else 0))
    reference = {Proof.LETTER_TRACKING: r.tracking_number, Proof.AGENT_CALL: r.agent,
                 Proof.PROVIDER_RECEIPT: r.provider_message_id}[proof]
    return DemandFinding(delivered=True, accepted=True, proof=proof, at=at, channel=r.channel,
                         notification_id=r.notification_id, reference=reference)
