"""Every recorded journey history still replays on the current workflow code.

A change that breaks this re-records the histories it changes while nothing has been
released, and goes behind `workflow.patched` from the first release on (README: changing
the workflow safely). Histories are recorded from real runs of the journey tests with
RECORD_HISTORIES=1.
"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.codec_helpers import DATA_CONVERTER
from tests.journey_helpers import HISTORIES
from workflows.policy_lapse import PolicyLapseWorkflow

RECORDED = sorted(HISTORIES.glob("*.json"))
KINDS = {"never_paid", "paid_in_grace", "partial_then_full", "reinstated",
         "reinstatement_refused", "rescission", "short_term", "group_500",
         "inquiry_escalated", "unreachable", "debit_failed", "payment_after_lapse",
         "held_then_verified", "redialled",
         # started by the daily scan with their plan in the input (no prepare_journey)
         "never_paid_planned", "held_planned"}


def test_a_history_is_recorded_for_every_journey_kind():
    assert {p.stem for p in RECORDED} >= KINDS


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_history_replays(path):
    id_file = path.with_suffix(".id")
    workflow_id = (id_file.read_text(encoding="utf-8").strip() if id_file.exists()
                   else f"lapse-{path.stem}")
    history = WorkflowHistory.from_json(workflow_id, path.read_text(encoding="utf-8"))
    replayer = Replayer(workflows=[PolicyLapseWorkflow], data_converter=DATA_CONVERTER)
    await replayer.replay_workflow(history)
