"""Signals to a policy's journey from outside the workflow: delivery callbacks and agents.

Sent by name (CONTRACT.md) to `lapse-{policy_number}`; a journey that is no longer running
is not an error for the sender, only something to report.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.journey import workflow_id

log = logging.getLogger("lapse.signals")


class JourneySignals:
    def __init__(self, client: Client):
        self._client = client

    async def send(self, policy_number: str, name: str, payload: BaseModel) -> bool:
        """Signal the policy's running journey; False when none is running."""
        handle = self._client.get_workflow_handle(workflow_id(policy_number))
        try:
            await handle.signal(name, payload)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                log.info("signal %s not sent: the journey is not running", name)
                return False
            raise
        return True
