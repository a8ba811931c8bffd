"""A typed client for journeys by policy number: what the payment system and agents call.

Other systems import `Journeys` (or `PaymentSystem` for payments and debit failures) and
never need to know anything but the policy number. Workflows are addressed by their
contract names (CONTRACT.md), so this module imports no workflow code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from domain.ids import JourneyId
from domain.journey import (
    WORKFLOW_TYPE,
    DebitFailedSignal,
    InquiryHandled,
    InquiryReceived,
    JourneyInput,
    JourneyStatus,
    Payment,
    PaymentAnswer,
    ReinstatementApplied,
    ReinstatementDecided,
    Stage,
    workflow_id,
)
from domain.models import CURRENCY, Trigger, TriggerKind
from infra import payments, store
from workflows import search_attributes as sa


class JourneyNotRunning(LookupError):
    def __init__(self, policy_number: str):
        super().__init__(f"no running journey for policy {policy_number}")
        self.policy_number = policy_number


CONFLICT = "the transaction id is already recorded for another policy"


class PaymentRefused(ValueError):
    pass


@dataclass(frozen=True)
class Started:
    """A journey start: `started` is False when the policy's journey was already running."""

    handle: WorkflowHandle
    started: bool


class PaymentResult(BaseModel):
    """What the payment system gets back for one payment."""

    policy_number: str
    transaction_id: str
    journey_running: bool
    accepted: bool
    outcome: str  # PaymentAnswer.outcome, or "recorded_without_journey", "duplicate"
    outstanding: Decimal


class DebitFailureResult(BaseModel):
    policy_number: str
    journey_started: bool  # False: the running journey got the signal


class Journeys:
    def __init__(self, client: Client, task_queue: str):
        self._client = client
        self._task_queue = task_queue

    @property
    def client(self) -> Client:
        return self._client

    def start_options(self, trigger: Trigger, product_kind: str) -> dict:
        return {
            "id": workflow_id(trigger.policy_number),
            "task_queue": self._task_queue,
            "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            "search_attributes": TypedSearchAttributes([
                SearchAttributePair(sa.POLICY_NUMBER, trigger.policy_number),
                SearchAttributePair(sa.LAPSE_STAGE, Stage.AT_RISK.value),
                SearchAttributePair(sa.LAPSE_TRIGGER, trigger.kind.value),
                SearchAttributePair(sa.PRODUCT_KIND, product_kind),
            ]),
            "static_summary": f"Lapse journey: policy {trigger.policy_number}, "
                              f"{trigger.kind.value}",
            "static_details": (f"**Trigger:** {trigger.kind.value}  \n"
                               f"**Due date:** {trigger.due_date}  \n"
                               f"**Amount due:** ¥{trigger.amount_due:,.2f}  \n"
                               f"**Insurer at fault:** "
                               f"{'yes' if trigger.insurer_fault else 'no'}"),
        }

    async def start(self, trigger: Trigger, product_kind: str, time_scale: float = 1.0,
                    journey_start: datetime | None = None,
                    wall_anchor: datetime | None = None) -> WorkflowHandle:
        """Start the policy's journey, or return the one already running (USE_EXISTING)."""
        return (await self.ensure(trigger, product_kind, time_scale, journey_start,
                                  wall_anchor)).handle

    async def ensure(self, trigger: Trigger, product_kind: str, time_scale: float = 1.0,
                     journey_start: datetime | None = None,
                     wall_anchor: datetime | None = None) -> Started:
        """Like `start`, and says whether this call started it or found it running."""
        # The journey clock starts at the caller's moment, not at the first workflow task,
        # so journeys started together by a scan share one clock under compressed time.
        # `wall_anchor`: the wall moment `journey_start` stands for (a scan's own start).
        wall_anchor = wall_anchor or datetime.now(UTC)
        handle = await self._client.start_workflow(
            WORKFLOW_TYPE,
            JourneyInput(trigger=trigger, journey_start=journey_start or (
                wall_anchor if time_scale != 1 else None), wall_anchor=wall_anchor,
                time_scale=time_scale),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            result_type=JourneyStatus,
            **self.start_options(trigger, product_kind),
        )
        # The server answers `started=false` when USE_EXISTING found a running journey;
        # the SDK keeps that response on the handle without a public accessor.
        response = getattr(handle, "_start_workflow_response", None)
        return Started(handle, bool(getattr(response, "started", True)))

    def handle(self, policy_number: str) -> WorkflowHandle:
        return self._client.get_workflow_handle(workflow_id(policy_number),
                                                result_type=JourneyStatus)

    async def is_running(self, policy_number: str) -> bool:
        try:
            desc = await self.handle(policy_number).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return desc.status is WorkflowExecutionStatus.RUNNING

    async def status(self, policy_number: str) -> JourneyStatus:
        """The latest journey's status (a closed one answers too, from its last state)."""
        try:
            return await self.handle(policy_number).query("status", result_type=JourneyStatus)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise JourneyNotRunning(policy_number) from None
            raise

    async def pay(self, policy_number: str, payment: Payment) -> PaymentAnswer:
        """Record a payment through the validated update; JourneyNotRunning if none runs."""
        if not await self.is_running(policy_number):
            raise JourneyNotRunning(policy_number)
        try:
            return await self.handle(policy_number).execute_update(
                "record_payment", payment, result_type=PaymentAnswer)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if getattr(cause, "type", None) == "TransactionConflict":
                raise PaymentRefused(CONFLICT) from None
            raise PaymentRefused(getattr(cause, "message", str(cause))) from None

    async def signal(self, policy_number: str, name: str, payload: BaseModel) -> None:
        """Send a contract signal to the running journey; JourneyNotRunning if none runs."""
        if not await self.is_running(policy_number):
            raise JourneyNotRunning(policy_number)
        await self.handle(policy_number).signal(name, payload)

    # Agents' doors, one per contract signal.
    async def inquiry_received(self, policy_number: str, inquiry: InquiryReceived) -> None:
        await self.signal(policy_number, "inquiry_received", inquiry)

    async def inquiry_handled(self, policy_number: str, handled: InquiryHandled) -> None:
        await self.signal(policy_number, "inquiry_handled", handled)

    async def reinstatement_applied(self, policy_number: str,
                                    applied: ReinstatementApplied) -> None:
        await self.signal(policy_number, "reinstatement_applied", applied)

    async def reinstatement_decided(self, policy_number: str,
                                    decided: ReinstatementDecided) -> None:
        await self.signal(policy_number, "reinstatement_decided", decided)


# --- the payment system's door --------------------------------------------------------------

_INSERT_DEBIT_ATTEMPT = """
INSERT INTO debit_attempts (policy_number, attempted_at, amount, succeeded, reason_code,
                            reason_text)
VALUES ($1, $2, $3, false, $4, $5) ON CONFLICT (policy_number, attempted_at) DO NOTHING
"""
class PaymentSystem:
    """What the payment system imports: payments and debit failures by policy number.

        payments = PaymentSystem(client, pool, task_queue="policy-lapse")
        await payments.payment_received("P2026000001", Payment(...))
        await payments.debit_failed("P2026000002", DebitFailedSignal(...))
    """

    def __init__(self, client: Client, pool: asyncpg.Pool, task_queue: str,
                 time_scale: float = 1.0):
        self.journeys = Journeys(client, task_queue)
        self._pool = pool
        self._time_scale = time_scale

    async def payment_received(self, policy_number: str, payment: Payment) -> PaymentResult:
        """To the running journey (validated update); stored in `payments` when none runs.

        Raises PaymentRefused (bad amount or currency) and store.NotFound (unknown policy).
        """
        _check_payment(payment)
        try:
            answer = await self.journeys.pay(policy_number, payment)
        except JourneyNotRunning:
            return await self._record_without_journey(policy_number, payment)
        return PaymentResult(policy_number=policy_number, transaction_id=payment.transaction_id,
                             journey_running=True, accepted=answer.accepted,
                             outcome=answer.outcome, outstanding=answer.outstanding)

    async def _record_without_journey(self, policy_number: str,
                                      payment: Payment) -> PaymentResult:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT true FROM policies WHERE policy_number = $1",
                                       policy_number):
                raise store.NotFound(f"unknown policy {policy_number}")
            stored = await payments.store_payment(conn, policy_number, payment)
        if stored.outcome == "conflict":
            raise PaymentRefused(CONFLICT)
        return PaymentResult(
            policy_number=policy_number, transaction_id=payment.transaction_id,
            journey_running=False, accepted=True,
            outcome="recorded_without_journey" if stored.outcome == "new" else "duplicate",
            outstanding=stored.owed)

    async def debit_failed(self, policy_number: str,
                           failure: DebitFailedSignal) -> DebitFailureResult:
        """Record the failed attempt; signal the journey, starting one if none runs
        (signal-with-start: one atomic call, so two failures never start two journeys)."""
        async with self._pool.acquire() as conn:
            await conn.execute(_INSERT_DEBIT_ATTEMPT, policy_number, failure.failed_at,
                               failure.amount, failure.reason_code.value, failure.reason_text)
            bundle = await store.load_policy(conn, policy_number, with_members=False)
        # The bank's free text stays in debit_attempts; the journey gets the reason code.
        failure = failure.model_copy(update={"reason_text": ""})
        policy = bundle.policy
        trigger = Trigger(kind=TriggerKind.DEBIT_FAILED, policy_number=policy_number,
                          due_date=policy.due_date,
                          amount_due=policy.outstanding if policy.outstanding > 0
                          else failure.amount,
                          debit_failure=failure)
        options = self.journeys.start_options(trigger, bundle.product.kind.value)
        handle = await self.journeys.client.start_workflow(
            WORKFLOW_TYPE, JourneyInput(trigger=trigger, time_scale=self._time_scale,
                                        wall_anchor=datetime.now(UTC)),
            start_signal="debit_failed", start_signal_args=[failure], **options)
        response = getattr(handle, "_start_workflow_response", None)
        return DebitFailureResult(policy_number=policy_number,
                                  journey_started=bool(getattr(response, "started", True)))


def _check_payment(payment: Payment) -> None:
    if payment.amount <= 0:
        raise PaymentRefused(f"amount must be positive, got {payment.amount}")
    if payment.currency != CURRENCY:
        raise PaymentRefused(f"currency must be {CURRENCY}, got {payment.currency}")


# --- what agents read besides the workflow's own state ----------------------------------------


class Delivery(BaseModel):
    """One notification record: a message to one recipient on one channel, as delivered."""

    notification_id: str
    milestone: str
    channel: str
    recipient_role: str
    status: str
    error_code: str | None
    provider: str | None
    attempts: int
    # The journey moment the message belongs to (under compressed time it runs ahead of
    # the wall clock), and when its record last changed (wall clock).
    created_at: datetime | None = None
    updated_at: datetime


_DELIVERIES = """
SELECT notification_id, milestone, channel, recipient_role, status, error_code, provider,
       attempts, created_at, updated_at
FROM notifications WHERE journey_id = $1 ORDER BY created_at, notification_id
"""


async def journey_key(client: Client, policy_number: str) -> str:
    """The journey id the activities record under: `{workflow id}@{first run id}`."""
    desc = await client.get_workflow_handle(workflow_id(policy_number)).describe()
    info = desc.raw_description.workflow_execution_info
    first = info.first_run_id or desc.run_id
    return str(JourneyId.of(desc.id, first))


async def deliveries(pool: asyncpg.Pool, journey_id: str) -> list[Delivery]:
    rows = await pool.fetch(_DELIVERIES, journey_id)
    return [Delivery(**dict(r)) for r in rows]
