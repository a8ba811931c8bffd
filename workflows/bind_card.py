"""BindCardCampaignWorkflow: what the monthly Schedule runs; asks the customers whose
debits keep failing to bind a new card, in batches, then counts the month."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.bind_card import BindCardActivities
    from domain.campaign import AskRequest, CampaignInput, CampaignSummary, campaign_month

SCHEDULE_ID = "lapse-bind-card-monthly"
BATCH = 100  # customers per activity: a heartbeat each, and a short history for thousands


@workflow.defn(name="BindCardCampaignWorkflow")
class BindCardCampaignWorkflow:
    @workflow.run
    async def run(self, inp: CampaignInput) -> CampaignSummary:
        # The schedule passes no month: the campaign is the month it fires in.
        month = inp.month or campaign_month(workflow.now())
        selection = await workflow.execute_activity_method(
            BindCardActivities.select_customers, month,
            start_to_close_timeout=timedelta(minutes=10),
            summary=f"who the review lists for the {month:%Y-%m} campaign")
        candidates = selection.candidates
        for start in range(0, len(candidates), BATCH):
            batch = candidates[start:start + BATCH]
            await workflow.execute_activity_method(
                BindCardActivities.ask_to_bind,
                AskRequest(month=month, at=workflow.now(), candidates=batch),
                # Safe to retry: the records say who was asked and what went out; a
                # provider's transient refusal is retried with backoff.
                start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=10)),
                summary=f"ask customers {start + 1}-{start + len(batch)} to bind a new card")
        result = await workflow.execute_activity_method(
            BindCardActivities.month_result, month,
            start_to_close_timeout=timedelta(minutes=1),
            summary=f"what the {month:%Y-%m} campaign came to")
        return CampaignSummary(month=month, listed=len(candidates), result=result)
