"""The journey's activities: plan, re-check, send with records, payments, stages, tasks."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from decimal import Decimal
from functools import cache

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import Sender
from activities.delivery import Delivery, Recipient, address_of
from domain.branches import Branches, nearest_branch
from domain.calendar import BusinessCalendar
from domain.content import available_channels
from domain.evidence import Anchored
from domain.ids import task_id
from domain.journey import (
    DialRequest,
    InquiryClosed,
    InquiryRequest,
    InquiryView,
    MilestoneSend,
    MilestoneSent,
    PaymentRecord,
    PaymentStored,
    PolicyCheck,
    Preparation,
    PrepareRequest,
    SendOutcome,
    SendRequest,
    Stage,
    StageChange,
    TaskRequest,
)
from domain.journey_rules import recheck_outcome
from domain.models import (
    Channel,
    Customer,
    MessageKind,
    Policy,
    PolicyStatus,
    Product,
    Role,
    Segment,
    Trigger,
    TriggerKind,
)
from domain.plan import TZ, CompanyRules
from domain.planner import PlanCache, plan_journey
from domain.reinstatement import premium_schedule
from domain.triggers import elderly_from, segments_for
from domain.verification import RECENT_PAYMENT_DAYS, DataFacts, check_data
from infra import agent_tasks, deliveries, evidence, journey_records, notes, payments, store
from infra.branches import load_branches


def _one_retry(errors: list[BaseException]) -> BaseException:
    """An attempt's one failure for Temporal: a database or other error as it is (the
    retry policy retries it), else the channels' retry after the longest of their delays,
    so that every channel's backoff, and a provider's Retry-After, is respected."""
    other = [e for e in errors
             if not (isinstance(e, ApplicationError) and e.type == "TransientSendError")]
    if other:
        return other[0]
    delays = [e.next_retry_delay for e in errors if e.next_retry_delay]
    return ApplicationError("; ".join(e.message for e in errors), type="TransientSendError",
                            next_retry_delay=max(delays) if delays else None)


_COMPANY = CompanyRules()


@cache
def _usable() -> dict[str, list[Channel]]:
    """The channels each message kind has a template for (the default templates)."""
    return {k.value: available_channels(k) for k in MessageKind}


def preparation(trigger: Trigger, policy: Policy, product: Product, holder: Customer, *,
                members: int, open_dues: Decimal | None, paid_recently: Decimal,
                calendar: BusinessCalendar, starts_at: datetime,
                verify: bool = True, plans: PlanCache | None = None) -> Preparation:
    """The journey's plan, the channels each message may use and the data check before the
    first message, from facts read beforehand: by `prepare_journey` for one policy, or by
    the daily scan for a page of them at once (its journeys start planned). Identifiers,
    dates, channels and rule names only: it goes into the journey's history. `plans`: a
    scan's cache, so that journeys alike are planned once."""
    company = _COMPANY
    start_day = starts_at.astimezone(TZ).date()
    segments = segments_for(policy, product, holder, start_day)
    plan = (plans.plan if plans is not None else plan_journey)(
        trigger, product, segments, calendar, company=company, starts_at=starts_at,
        elderly_from=elderly_from(product, holder))
    rules = product.rules
    anomalies: list[str] = []
    if verify:
        first = plan.milestones[0].channels if plan.milestones else []
        reachable = {c for c in Channel
                     if address_of(Recipient(holder.customer_id, Role.POLICYHOLDER, holder), c)}
        anomalies = [r.value for r in check_data(DataFacts(
            trigger=trigger.kind, holder_name=holder.name,
            is_organisation=holder.is_organisation, id_number=holder.id_number,
            birth_date=holder.birth_date, policy_status=PolicyStatus(policy.status),
            amount_due=trigger.amount_due, open_dues=open_dues,
            paid_recently=paid_recently if trigger.kind is not TriggerKind.DEBIT_FAILED
            else Decimal("0"),
            first_channels=first, reachable_channels=reachable))]
    hold_day = calendar.add_business_days(start_day, company.hold_business_days)
    hold_until = datetime.combine(hold_day, starts_at.astimezone(TZ).timetz())
    return Preparation(
        plan=plan, product_kind=product.kind.value, product_name=product.name,
        reinstatable=rules.reinstatable, interest_rate=rules.reinstatement_interest_rate,
        schedule=premium_schedule(policy, product) if rules.reinstatable else None,
        recipients=1 + members, policyholder_id=holder.customer_id,
        fallbacks={s: rules.fallbacks_for(s) for s in (Segment.STANDARD, Segment.ELDERLY)},
        usable=_usable(),
        anomalies=anomalies, hold_until=hold_until,
        max_dial_attempts=company.max_dial_attempts_per_day,
        redial_gap_minutes=company.redial_gap_minutes,
        voice_window=(company.send_windows[Channel.VOICE].start,
                      company.send_windows[Channel.VOICE].end),
        send_windows={c: (w.start, w.end) for c, w in company.send_windows.items()},
        hardship_channels={r.milestone: list(r.channels) for r in rules.channel_rules
                           if r.segment is Segment.HARDSHIP})


class JourneyActivities:
    """Activities bound to a database pool and one sender per channel."""

    def __init__(self, pool: asyncpg.Pool, senders: dict[Channel, Sender],
                 branches: Branches | None = None):
        self._pool = pool
        self._senders = senders
        self._branches = branches or load_branches()

    async def _calendar(self, conn: asyncpg.Connection) -> BusinessCalendar:
        return BusinessCalendar(await store.load_calendar_years(conn))

    @activity.defn
    async def prepare_journey(self, req: PrepareRequest) -> Preparation:
        """Plan the journey, decide what each message may use, and check the data (a
        journey the daily scan started planned has its preparation in its input)."""
        async with self._pool.acquire() as conn:
            bundle = await store.load_policy(conn, req.trigger.policy_number,
                                             with_members=False)
            members = await store.member_count(conn, req.trigger.policy_number)
            calendar = await self._calendar(conn)
            paid_recently = await payments.paid_between(
                conn, req.trigger.policy_number,
                req.starts_at - timedelta(days=RECENT_PAYMENT_DAYS), req.starts_at)
            await journey_records.start_journey(conn, req.journey_id, req.trigger.policy_number,
                                                req.trigger.kind.value, req.starts_at)
        open_dues = (sum((d.amount - d.paid_amount for d in bundle.policy.dues
                          if d.due_date <= req.trigger.due_date), Decimal("0"))
                     if bundle.policy.dues else None)
        return preparation(req.trigger, bundle.policy, bundle.product, bundle.policyholder,
                           members=members, open_dues=open_dues, paid_recently=paid_recently,
                           calendar=calendar, starts_at=req.starts_at, verify=req.verify)

    @activity.defn
    async def send_notifications(self, req: SendRequest) -> SendOutcome:
        """Send one message on one channel to a batch of recipients, each on its own record
        (activities/delivery.py): retried until `req.give_up_at`, then failed on record."""
        return await Delivery(self._pool, self._senders).send(req)

    @activity.defn
    async def send_milestone(self, req: MilestoneSend) -> MilestoneSent:
        """A milestone in one activity: re-check the policy (paid, terminated or reinstated
        meanwhile: nothing goes out, the answer says how the journey ends), then send on
        every channel at once. Each channel keeps its own records; an attempt that leaves a
        channel to try again is retried as a whole, and what a channel already settled is
        read back from its records, never sent twice. The answer carries the check: what
        the ledger says is owed, which the journey keeps and the messages state."""
        check = None
        sends = req.sends
        if req.recheck_stage is not None:
            check = await self._check(req.sends[0].policy_number)
            stop = recheck_outcome(req.recheck_stage, check.status, check.outstanding)
            if stop is not None:
                return MilestoneSent(stop=stop, check=check)
            # The message says what the ledger says is owed now, which the journey keeps.
            sends = [s.model_copy(update={"outstanding": check.outstanding}) for s in sends]
        delivery = Delivery(self._pool, self._senders)
        results = await asyncio.gather(*(delivery.send(s) for s in sends),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise _one_retry(errors)
        return MilestoneSent(check=check, outcomes=list(results))

    async def _check(self, policy_number: str) -> PolicyCheck:
        async with self._pool.acquire() as conn:
            check = await payments.standing(conn, policy_number)
        if check is None:
            raise ApplicationError(f"unknown policy {policy_number}", type="UnknownPolicy",
                                   non_retryable=True)
        return check

    @activity.defn
    async def record_payment(self, rec: PaymentRecord) -> PaymentStored:
        """Store the payment once (by transaction id) and apply it to the oldest open dues.

        A transaction id that another policy already used is a conflict: nothing is
        stored, and the journey refuses the payment. The answer carries the amount as
        stored, which is what the journey counts."""
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await payments.store_payment(conn, rec.policy_number, rec.payment,
                                                   rec.journey_id)
        return stored

    @activity.defn
    async def change_stage(self, change: StageChange) -> Anchored:
        """Record the stage and hand the evidence chain's head to the journey's history."""
        info = activity.info()
        async with self._pool.acquire() as conn, conn.transaction():
            if change.trigger is not None and change.started_at is not None:
                # A journey started planned has its row from its starter, which may not
                # have written it yet (or died first): the stage must not be lost.
                await journey_records.start_journey(conn, change.journey_id,
                                                    change.policy_number,
                                                    change.trigger.value, change.started_at)
            await journey_records.set_stage(conn, change.journey_id, change.stage.value,
                                            change.outcome.value if change.outcome else None,
                                            change.at)
            if change.stage is Stage.AT_RISK:
                # Out of the hold: the data check is answered.
                await agent_tasks.data_verified(conn, change.journey_id)
            if change.stage is Stage.CLOSED:
                # Tasks outlive no journey: a call to collect a premium already paid, or
                # a check of data nobody needs any more, is settled with the reason.
                await agent_tasks.cancel_open(
                    conn, change.journey_id, f"journey closed: "
                    f"{change.outcome.value if change.outcome else 'closed'}")
            if change.policy_status:
                await store.set_policy_status(conn, change.policy_number,
                                              change.policy_status, change.at)
            head = await evidence.anchor(conn, change.journey_id, info.workflow_id,
                                         info.workflow_run_id)
        return Anchored(chain_head=head)

    @activity.defn
    async def create_task(self, task: TaskRequest) -> str:
        """One task per journey, kind and reason; asking again can only raise its priority
        (a held journey's check grows urgent as the grace end nears)."""
        tid = task_id(task.journey_id, task.kind, task.reference)
        async with self._pool.acquire() as conn, conn.transaction():
            if task.kind == "inquiry_escalation":
                await journey_records.inquiry_escalated(conn, task.reference, task.policy_number,
                                                        task.raised_at or task.due_at)
            branch = None
            if task.nearest_branch:
                bundle = await store.load_policy(conn, task.policy_number, with_members=False)
                branch = nearest_branch(bundle.policyholder.postal_address,
                                        self._branches).code
            await agent_tasks.open_task(conn, tid, task.policy_number, task.journey_id,
                                        task.kind, task.priority, task.due_at,
                                        task.rules or None, branch)
        return tid

    @activity.defn
    async def may_dial(self, req: DialRequest) -> bool:
        """Whether the policyholder's number has had fewer than `max_per_day` automated
        calls on the journey day, counted over every journey that calls that number."""
        day_start = datetime.combine(req.day, time(0), TZ)
        async with self._pool.acquire() as conn:
            dialled = await deliveries.calls_to_holder(conn, req.policy_number, day_start,
                                                       day_start + timedelta(days=1))
        return dialled < req.max_per_day

    @activity.defn
    async def close_inquiry(self, req: InquiryClosed) -> None:
        """An inquiry or a reinstatement application answered: its record says when (once;
        the evidence chain forbids changing it), the note that came with it is kept, and
        its escalation task, if any, is done."""
        async with self._pool.acquire() as conn, conn.transaction():
            await journey_records.inquiry_handled(conn, req.inquiry_id, req.policy_number,
                                                  req.handled_at)
            await agent_tasks.inquiry_answered(
                conn, task_id(req.journey_id, "inquiry_escalation", req.inquiry_id))
            if req.note:
                await notes.keep_note(conn, req.policy_number, req.kind, req.inquiry_id,
                                      req.note, journey_id=req.journey_id)

    @activity.defn
    async def contact_updated(self, policy_number: str) -> None:
        """Contact details were corrected: addresses that failed for good may be tried
        again."""
        async with self._pool.acquire() as conn:
            await deliveries.clear_suppression(conn, policy_number)

    @activity.defn
    async def open_inquiry(self, req: InquiryRequest) -> InquiryView:
        """Start the response clock: one business day, at the same time of day."""
        async with self._pool.acquire() as conn:
            calendar = await self._calendar(conn)
            received = req.received_journey_at.astimezone(TZ)
            respond_day = calendar.add_business_days(
                received.date(), CompanyRules().inquiry_response_business_days)
            respond_by = datetime.combine(respond_day, received.timetz())
            await journey_records.open_inquiry(conn, req.inquiry.inquiry_id, req.policy_number,
                                               req.inquiry.kind.value, received, respond_by)
        return InquiryView(inquiry_id=req.inquiry.inquiry_id, kind=req.inquiry.kind,
                           received_at=received, respond_by=respond_by)

    @activity.defn
    async def set_public_notice(self, policy_number: str, listed: bool) -> None:
        async with self._pool.acquire() as conn:
            await journey_records.set_public_notice(conn, policy_number, listed)

    def all(self) -> list:
        return [self.prepare_journey, self.send_milestone, self.send_notifications,
                self.record_payment, self.change_stage, self.create_task, self.open_inquiry,
                self.close_inquiry, self.set_public_notice, self.contact_updated,
                self.may_dial]


__all__ = ["JourneyActivities", "Stage"]
