"""What a journey's Temporal history says, for evidence: the chain heads handed to it, the
plan it made, its input and its result.

The one module that reads histories; it knows the journey only by its workflow runs (from
the anchors) and by the contract's activity and field names, never by parsing ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.evidence import ChainHead
from domain.journey import JourneyInput, JourneyStatus, Preparation

PREPARE_ACTIVITY = "prepare_journey"
HEAD_FIELD = "chain_head"


@dataclass
class RunHistory:
    workflow_id: str
    run_id: str | None  # None: the latest run
    found: bool = True  # False: the server no longer has it (retention) or never had it
    heads: list[ChainHead] = field(default_factory=list)
    journey_input: JourneyInput | None = None
    preparation: Preparation | None = None
    result: JourneyStatus | None = None


async def _decode(client: Client, payloads) -> object | None:
    if not payloads.payloads:
        return None
    [value] = await client.data_converter.decode(payloads.payloads[:1])
    return value


async def read_run(client: Client, workflow_id: str, run_id: str | None) -> RunHistory:
    """One run's history; heads are the `chain_head` fields of its activity results."""
    run = RunHistory(workflow_id, run_id)
    try:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            run.found = False
            return run
        raise
    activity_types: dict[int, str] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            value = await _decode(client, event.workflow_execution_started_event_attributes.input)
            run.journey_input = _model(JourneyInput, value)
            if run.journey_input is not None:  # planned by its starter (the daily scan)
                run.preparation = run.journey_input.preparation
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activity_types[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            value = await _decode(client, attrs.result)
            if activity_types.get(attrs.scheduled_event_id) == PREPARE_ACTIVITY:
                run.preparation = _model(Preparation, value)
            if isinstance(value, dict) and isinstance(value.get(HEAD_FIELD), dict):
                head = _model(ChainHead, value[HEAD_FIELD])
                if head is not None:
                    run.heads.append(head)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            value = await _decode(client, event.workflow_execution_completed_event_attributes
                                  .result)
            run.result = _model(JourneyStatus, value)
    return run


def _model(model, value):
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except ValidationError:
        return None  # a shape this version does not know: not evidence it can read
