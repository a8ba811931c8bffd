"""The bind-a-new-card campaign's activities: who the review lists, asking each of them
once a month outside a running journey's quiet period, and what the month came to."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import asyncpg
from temporalio import activity
from temporalio.client import WorkflowQueryFailedError
from temporalio.exceptions import ApplicationError

from activities.channels import (
    Outgoing,
    PermanentSendError,
    Sender,
    TransientSendError,
    UncertainSendError,
)
from activities.content import payment_token
from domain.campaign import (
    CAMPAIGN_MILESTONE,
    AskRequest,
    AskResult,
    CampaignRules,
    Candidate,
    Selection,
    in_quiet_period,
    review_month,
    run_id,
)
from domain.content.context import Role, Variant, build_context
from domain.content.render import RenderedMessage, render_message
from domain.content.rules import ContentRuleError
from domain.models import (
    ACCEPTED,
    Channel,
    Customer,
    DebitFailure,
    MessageKind,
    NotificationStatus,
    Trigger,
    TriggerKind,
)
from domain.plan import TZ, JourneyPlan
from domain.report import DEFAULT_RULES, ReportRules, window
from infra import deliveries, outreach, store
from infra.deliveries import mark_unknown, provider_ref
from infra.journeys import Journeys
from infra.report_queries import fetch_debit_failures

# Statuses after which a provider has (or may have) the message: never send it again.
_ACCEPTED = ACCEPTED | {NotificationStatus.UNKNOWN}


def _address(customer: Customer, channel: Channel) -> str | None:
    return customer.mobile if channel is Channel.SMS else customer.wechat_openid


async def planned_journey_messages(journeys: Journeys, policy_numbers: list[str],
                                   now: datetime) -> list[datetime]:
    """When the customer's running journeys send next (their `status` query). A journey
    still being planned will send at once: it counts as now. The one place the campaign
    speaks to journeys."""
    planned = []
    for number in policy_numbers:
        if not await journeys.is_running(number):
            continue
        try:
            status = await journeys.status(number)
        except WorkflowQueryFailedError:
            planned.append(now)
            continue
        if status.next_milestone is not None:
            planned.append(status.next_milestone.at)
    return planned


class BindCardActivities:
    def __init__(self, pool: asyncpg.Pool, senders: dict[Channel, Sender],
                 rules: CampaignRules | None = None, review: ReportRules = DEFAULT_RULES):
        self._pool = pool
        self._senders = senders
        self._rules = rules or CampaignRules()
        self._review = review

    @activity.defn
    async def select_customers(self, month: date) -> Selection:
        """The policyholders the review of the month before lists, by the review's own
        query, each with the policy whose debit failed last."""
        starts, ends = window(review_month(month), self._review.window_months)
        async with self._pool.acquire() as conn:
            listed = await fetch_debit_failures(conn, starts, ends, self._review.repeat_failures)
            ids = list(dict.fromkeys(f.customer_id for f in sorted(
                listed, key=lambda f: (-f.failures, f.customer_id))))
            policy = await outreach.policy_last_failed(conn, ids, starts, ends)
        return Selection(month=month, candidates=[
            Candidate(customer_id=c, policy_number=policy[c]) for c in ids if c in policy])

    @activity.defn
    async def ask_to_bind(self, req: AskRequest) -> None:
        """Ask each candidate once this month; safe to retry (the records decide)."""
        journeys = Journeys(activity.client(), activity.info().task_queue)
        for done, candidate in enumerate(req.candidates, start=1):
            await self._ask(candidate, req, journeys)
            activity.heartbeat(done)

    @activity.defn
    async def month_result(self, month: date) -> AskResult:
        async with self._pool.acquire() as conn:
            counts = await outreach.month_counts(conn, month)
        return AskResult(sent=counts.get("sent", 0), quiet=counts.get("quiet", 0),
                         failed=counts.get("failed", 0))

    def all(self) -> list:
        return [self.select_customers, self.ask_to_bind, self.month_result]

    async def _ask(self, c: Candidate, req: AskRequest, journeys: Journeys) -> None:
        async with self._pool.acquire() as conn:
            status = await outreach.request_status(conn, c.customer_id, req.month)
            if status in ("sent", "failed"):
                return  # asked this month already
            bundle = await store.load_policy(conn, c.policy_number, with_members=False)
            card = bundle.policy.payment_method.card_last4
            key = (c.customer_id, req.month, c.policy_number, card)
            if status != "sending":  # an interrupted attempt goes on whatever the period
                if await self._quiet(conn, journeys, c.customer_id, req.at):
                    await outreach.mark_quiet(conn, *key)
                    return
                if not await outreach.claim_request(conn, *key):
                    return  # another run claimed them meanwhile
            outcomes = [await self._send(conn, channel, bundle, req)
                        for channel in self._rules.channels
                        if channel is Channel.SMS or _address(bundle.policyholder, channel)]
            await outreach.finish_request(conn, c.customer_id, req.month,
                                          "sent" if "sent" in outcomes else "failed")

    async def _quiet(self, conn: asyncpg.Connection, journeys: Journeys, customer_id: str,
                     now: datetime) -> bool:
        since = now - timedelta(days=self._rules.quiet_days_after)
        sent = await deliveries.sent_to_since(conn, customer_id, since, CAMPAIGN_MILESTONE)
        policies = await store.holder_policies(conn, customer_id)
        planned = await planned_journey_messages(journeys, policies, now)
        return in_quiet_period(now, sent, planned, self._rules)

    def _render(self, channel: Channel, bundle: store.PolicyBundle, req: AskRequest
                ) -> RenderedMessage:
        policy, holder = bundle.policy, bundle.policyholder
        last = max((a for a in policy.debit_attempts if not a.succeeded),
                   key=lambda a: a.attempted_at)
        trigger = Trigger(
            kind=TriggerKind.DEBIT_FAILED, policy_number=policy.policy_number,
            due_date=policy.due_date, amount_due=last.amount,
            debit_failure=DebitFailure(failed_at=last.attempted_at, amount=last.amount,
                                       reason_code=last.reason_code,
                                       reason_text=last.reason_text or ""))
        plan = JourneyPlan(policy_number=policy.policy_number, trigger=trigger.kind,
                           segments=[], due_date=policy.due_date, grace_ends_on=None,
                           lapses_on=None, lapses_at=None, reinstatement_deadline=None,
                           milestones=[])
        organisation = holder.is_organisation
        ctx = build_context(
            policy=policy, product=bundle.product, trigger=trigger, plan=plan, recipient=holder,
            issued_on=req.at.astimezone(TZ).date(),
            role=Role.GROUP_EMPLOYER if organisation else Role.POLICYHOLDER,
            variant=Variant.GROUP_EMPLOYER if organisation else Variant.STANDARD,
            payment_token=payment_token(policy.policy_number, run_id(req.month)))
        return render_message(MessageKind.BIND_CARD, channel, ctx)

    async def _send(self, conn: asyncpg.Connection, channel: Channel,
                    bundle: store.PolicyBundle, req: AskRequest) -> str:
        """One channel's message, on record like a journey's: 'sent' (or possibly sent),
        'failed', or TransientSendError raised for the activity's retry."""
        holder, policy_number = bundle.policyholder, bundle.policy.policy_number
        run = run_id(req.month)
        nid = f"{run}/{CAMPAIGN_MILESTONE}/{channel.value}/{holder.customer_id}"
        role = (Role.GROUP_EMPLOYER if holder.is_organisation else Role.POLICYHOLDER).value
        address = _address(holder, channel)
        rendered, error = None, None
        if not address:
            error = "no_address"
        else:
            try:
                rendered = self._render(channel, bundle, req)
            except ContentRuleError as err:
                error = err.rule  # a template that breaks a rule will not mend on a retry
        sender = self._senders[channel]
        ready = getattr(sender, "ready", None)
        if rendered is not None and ready is not None:
            await ready()  # the rate limit, before anything says 'sending'
        started = await deliveries.start_campaign_message(
            conn, nid, run, policy_number, CAMPAIGN_MILESTONE, channel, holder.customer_id,
            role, rendered)
        if not started:
            prior = await deliveries.status_of(conn, nid)
            if prior == "sending":  # a process died during the provider call
                await mark_unknown(conn, nid, policy_number, run, "interrupted",
                                   datetime.now(TZ))
                return "sent"
            return "sent" if prior in _ACCEPTED else "failed"
        await deliveries.add_event(conn, nid, "sending", None)
        if rendered is None:
            await deliveries.answer_attempt(conn, nid, "failed", error)
            return "failed"
        try:
            provider_id = await sender.send(Outgoing(
                notification_id=nid, channel=channel, address=address,
                subject=rendered.subject, body=rendered.body, fields=rendered.fields,
                reference=provider_ref(nid), template_id=rendered.template_id,
                link=rendered.link, policy_number=policy_number, journey_id=run,
                recipient_id=holder.customer_id))
        except UncertainSendError as err:
            await mark_unknown(conn, nid, policy_number, run, err.code, datetime.now(TZ))
            return "sent"
        except PermanentSendError as err:
            await deliveries.answer_attempt(conn, nid, "failed", err.code)
            return "failed"
        except TransientSendError as err:
            await deliveries.answer_attempt(conn, nid, "queued", err.code)
            delay = timedelta(seconds=err.retry_after) if err.retry_after else None
            raise ApplicationError(f"{channel.value} provider: {err.code}",
                                   type="TransientSendError", next_retry_delay=delay) from None
        await deliveries.answer_attempt(conn, nid, "sent", None, sender.provider, provider_id)
        return "sent"
