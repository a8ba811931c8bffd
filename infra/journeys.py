"""The one client for journeys, by policy number: start, signal, update and query.

The CLI, the payment system's door (`PaymentSystem`, below), the delivery callbacks' outbox,
the agents' tasks and console, the scan and the demo all reach journeys through `Journeys`,
by the names of contract.py, so that none of them spells a signal name or a workflow id of
its own and this module imports no workflow code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from pydantic import BaseModel
from temporalio.api.errordetails.v1 import NamespaceNotFoundFailure
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
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contract import (
    DEBIT_FAILED,
    INQUIRY_HANDLED,
    INQUIRY_RECEIVED,
    LAPSE_STAGE,
    LAPSE_TRIGGER,
    POLICY_NUMBER,
    PRODUCT_KIND,
    RECORD_PAYMENT,
    REINSTATEMENT_APPLIED,
    REINSTATEMENT_DECIDED,
    SIGNALS,
    STATUS_QUERY,
    TASK_QUEUE,
    WORKFLOW_TYPE,
    JourneyId,
    journey_search_attributes,
    workflow_id,
)
from domain.journey import (
    DebitFailedSignal,
    InquiryHandled,
    InquiryReceived,
    JourneyInput,
    JourneyStatus,
    Payment,
    PaymentAnswer,
    PaymentOutcome,
    Preparation,
    ReinstatementApplied,
    ReinstatementDecided,
    Signal,
    Stage,
    payment_problem,
)
from domain.models import Trigger, TriggerKind
from infra import payments, store
from infra.deliveries import Delivery, journey_records


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
    outcome: PaymentOutcome
    # What the ledger says is owed after it (`infra.payments.standing`), journey or not.
    outstanding: Decimal


class DebitFailureResult(BaseModel):
    policy_number: str
    journey_started: bool  # False: the running journey got the signal


class Journeys:
    """Journeys by policy number on one Temporal client and task queue.

        journeys = Journeys(client, settings.temporal_task_queue)
        await journeys.start(trigger, "long_term")
        await journeys.signal("P2026000001", CONTACT_UPDATED, ContactUpdated(...))
        status = await journeys.status("P2026000001")
    """

    def __init__(self, client: Client, task_queue: str = TASK_QUEUE):
        self._client = client
        self._task_queue = task_queue

    @property
    def client(self) -> Client:
        return self._client

    @property
    def task_queue(self) -> str:
        return self._task_queue

    def start_options(self, trigger: Trigger, product_kind: str,
                      planned: Preparation | None = None,
                      starts_at: datetime | None = None) -> dict:
        return {
            "id": workflow_id(trigger.policy_number),
            "task_queue": self._task_queue,
            "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            "search_attributes": _at_start(trigger, product_kind, planned, starts_at),
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
        """Start the policy's journey, or return the one already running."""
        return (await self.ensure(trigger, product_kind, time_scale, journey_start,
                                  wall_anchor)).handle

    async def ensure(self, trigger: Trigger, product_kind: str, time_scale: float = 1.0,
                     journey_start: datetime | None = None,
                     wall_anchor: datetime | None = None,
                     planned: Preparation | None = None) -> Started:
        """Like `start`, and says whether this call started it or found it running.

        `planned`: the journey's preparation, made by the caller from `journey_start` (or
        now): the journey runs no plan of its own, and its search attributes are set here
        as they will be once what is due at the start is done. The caller then writes the
        journey's row (`journey_records.start_journey`), as `prepare_journey` would have."""
        # The journey clock starts at the caller's moment, not at the first workflow task,
        # so journeys started together by a scan share one clock under compressed time.
        # `wall_anchor`: the wall moment `journey_start` stands for (a scan's own start).
        wall_anchor = wall_anchor or datetime.now(UTC)
        journey_start = journey_start or (wall_anchor if time_scale != 1 else None)
        # The contract's USE_EXISTING, spelt as the server's own answer: FAIL says "already
        # running" with the running run's id (the SDK does not tell a USE_EXISTING start
        # that attached apart from one that started), and the handle is that run's.
        try:
            handle = await self._client.start_workflow(
                WORKFLOW_TYPE,
                JourneyInput(trigger=trigger, journey_start=journey_start,
                             wall_anchor=wall_anchor, time_scale=time_scale,
                             preparation=planned),
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                result_type=JourneyStatus,
                **self.start_options(trigger, product_kind, planned,
                                     journey_start or wall_anchor),
            )
        except WorkflowAlreadyStartedError as running:
            return Started(self._client.get_workflow_handle(
                running.workflow_id, run_id=running.run_id, result_type=JourneyStatus), False)
        return Started(handle, True)

    async def start_with_signal(self, trigger: Trigger, product_kind: str, name: str,
                                payload: Signal, time_scale: float = 1.0) -> Started:
        """Signal the policy's running journey, or start one with the signal as its first
        event (signal-with-start: one atomic call, so two callers never start two)."""
        _check_signal(name, payload)
        if await self._signal(workflow_id(trigger.policy_number), name, payload):
            return Started(self.handle(trigger.policy_number), False)
        # No journey ran a moment ago. Should another caller start one in between, this
        # call signals it (one journey still) and says `started` of it too: the server
        # only refuses FAIL for signal-with-start, so that race cannot be told apart.
        handle = await self._client.start_workflow(
            WORKFLOW_TYPE, JourneyInput(trigger=trigger, time_scale=time_scale,
                                        wall_anchor=datetime.now(UTC)),
            start_signal=name, start_signal_args=[payload], result_type=JourneyStatus,
            **self.start_options(trigger, product_kind))
        return Started(handle, True)

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

    async def journey_key(self, policy_number: str) -> str:
        """The journey id the activities record under: `{workflow id}@{first run id}`."""
        desc = await self.handle(policy_number).describe()
        info = desc.raw_description.workflow_execution_info
        first = info.first_run_id or desc.run_id
        return str(JourneyId.of(desc.id, first))

    async def status(self, policy_number: str) -> JourneyStatus:
        """The latest journey's status (a closed one answers too, from its last state)."""
        try:
            return await self.handle(policy_number).query(STATUS_QUERY,
                                                          result_type=JourneyStatus)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise JourneyNotRunning(policy_number) from None
            raise

    async def pay(self, policy_number: str, payment: Payment) -> PaymentAnswer:
        """Record a payment through the validated update; JourneyNotRunning if none runs.

        The update is the only call: a journey never started or already completed answers
        NOT_FOUND (a describe() first would cost every payment a call, and a journey could
        still complete in between)."""
        try:
            return await self.handle(policy_number).execute_update(
                RECORD_PAYMENT, payment, result_type=PaymentAnswer)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND and not namespace_missing(err):
                raise JourneyNotRunning(policy_number) from None
            raise
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if getattr(cause, "type", None) == "TransactionConflict":
                raise PaymentRefused(CONFLICT) from None
            if getattr(cause, "type", None) == "JourneyClosed":
                # Closed (paid, reinstated) and finishing: no journey takes it any more.
                raise JourneyNotRunning(policy_number) from None
            raise PaymentRefused(getattr(cause, "message", str(cause))) from None

    async def signal(self, policy_number: str, name: str, payload: Signal) -> None:
        """Send contract signal `name` (contract.py) to the policy's running journey;
        JourneyNotRunning when none runs (never started, or closed)."""
        _check_signal(name, payload)
        if not await self._signal(workflow_id(policy_number), name, payload):
            raise JourneyNotRunning(policy_number)

    async def signal_workflow(self, journey_workflow_id: str, name: str,
                              payload: Signal) -> bool:
        """The same by workflow id, for the outbox whose rows keep it; False when the
        journey is not running."""
        _check_signal(name, payload)
        return await self._signal(journey_workflow_id, name, payload)

    async def _signal(self, journey_workflow_id: str, name: str, payload: Signal) -> bool:
        # Only signal: describe() first would cost a call, and a journey that closed in
        # between answers NOT_FOUND all the same.
        try:
            await self._client.get_workflow_handle(journey_workflow_id).signal(name, payload)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND and not namespace_missing(err):
                return False
            raise
        return True

    # Agents' doors, one per contract signal they send.
    async def inquiry_received(self, policy_number: str, inquiry: InquiryReceived) -> None:
        await self.signal(policy_number, INQUIRY_RECEIVED, inquiry)

    async def inquiry_handled(self, policy_number: str, handled: InquiryHandled) -> None:
        await self.signal(policy_number, INQUIRY_HANDLED, handled)

    async def reinstatement_applied(self, policy_number: str,
                                    applied: ReinstatementApplied) -> None:
        await self.signal(policy_number, REINSTATEMENT_APPLIED, applied)

    async def reinstatement_decided(self, policy_number: str,
                                    decided: ReinstatementDecided) -> None:
        await self.signal(policy_number, REINSTATEMENT_DECIDED, decided)


def _at_start(trigger: Trigger, product_kind: str, planned: Preparation | None,
              starts_at: datetime | None) -> TypedSearchAttributes:
    """The search attributes a journey starts with. Planned, all of them as the journey
    will publish them once what is due at `starts_at` is done (the first reminder sent at
    once, or the hold), so that it has nothing to upsert then; a guess that turns out
    wrong costs the upsert it would have made anyway. Else what is known before the plan."""
    if planned is None:
        values = [(POLICY_NUMBER, trigger.policy_number),
                  (LAPSE_STAGE, Stage.AT_RISK.value),
                  (LAPSE_TRIGGER, trigger.kind.value),
                  (PRODUCT_KIND, product_kind)]
    else:
        plan = planned.plan
        held = bool(planned.anomalies)  # nothing goes out: the first milestone stays next
        upcoming = [m.at for m in plan.milestones
                    if held or starts_at is None or m.at > starts_at]
        values = journey_search_attributes(
            plan.policy_number, (Stage.HELD if held else Stage.AT_RISK).value,
            plan.trigger.value, planned.product_kind.value, [x.value for x in plan.segments],
            plan.lapses_at, upcoming[0] if upcoming else None, trigger.amount_due)
    return TypedSearchAttributes([SearchAttributePair(key, value) for key, value in values
                                  if value is not None and value != []])


def _check_signal(name: str, payload: Signal) -> None:
    """A signal of the contract with its own payload model: a misspelt name or a wrong
    payload fails here, in the caller, not as a refusal logged by the workflow."""
    if type(payload) is not SIGNALS.get(name):
        raise ValueError(f"{name!r} is not a contract signal taking a "
                         f"{type(payload).__name__} (see contract.SIGNALS)")


def namespace_missing(err: RPCError) -> bool:
    """NOT_FOUND for the namespace itself (a wrong TEMPORAL_NAMESPACE), not the journey."""
    details = err.grpc_status.details if err.grpc_status is not None else []
    return any(d.Is(NamespaceNotFoundFailure.DESCRIPTOR) for d in details)


# --- the payment system's door --------------------------------------------------------------

class PaymentSystem:
    """What the payment system imports: payments and debit failures by policy number, on
    the journey client and the database.

        payments = PaymentSystem(Journeys(client, "policy-lapse"), pool)
        await payments.payment_received("P2026000001", Payment(...))
        await payments.debit_failed("P2026000002", DebitFailedSignal(...))
    """

    def __init__(self, journeys: Journeys, pool: asyncpg.Pool, time_scale: float = 1.0):
        self.journeys = journeys
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
        if answer.outcome is PaymentOutcome.JOURNEY_CLOSED:
            # The journey closed while the update was on its way: the ledger takes it.
            return await self._record_without_journey(policy_number, payment)
        return PaymentResult(policy_number=policy_number, transaction_id=payment.transaction_id,
                             journey_running=True, accepted=answer.accepted,
                             outcome=answer.outcome, outstanding=answer.outstanding)

    async def _record_without_journey(self, policy_number: str,
                                      payment: Payment) -> PaymentResult:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await store.policy_exists(conn, policy_number):
                raise store.NotFound(f"unknown policy {policy_number}")
            stored = await payments.store_payment(conn, policy_number, payment)
        if stored.outcome == "conflict":
            raise PaymentRefused(CONFLICT)
        return PaymentResult(
            policy_number=policy_number, transaction_id=payment.transaction_id,
            journey_running=False, accepted=True,
            outcome=PaymentOutcome.RECORDED_WITHOUT_JOURNEY if stored.outcome == "new"
            else PaymentOutcome.DUPLICATE,
            outstanding=stored.owed)

    async def debit_failed(self, policy_number: str,
                           failure: DebitFailedSignal) -> DebitFailureResult:
        """Record the failed attempt; signal the running journey, or start one with the
        failure as its first signal (`Journeys.start_with_signal`)."""
        async with self._pool.acquire() as conn:
            await store.record_debit_failure(conn, policy_number, failure)
            bundle = await store.load_policy(conn, policy_number, with_members=False)
        # The bank's free text stays in debit_attempts; the journey gets the reason code.
        failure = failure.model_copy(update={"reason_text": ""})
        policy = bundle.policy
        trigger = Trigger(kind=TriggerKind.DEBIT_FAILED, policy_number=policy_number,
                          due_date=policy.due_date,
                          amount_due=policy.outstanding if policy.outstanding > 0
                          else failure.amount,
                          debit_failure=failure)
        started = await self.journeys.start_with_signal(
            trigger, bundle.product.kind.value, DEBIT_FAILED, failure, self._time_scale)
        return DebitFailureResult(policy_number=policy_number, journey_started=started.started)


def _check_payment(payment: Payment) -> None:
    if (problem := payment_problem(payment)) is not None:
        raise PaymentRefused(problem)


# --- what agents read besides the workflow's own state ----------------------------------------


async def deliveries(pool: asyncpg.Pool, journey_id: str) -> list[Delivery]:
    """The journey's records without their texts (what `lapse journey status` shows)."""
    return [Delivery(**r.model_dump(include=set(Delivery.model_fields)))
            for r in await journey_records(pool, journey_id)]
