"""The journey's activities: plan, re-check, send with records, payments, stages, tasks."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import Sender
from activities.delivery import Delivery
from domain.calendar import BusinessCalendar
from domain.evidence import Anchored
from domain.journey import (
    InquiryRequest,
    InquiryView,
    PaymentRecord,
    PolicyCheck,
    Preparation,
    PrepareRequest,
    SendOutcome,
    SendRequest,
    Stage,
    StageChange,
    TaskRequest,
)
from domain.models import Channel, Segment
from domain.plan import TZ
from domain.planner import plan_journey
from domain.triggers import segments_for
from infra import evidence, store


class JourneyActivities:
    """Activities bound to a database pool and one sender per channel."""

    def __init__(self, pool: asyncpg.Pool, senders: dict[Channel, Sender]):
        self._pool = pool
        self._senders = senders

    async def _calendar(self, conn: asyncpg.Connection) -> BusinessCalendar:
        return BusinessCalendar(await store.load_calendar_years(conn))

    @activity.defn
    async def prepare_journey(self, req: PrepareRequest) -> Preparation:
        async with self._pool.acquire() as conn:
            bundle = await store.load_policy(conn, req.trigger.policy_number,
                                             with_members=False)
            members = await conn.fetchval(
                "SELECT count(*) FROM policy_insured WHERE policy_number = $1 AND role = 'member'",
                req.trigger.policy_number)
            calendar = await self._calendar(conn)
            start_day = req.starts_at.astimezone(TZ).date()
            segments = segments_for(bundle.policy, bundle.product, bundle.policyholder,
                                    start_day)
            plan = plan_journey(req.trigger, bundle.product, segments, calendar,
                                starts_at=req.starts_at)
            await conn.execute(
                "INSERT INTO journeys (journey_id, policy_number, trigger, started_at, stage) "
                "VALUES ($1, $2, $3, $4, 'at_risk') ON CONFLICT (journey_id) DO NOTHING",
                req.journey_id, req.trigger.policy_number, req.trigger.kind.value, req.starts_at)
        rules = bundle.product.rules
        return Preparation(
            plan=plan, product_kind=bundle.product.kind.value, product_name=bundle.product.name,
            reinstatable=rules.reinstatable, interest_rate=rules.reinstatement_interest_rate,
            recipients=1 + members, policyholder_id=bundle.policyholder.customer_id,
            fallbacks={s: rules.fallbacks_for(s) for s in (Segment.STANDARD, Segment.ELDERLY)})

    @activity.defn
    async def check_policy(self, policy_number: str) -> PolicyCheck:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT p.status, p.premium, "
                "  (SELECT sum(amount - paid_amount) FROM premium_dues d "
                "   WHERE d.policy_number = p.policy_number AND d.due_date <= p.due_date) AS owed "
                "FROM policies p WHERE p.policy_number = $1", policy_number)
        if row is None:
            raise ApplicationError(f"unknown policy {policy_number}", type="UnknownPolicy",
                                   non_retryable=True)
        owed = row["owed"] if row["owed"] is not None else row["premium"]
        return PolicyCheck(in_force=row["status"] == "in_force", outstanding=owed,
                           status=row["status"])

    @activity.defn
    async def send_notifications(self, req: SendRequest) -> SendOutcome:
        """Send one message on one channel to a batch of recipients, each on its own record
        (activities/delivery.py): retried until `req.give_up_at`, then failed on record."""
        return await Delivery(self._pool, self._senders).send(req)

    @activity.defn
    async def record_payment(self, rec: PaymentRecord) -> Decimal:
        """Store the payment once (by transaction id) and apply it to the oldest open dues."""
        p = rec.payment
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO payments (transaction_id, policy_number, amount, currency, paid_at) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (transaction_id) DO NOTHING "
                "RETURNING true", p.transaction_id, rec.policy_number, p.amount, p.currency,
                p.paid_at)
            if inserted:
                left = p.amount
                dues = await conn.fetch(
                    "SELECT due_date, amount - paid_amount AS open FROM premium_dues "
                    "WHERE policy_number = $1 AND paid_amount < amount ORDER BY due_date "
                    "FOR UPDATE", rec.policy_number)
                for d in dues:
                    if left <= 0:
                        break
                    take = min(left, d["open"])
                    await conn.execute(
                        "UPDATE premium_dues SET paid_amount = paid_amount + $3 "
                        "WHERE policy_number = $1 AND due_date = $2",
                        rec.policy_number, d["due_date"], take)
                    left -= take
            owed = await conn.fetchval(
                "SELECT COALESCE(sum(amount - paid_amount), 0) FROM premium_dues "
                "WHERE policy_number = $1", rec.policy_number)
        return owed

    @activity.defn
    async def change_stage(self, change: StageChange) -> Anchored:
        """Record the stage and hand the evidence chain's head to the journey's history."""
        info = activity.info()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE journeys SET stage = $2, outcome = COALESCE($3, outcome), "
                "  lapsed_at = CASE WHEN $2 = 'lapsed' AND lapsed_at IS NULL THEN $4 "
                "                   ELSE lapsed_at END, "
                "  closed_at = CASE WHEN $2 = 'closed' THEN $4 ELSE closed_at END "
                "WHERE journey_id = $1", change.journey_id, change.stage.value,
                change.outcome.value if change.outcome else None, change.at)
            if change.policy_status:
                await conn.execute(
                    "UPDATE policies SET status = $2, status_changed_at = $3, updated_at = now() "
                    "WHERE policy_number = $1 AND status <> $2",
                    change.policy_number, change.policy_status, change.at)
            head = await evidence.anchor(conn, change.journey_id, info.workflow_id,
                                         info.workflow_run_id)
        return Anchored(chain_head=head)

    @activity.defn
    async def create_task(self, task: TaskRequest) -> str:
        task_id = f"{task.journey_id}/{task.kind}/{task.reference}"
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO agent_tasks (task_id, policy_number, journey_id, kind, priority, "
                "due_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (task_id) DO NOTHING",
                task_id, task.policy_number, task.journey_id, task.kind, task.priority,
                task.due_at)
        return task_id

    @activity.defn
    async def open_inquiry(self, req: InquiryRequest) -> InquiryView:
        """Start the response clock: one business day, at the same time of day."""
        async with self._pool.acquire() as conn:
            calendar = await self._calendar(conn)
            received = req.received_journey_at.astimezone(TZ)
            respond_day = calendar.add_business_days(received.date(), 1)
            respond_by = datetime.combine(respond_day, received.timetz())
            await conn.execute(
                "INSERT INTO inquiries (inquiry_id, policy_number, kind, received_at, respond_by) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (inquiry_id) DO NOTHING",
                req.inquiry.inquiry_id, req.policy_number, req.inquiry.kind.value, received,
                respond_by)
        return InquiryView(inquiry_id=req.inquiry.inquiry_id, kind=req.inquiry.kind,
                           received_at=received, respond_by=respond_by)

    @activity.defn
    async def set_public_notice(self, policy_number: str, listed: bool) -> None:
        async with self._pool.acquire() as conn:
            if listed:
                await conn.execute(
                    "INSERT INTO public_notices (policy_number) VALUES ($1) "
                    "ON CONFLICT (policy_number) DO UPDATE SET listed_at = now(), "
                    "removed_at = NULL", policy_number)
            else:
                await conn.execute(
                    "UPDATE public_notices SET removed_at = now() WHERE policy_number = $1",
                    policy_number)

    def all(self) -> list:
        return [self.prepare_journey, self.check_policy, self.send_notifications,
                self.record_payment, self.change_stage, self.create_task, self.open_inquiry,
                self.set_public_notice]


__all__ = ["JourneyActivities", "Stage"]
