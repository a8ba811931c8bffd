"""Signals to a policy's journey from outside the workflow: delivery callbacks (through the
outbox, infra/outbox.py) and agents.

Sent by name (CONTRACT.md) to `lapse-{policy_number}`; a journey that is no longer running
is not an error for the sender, only something to report.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel
from temporalio.api.errordetails.v1 import NamespaceNotFoundFailure
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.journey import workflow_id

log = logging.getLogger("lapse.signals")


class JourneySignals:
    def __init__(self, client: Client):
        self._client = client

    async def send(self, policy_number: str, name: str, payload: BaseModel) -> bool:
        """Signal the policy's running journey; False when none is running."""
        return await self.send_to(workflow_id(policy_number), name, payload)

    async def send_to(self, journey_id: str, name: str, payload: BaseModel) -> bool:
        """Signal the running workflow `journey_id`; False when none is running (never
        started, or closed). Only signal: describe() first would cost a call and fails on
        the time-skipping test server."""
        handle = self._client.get_workflow_handle(journey_id)
        try:
            await handle.signal(name, payload)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND and not namespace_missing(err):
                log.info("signal %s not sent: the journey is not running", name)
                return False
            raise
        return True


def namespace_missing(err: RPCError) -> bool:
    """NOT_FOUND for the namespace itself (a wrong TEMPORAL_NAMESPACE), not the journey."""
    details = err.grpc_status.details if err.grpc_status is not None else []
    return any(d.Is(NamespaceNotFoundFailure.DESCRIPTOR) for d in details)
