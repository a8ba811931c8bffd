"""The console's one door to the journeys: the `status` query, the contract's signals an
agent sends, and where a journey is in the Temporal Web UI. Every call to the journey
client is here, so that moving to another client changes this module only."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from temporalio.client import Client, WorkflowQueryFailedError

from contract import (
    CONTACT_UPDATED,
    INQUIRY_HANDLED,
    INQUIRY_RECEIVED,
    REINSTATEMENT_APPLIED,
    REINSTATEMENT_DECIDED,
)
from domain.journey import (
    ContactUpdated,
    InquiryHandled,
    InquiryReceived,
    JourneyStatus,
    ReinstatementApplied,
    ReinstatementDecided,
    Signal,
)
from infra.journeys import JourneyNotRunning, Journeys


class JourneyBusy(RuntimeError):
    """The journey exists but cannot answer yet (it is still being planned)."""


@dataclass(frozen=True)
class JourneyLink:
    records_key: str  # what the journey's records (notifications, tasks) carry as journey_id
    web_ui_url: str | None  # the run in the Temporal Web UI, when the console knows the UI


class JourneyPort:
    def __init__(self, client: Client, task_queue: str, *, web_ui_url: str | None = None):
        self._client = client
        self._journeys = Journeys(client, task_queue)
        self._web_ui_url = web_ui_url.rstrip("/") if web_ui_url else None

    @property
    def journeys(self) -> Journeys:
        """What `infra.tasks.complete_task` signals the journey with."""
        return self._journeys

    async def status(self, policy_number: str) -> JourneyStatus | None:
        """The policy's latest journey as it answers now; None when it never had one."""
        try:
            return await self._journeys.status(policy_number)
        except JourneyNotRunning:
            return None
        except WorkflowQueryFailedError:
            raise JourneyBusy(policy_number) from None

    async def link(self, policy_number: str) -> JourneyLink:
        handle = self._journeys.handle(policy_number)
        run_id = (await handle.describe()).run_id
        ui = None
        if self._web_ui_url:
            ui = (f"{self._web_ui_url}/namespaces/{quote(self._client.namespace)}/workflows/"
                  f"{quote(handle.id, safe='')}/{quote(run_id, safe='')}/history")
        return JourneyLink(records_key=await self._journeys.journey_key(policy_number),
                           web_ui_url=ui)

    # The agents' signals (CONTRACT.md); each is False when no journey is running.
    async def inquiry_received(self, policy_number: str, inquiry: InquiryReceived) -> bool:
        return await self._signal(policy_number, INQUIRY_RECEIVED, inquiry)

    async def inquiry_handled(self, policy_number: str, handled: InquiryHandled) -> bool:
        return await self._signal(policy_number, INQUIRY_HANDLED, handled)

    async def reinstatement_applied(self, policy_number: str,
                                    applied: ReinstatementApplied) -> bool:
        return await self._signal(policy_number, REINSTATEMENT_APPLIED, applied)

    async def reinstatement_decided(self, policy_number: str,
                                    decided: ReinstatementDecided) -> bool:
        return await self._signal(policy_number, REINSTATEMENT_DECIDED, decided)

    async def contact_updated(self, policy_number: str, updated: ContactUpdated) -> bool:
        return await self._signal(policy_number, CONTACT_UPDATED, updated)

    async def _signal(self, policy_number: str, name: str, payload: Signal) -> bool:
        try:
            await self._journeys.signal(policy_number, name, payload)
        except JourneyNotRunning:
            return False
        return True
