"""A typed client for journeys by policy number: what the payment system and agents call."""

from __future__ import annotations

from datetime import datetime

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from domain.journey import (
    JourneyInput,
    JourneyStatus,
    Payment,
    PaymentAnswer,
    Stage,
    workflow_id,
)
from domain.models import Trigger
from workflows import search_attributes as sa
from workflows.policy_lapse import PolicyLapseWorkflow


class JourneyNotRunning(LookupError):
    def __init__(self, policy_number: str):
        super().__init__(f"no running journey for policy {policy_number}")


class PaymentRefused(ValueError):
    pass


class Journeys:
    def __init__(self, client: Client, task_queue: str):
        self._client = client
        self._task_queue = task_queue

    async def start(self, trigger: Trigger, product_kind: str, time_scale: float = 1.0,
                    journey_start: datetime | None = None) -> WorkflowHandle:
        """Start the policy's journey, or return the one already running (USE_EXISTING)."""
        return await self._client.start_workflow(
            PolicyLapseWorkflow.run,
            JourneyInput(trigger=trigger, journey_start=journey_start, time_scale=time_scale),
            id=workflow_id(trigger.policy_number),
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.POLICY_NUMBER, trigger.policy_number),
                SearchAttributePair(sa.LAPSE_STAGE, Stage.AT_RISK.value),
                SearchAttributePair(sa.LAPSE_TRIGGER, trigger.kind.value),
                SearchAttributePair(sa.PRODUCT_KIND, product_kind),
            ]),
            static_summary=f"Lapse journey: policy {trigger.policy_number}, "
                           f"{trigger.kind.value}",
            static_details=(f"**Trigger:** {trigger.kind.value}  \n"
                            f"**Due date:** {trigger.due_date}  \n"
                            f"**Amount due:** ¥{trigger.amount_due:,.2f}  \n"
                            f"**Insurer at fault:** {'yes' if trigger.insurer_fault else 'no'}"),
        )

    def handle(self, policy_number: str) -> WorkflowHandle:
        return self._client.get_workflow_handle(workflow_id(policy_number))

    async def status(self, policy_number: str) -> JourneyStatus:
        try:
            return await self.handle(policy_number).query(
                PolicyLapseWorkflow.status, result_type=JourneyStatus)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise JourneyNotRunning(policy_number) from None
            raise

    async def pay(self, policy_number: str, payment: Payment) -> PaymentAnswer:
        """Record a payment through the validated update; JourneyNotRunning if none runs."""
        handle = self.handle(policy_number)
        try:
            desc = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise JourneyNotRunning(policy_number) from None
            raise
        if desc.status is None or desc.status.name != "RUNNING":
            raise JourneyNotRunning(policy_number)
        try:
            return await handle.execute_update(PolicyLapseWorkflow.record_payment, payment,
                                               result_type=PaymentAnswer)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            raise PaymentRefused(getattr(cause, "message", str(cause))) from None
