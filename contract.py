"""The public contract (CONTRACT.md) in one module: every name other systems address a
journey by, each defined once, with the model of each payload.

The workflow, the journey client (infra/journeys.py), the CLI, the callbacks and the
registration of search attributes take their names from here; tests/test_contract.py
checks this module against the contract document (docs/contract.md). Names are fixed:
add, never rename.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ValidationError
from temporalio.common import SearchAttributeKey

# The ids: `lapse-{policy_number}` for the workflow, `{workflow id}@{first run id}` for the
# journey its records hang on; one format and one parser each, in the domain.
from domain.ids import JourneyId as JourneyId
from domain.ids import workflow_id as workflow_id
from domain.journey import (
    BadSignal,
    ContactUpdated,
    DataVerified,
    DebitFailedSignal,
    DeliveryFailed,
    InquiryHandled,
    InquiryReceived,
    JourneyInput,
    JourneyStatus,
    Payment,
    PaymentAnswer,
    ReinstatementApplied,
    ReinstatementDecided,
    Signal,
)

# --- the workflow ----------------------------------------------------------------------

WORKFLOW_TYPE = "PolicyLapseWorkflow"
TASK_QUEUE = "policy-lapse"  # the default; TEMPORAL_TASK_QUEUE names another
WORKFLOW_INPUT = JourneyInput
WORKFLOW_RESULT = JourneyStatus

# --- signals, the update and the query -------------------------------------------------

PAYMENT_RECEIVED = "payment_received"
DEBIT_FAILED = "debit_failed"
CONTACT_UPDATED = "contact_updated"
INQUIRY_RECEIVED = "inquiry_received"
INQUIRY_HANDLED = "inquiry_handled"
REINSTATEMENT_APPLIED = "reinstatement_applied"
REINSTATEMENT_DECIDED = "reinstatement_decided"
DELIVERY_FAILED = "delivery_failed"
DATA_VERIFIED = "data_verified"  # an addition: a held journey's data checked by operations

RECORD_PAYMENT = "record_payment"
STATUS_QUERY = "status"

# Every signal and the model of its one payload.
SIGNALS: dict[str, type[Signal]] = {
    PAYMENT_RECEIVED: Payment,
    DEBIT_FAILED: DebitFailedSignal,
    CONTACT_UPDATED: ContactUpdated,
    INQUIRY_RECEIVED: InquiryReceived,
    INQUIRY_HANDLED: InquiryHandled,
    REINSTATEMENT_APPLIED: ReinstatementApplied,
    REINSTATEMENT_DECIDED: ReinstatementDecided,
    DELIVERY_FAILED: DeliveryFailed,
    DATA_VERIFIED: DataVerified,
}
# The update, its argument and its answer; the query and its answer.
UPDATES: dict[str, type[Signal]] = {RECORD_PAYMENT: Payment}
UPDATE_RESULTS: dict[str, type[BaseModel]] = {RECORD_PAYMENT: PaymentAnswer}
QUERIES: dict[str, type[BaseModel]] = {STATUS_QUERY: JourneyStatus}


def read_payload(name: str, payloads: list[object],
                 models: dict[str, type[Signal]] | None = None) -> Signal:
    """The one payload of signal (or, with `models=UPDATES`, update) `name` as its model,
    or BadSignal saying why not."""
    models = SIGNALS if models is None else models
    model = models.get(name)
    if model is None:
        raise BadSignal("not a signal of the contract")
    if len(payloads) != 1:
        raise BadSignal(f"expected one payload, got {len(payloads)}")
    try:
        return model.model_validate(payloads[0])
    except ValidationError as err:
        broken = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'payload'}: {e['type']}"
            for e in err.errors(include_input=False, include_url=False))
        raise BadSignal(f"invalid payload ({broken})") from None


# --- search attributes (registered at start-up, infra/temporal.py) ----------------------

POLICY_NUMBER = SearchAttributeKey.for_keyword("PolicyNumber")
LAPSE_STAGE = SearchAttributeKey.for_keyword("LapseStage")
LAPSE_TRIGGER = SearchAttributeKey.for_keyword("LapseTrigger")
PRODUCT_KIND = SearchAttributeKey.for_keyword("ProductKind")
CUSTOMER_SEGMENT = SearchAttributeKey.for_keyword_list("CustomerSegment")
GRACE_ENDS_AT = SearchAttributeKey.for_datetime("GraceEndsAt")
NEXT_REMINDER_AT = SearchAttributeKey.for_datetime("NextReminderAt")
OUTSTANDING_AMOUNT = SearchAttributeKey.for_float("OutstandingAmount")
LAPSE_OUTCOME = SearchAttributeKey.for_keyword("LapseOutcome")  # an addition: closed ones

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    POLICY_NUMBER, LAPSE_STAGE, LAPSE_TRIGGER, PRODUCT_KIND, CUSTOMER_SEGMENT, GRACE_ENDS_AT,
    NEXT_REMINDER_AT, OUTSTANDING_AMOUNT, LAPSE_OUTCOME)


def journey_search_attributes(policy_number: str, stage: str, trigger: str, product_kind: str,
                              segments: Iterable[str], lapses_at: datetime | None,
                              next_reminder_at: datetime | None, outstanding: Decimal,
                              outcome: str | None = None,
                              ) -> list[tuple[SearchAttributeKey, object]]:
    """A journey's search attributes from its facts (None or []: not set): what the workflow
    upserts when they change, and what a starter that planned the journey sets at start."""
    return [
        (POLICY_NUMBER, policy_number),
        (LAPSE_STAGE, stage),
        (LAPSE_TRIGGER, trigger),
        (PRODUCT_KIND, product_kind),
        (CUSTOMER_SEGMENT, sorted(segments)),
        (GRACE_ENDS_AT, lapses_at),  # the end of grace: the lapse, cover suspended from then
        (NEXT_REMINDER_AT, next_reminder_at),
        (OUTSTANDING_AMOUNT, float(outstanding)),
        (LAPSE_OUTCOME, outcome),
    ]
