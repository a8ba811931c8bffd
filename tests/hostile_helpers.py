"""Hostile input for journeys: payloads as any Temporal client can send them (the CLI's
`--input`, the raw API), a fresh policy and customer for every attempt, and the checks that
no input froze a journey, sent a message twice or reached someone else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from domain.models import ACCEPTED
from sandbox.outbox import OutboxEntry
from tests.journey_helpers import SAMPLE

# --- payloads ------------------------------------------------------------------------------

SIGNALS = ("payment_received", "debit_failed", "contact_updated", "inquiry_received",
           "inquiry_handled", "reinstatement_applied", "reinstatement_decided",
           "delivery_failed", "data_verified")  # data_verified: a CONTRACT.md addition
UPDATE = "record_payment"
NO_PAYLOAD = object()  # `signal(name)` with no argument at all


def iso(moment: datetime) -> str:
    return moment.isoformat()


def valid_payload(name: str, at: datetime, *, ref: str = "X-1", amount: str = "100.00",
                  notification_id: str = "", channel: str = "sms",
                  approved: bool = True) -> dict:
    """A payload of `name` as CONTRACT.md describes it, as JSON a client would send."""
    when = iso(at)
    return {
        "payment_received": {"transaction_id": ref, "amount": amount, "currency": "CNY",
                             "paid_at": when},
        "record_payment": {"transaction_id": ref, "amount": amount, "currency": "CNY",
                           "paid_at": when},
        "debit_failed": {"failed_at": when, "amount": amount, "reason_code": "card_expired",
                         "reason_text": "银行卡已过有效期"},
        "contact_updated": {"updated_at": when},
        "inquiry_received": {"inquiry_id": ref, "kind": "question", "received_at": when},
        "inquiry_handled": {"inquiry_id": ref, "handled_at": when, "note": "answered"},
        "reinstatement_applied": {"application_id": ref, "applied_at": when},
        "reinstatement_decided": {"application_id": ref, "approved": approved,
                                  "decided_at": when, "reason": "" if approved else "health"},
        "delivery_failed": {"notification_id": notification_id or ref, "channel": channel,
                            "error_code": "30003", "permanent": True},
        "data_verified": {"verified_by": "ops-1", "verified_at": when, "outcome": "proceed"},
    }[name]


MALFORMED = ("no_payload", "two_payloads", "wrong_type", "missing_field", "extra_field",
             "not_an_object", "null")


def malformed_args(kind: str, good: dict) -> list:
    """The arguments of a call whose payload is broken in the way `kind` says."""
    first = next(iter(good))
    if kind == "no_payload":
        return []
    if kind == "two_payloads":  # `--input '{...}' --input '{}'`
        return [good, {}]
    if kind == "wrong_type":
        return [good | {first: [1, 2]}]
    if kind == "missing_field":
        return [{k: v for k, v in good.items() if k != first}]
    if kind == "extra_field":
        return [good | {"unexpected": "x"}]
    if kind == "not_an_object":
        return ["payment"]
    if kind == "null":
        return [None]
    raise ValueError(f"unknown kind of malformed payload: {kind}")


async def raw_signal(handle: WorkflowHandle, name: str, args: list) -> None:
    """Signal by name with exactly these arguments (none, one, several), as the CLI can."""
    await handle.signal(name, args=args)


async def raw_update(handle: WorkflowHandle, name: str, args: list):
    return await handle.execute_update(name, args=args)


# --- a fresh policy for every attempt ---------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """One fresh policyholder: their id and every address a message to them can go to."""

    customer_id: str
    mobile: str
    email: str
    openid: str
    emergency_phone: str

    @property
    def recipient_ids(self) -> set[str]:
        return {self.customer_id, f"{self.customer_id}.ec"}

    @property
    def addresses(self) -> set[str]:
        return {self.mobile, self.email, self.openid, self.emergency_phone}


def fresh_policy(template: str, n: int) -> tuple[list[str], str, Person]:
    """Lines of a policy file: a copy of sample policy `template` and of its holder, under
    new numbers and with contact details no other attempt uses (so that sandbox faults and
    outbox entries belong to this attempt alone). Name, ID number and dates stay those of
    the sample, which pass every data check."""
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()
               if line.startswith("{")]
    policy = next(r for r in records
                  if r["record"] == "policy" and r["policy_number"] == template)
    holder = next(r for r in records
                  if r["record"] == "customer" and r["customer_id"] == policy["policyholder_id"])
    person = Person(customer_id=f"CPROP{n:06d}", mobile=f"+86137{n:08d}",
                    email=f"prop{n:06d}@example.com", openid=f"oProp{n:06d}",
                    emergency_phone=f"+86136{n:08d}")
    number = f"PROP{n:06d}"
    holder = holder | {"customer_id": person.customer_id, "mobile": person.mobile,
                       "email": person.email, "wechat_openid": person.openid,
                       "emergency_contact": {"name": "王芳", "phone": person.emergency_phone,
                                             "relation": "女儿"}}
    policy = policy | {"policy_number": number, "policyholder_id": person.customer_id}
    return ([json.dumps(holder, ensure_ascii=False), json.dumps(policy, ensure_ascii=False)],
            number, person)


# --- frozen journeys ------------------------------------------------------------------------

FROZEN = object()  # what `FreezeWatch.guard` returns when the journey froze meanwhile
_FAILED_ACTIVATION = re.compile(r"Failed activation on workflow \S+ with ID (\S+)")


class FreezeWatch(logging.Handler):
    """Hears the worker report a failed workflow task (the SDK's "Failed activation on
    workflow ... with ID ..." warning, with the exception), so that a test waiting on that
    journey stops waiting and can say why.

    A journey whose workflow task fails never answers an update or a query, and on the
    time-skipping server it stops the clock for good, even once terminated: `env.sleep`
    waits in real time until its RPC times out. So a frozen journey ends its test's use of
    that server (see `guard`)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._loop = asyncio.get_running_loop()
        self._events: dict[str, asyncio.Event] = {}
        self.reasons: dict[str, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = _FAILED_ACTIVATION.search(record.getMessage())
        if found:  # called on the worker's workflow threads
            error = record.exc_info[1] if record.exc_info else None
            reason = f"{type(error).__name__}: {error}" if error else record.getMessage()
            self._loop.call_soon_threadsafe(self._failed, found.group(1), reason)

    def _failed(self, workflow_id: str, reason: str) -> None:
        self.reasons.setdefault(workflow_id, []).append(reason)
        self._event(workflow_id).set()

    def _event(self, workflow_id: str) -> asyncio.Event:
        return self._events.setdefault(workflow_id, asyncio.Event())

    def frozen(self, workflow_id: str) -> bool:
        return self._event(workflow_id).is_set()

    async def guard(self, handle: WorkflowHandle, awaitable: Awaitable):
        """The result of `awaitable`, or FROZEN when the journey's workflow task fails first:
        then the journey is terminated and the wait given up."""
        work = asyncio.ensure_future(awaitable)
        freeze = asyncio.ensure_future(self._event(handle.id).wait())
        await asyncio.wait({work, freeze}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            freeze.cancel()
            return work.result()
        work.cancel()
        with contextlib.suppress(BaseException):
            await work
        await terminate(handle, "frozen: a workflow task failed")
        return FROZEN


@contextlib.contextmanager
def freeze_watch() -> Iterator[FreezeWatch]:
    watch = FreezeWatch()
    logger = logging.getLogger("temporalio.worker._workflow_instance")
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)


async def terminate(handle: WorkflowHandle, reason: str) -> None:
    with contextlib.suppress(RPCError):  # already closed
        await handle.terminate(reason)


async def task_failures(handle: WorkflowHandle) -> list[str]:
    """Why each workflow task of the journey's run failed (WorkflowTaskFailed events)."""
    history = await handle.fetch_history()
    converter = handle._client.data_converter
    reasons = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failure = event.workflow_task_failed_event_attributes.failure
            reasons.append(str(await converter.decode_failure(failure)))
    return reasons


_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "terminated",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "timed_out",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "cancelled",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued_as_new",
}


async def closed_as(handle: WorkflowHandle) -> str | None:
    """How the journey's run closed, from its history; None while it runs. (`describe`
    cannot decode the time-skipping server's Datetime search attributes.)"""
    history = await handle.fetch_history()
    return _CLOSED.get(history.events[-1].event_type)


async def accepted_updates(handle: WorkflowHandle) -> int:
    history = await handle.fetch_history()
    return sum(1 for e in history.events
               if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)


# --- nothing twice, nobody else -----------------------------------------------------------

REACHED = ACCEPTED  # a provider has it, or the customer does


async def sent_twice(pool: asyncpg.Pool, policy_number: str) -> list[str]:
    """Messages of one policy that reached the same recipient twice: two records of the same
    milestone on the same channel to the same recipient (a `-fallback` counts as its
    milestone; `-resendN` and `-redialN` are distinct messages by design)."""
    rows = await pool.fetch(
        "SELECT milestone, channel, recipient_id FROM notifications "
        "WHERE policy_number = $1 AND status = ANY($2::text[])", policy_number, list(REACHED))
    counts = Counter((r["milestone"].removesuffix("-fallback"), r["channel"], r["recipient_id"])
                     for r in rows)
    return [f"{m} by {c} to {who}: {n} times" for (m, c, who), n in sorted(counts.items())
            if n > 1]


async def outbox_of(pool: asyncpg.Pool, policy_number: str,
                    entries: list[OutboxEntry]) -> list[OutboxEntry]:
    """The sandbox outbox entries that carry a reference of this policy's records."""
    refs = {r["provider_ref"] for r in await pool.fetch(
        "SELECT provider_ref FROM notifications WHERE policy_number = $1 "
        "AND provider_ref IS NOT NULL", policy_number)}
    return [e for e in entries if e.ref in refs]


def accepted_twice(entries: list[OutboxEntry]) -> list[str]:
    """Provider references a sandbox provider accepted more than once."""
    counts = Counter((e.api, e.ref) for e in entries)
    return [f"{api} message {ref} accepted {n} times"
            for (api, ref), n in sorted(counts.items()) if n > 1]


async def strangers(pool: asyncpg.Pool, policy_number: str, person: Person) -> list[str]:
    """Recipients of this policy's records who are neither its holder nor the holder's
    emergency contact (ids only: never an address in a test's output)."""
    rows = await pool.fetch(
        "SELECT DISTINCT recipient_id FROM notifications WHERE policy_number = $1 "
        "AND status = ANY($2::text[])", policy_number, [*REACHED, "bounced", "unknown"])
    return sorted(r["recipient_id"] for r in rows
                  if r["recipient_id"] not in person.recipient_ids)
