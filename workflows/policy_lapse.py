"""PolicyLapseWorkflow: one durable journey per policy at risk, from first reminder to close."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import search_attributes as sa

with workflow.unsafe.imports_passed_through():
    from activities.journey import JourneyActivities
    from domain.content import available_channels
    from domain.journey import (
        ContactUpdated,
        DebitFailedSignal,
        DeliveryFailed,
        InquiryHandled,
        InquiryKind,
        InquiryReceived,
        InquiryRequest,
        InquiryView,
        JourneyInput,
        JourneyState,
        JourneyStatus,
        NextMilestone,
        NotificationView,
        Outcome,
        Payment,
        PaymentAnswer,
        PaymentRecord,
        PolicyCheck,
        Preparation,
        PrepareRequest,
        RecipientScope,
        ReinstatementApplied,
        ReinstatementDecided,
        SendOutcome,
        SendRequest,
        Stage,
        StageChange,
        TaskRequest,
    )
    from domain.models import CURRENCY, Channel, MilestoneKind, Segment, TriggerKind
    from domain.plan import TZ, PlannedMilestone
    from domain.reinstatement import Due, ReinstatementQuote, journey_quote

# Activities that talk to the database: retried quickly, forever within their timeout.
DB_CALL = {"start_to_close_timeout": timedelta(seconds=30),
           "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1),
                                       maximum_interval=timedelta(seconds=30))}
# Sends: providers fail transiently; permanent failures are non-retryable errors.
SEND_CALL = {"start_to_close_timeout": timedelta(minutes=2),
             "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=2),
                                         maximum_interval=timedelta(minutes=5),
                                         maximum_attempts=8,
                                         non_retryable_error_types=["PermanentSendError"])}
MEMBER_BATCH = 500
AT_RISK_MILESTONES = {MilestoneKind.FIRST_REMINDER, MilestoneKind.SECOND_REMINDER}
FOLLOW_UPS = {MilestoneKind.FOLLOW_UP, MilestoneKind.REENROLMENT_OFFER}


@dataclass
class _Event:
    at: datetime
    kind: str  # "milestone", "lapse", "inquiry_deadline", "end"
    summary: str
    ref: str = ""


@workflow.defn(name="PolicyLapseWorkflow")
class PolicyLapseWorkflow:
    def __init__(self) -> None:
        self._input: JourneyInput | None = None
        self._s: JourneyState | None = None
        self._lock = asyncio.Lock()
        self._woken = False
        self._pending: list[object] = []  # signals that need activities, in arrival order
        self._upserted: dict[str, object] = {}
        self._payment: Payment | None = None  # the payment being acknowledged right now

    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyStatus:
        self._input = inp
        # What the starter (or the previous run) set needs no upsert again.
        current = workflow.info().typed_search_attributes
        self._upserted = {key.name: current.get(key) for key in sa.ALL
                          if current.get(key) is not None}
        if inp.carry is not None:
            self._s = inp.carry
        else:
            self._s = await self._prepare(inp)
        self._publish()
        while self._s.stage is not Stage.CLOSED:
            if self._history_is_long() and not self._pending:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(JourneyInput(
                    trigger=inp.trigger, time_scale=inp.time_scale,
                    continue_as_new_after=inp.continue_as_new_after, carry=self._s))
            event = self._next_event()
            if await self._sleep_until(event):
                async with self._lock:
                    await self._handle(event)
            async with self._lock:
                await self._drain_pending()
            self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._publish()
        return self._status()

    # --- the journey ------------------------------------------------------------------

    async def _prepare(self, inp: JourneyInput) -> JourneyState:
        now = workflow.now()
        start = inp.journey_start or now
        prep: Preparation = await workflow.execute_activity_method(
            JourneyActivities.prepare_journey,
            PrepareRequest(journey_id=self._journey_id(), trigger=inp.trigger, starts_at=start),
            summary="plan the journey from the policy and product rules", **DB_CALL)
        failures = [inp.trigger.debit_failure] if inp.trigger.debit_failure else []
        return JourneyState(
            prep=prep, stage=Stage.AT_RISK, next_index=0, amount_paid=Decimal("0"),
            transactions=[], debit_failures=failures, segments=list(prep.plan.segments),
            notifications=[], inquiries=[], undelivered=[], application_id=None,
            journey_anchor=start, wall_anchor=now)

    def _next_event(self) -> _Event:
        s = self._s
        plan = s.prep.plan
        events: list[_Event] = []
        if s.next_index < len(plan.milestones):
            m = plan.milestones[s.next_index]
            events.append(_Event(m.at, "milestone", f"until {m.key} on {m.day}", m.key))
        if s.stage is Stage.AT_RISK and plan.lapses_at is not None:
            events.append(_Event(plan.lapses_at, "lapse", f"until the lapse at {plan.lapses_at}"))
        for inq in s.inquiries:
            if not inq.escalated:
                events.append(_Event(inq.respond_by, "inquiry_deadline",
                                     f"until inquiry {inq.inquiry_id} must be answered",
                                     inq.inquiry_id))
        if not events:
            if s.stage is Stage.REINSTATING and plan.reinstatement_deadline is not None:
                # Every follow-up is done; underwriting still has until the deadline.
                deadline = datetime.combine(plan.reinstatement_deadline, datetime.min.time(),
                                            plan.lapses_at.tzinfo)
                return _Event(deadline, "end", "until underwriting decides")
            return _Event(self._journey_now(), "end", "journey complete")
        return min(events, key=lambda e: (e.at, e.kind != "lapse"))

    async def _handle(self, event: _Event) -> None:
        if event.kind == "lapse":
            await self._lapse()
        elif event.kind == "milestone":
            m = self._s.prep.plan.milestones[self._s.next_index]
            self._s.next_index += 1
            await self._run_milestone(m)
        elif event.kind == "inquiry_deadline":
            await self._escalate(event.ref)
        else:
            await self._finish()

    async def _lapse(self) -> None:
        s = self._s
        short_term = s.prep.product_kind == "short_term"
        s.stage = Stage.LAPSED
        await self._change_stage(Stage.LAPSED, policy_status="lapsed",
                                 summary="mark the policy lapsed: cover suspended"
                                 if not short_term else "mark the policy not renewed")

    async def _finish(self) -> None:
        trigger = self._input.trigger.kind
        if trigger is TriggerKind.RESCISSION:
            outcome = Outcome.RESCINDED
        elif self._s.prep.product_kind == "short_term":
            outcome = Outcome.NOT_RENEWED
        else:
            outcome = Outcome.FOLLOW_UP_ENDED
        await self._close(outcome)

    async def _run_milestone(self, m: PlannedMilestone) -> None:
        s = self._s
        if m.kind in FOLLOW_UPS and s.stage is Stage.REINSTATING:
            self._note(m.key, m.channels[0], "skipped", m.at)  # paused while underwriting decides
            return
        if m.kind is not MilestoneKind.RESCISSION_NOTICE:
            check: PolicyCheck = await workflow.execute_activity_method(
                JourneyActivities.check_policy, self._input.trigger.policy_number,
                summary=f"re-check the policy before {m.key}", **DB_CALL)
            if s.stage is Stage.AT_RISK and check.outstanding <= 0:
                await self._close(Outcome.PAID)  # paid through another route: nothing more
                return
            if s.stage is Stage.AT_RISK and check.status != "in_force":
                await self._close(Outcome.CANCELLED)  # terminated or rescinded meanwhile
                return
            if s.stage is not Stage.AT_RISK and check.status == "in_force":
                await self._close(Outcome.REINSTATED)
                return
        await self._deliver(m.key, m.kind.value, m.slots_by_time())

    # --- sending ----------------------------------------------------------------------

    async def _deliver(self, key: str, message: str,
                       slot_groups: list[tuple[datetime, list[Channel]]],
                       members: bool = True) -> None:
        """Send a milestone on its channels, fall back per recipient, handle the unreachable."""
        s = self._s
        unreached: dict[RecipientScope, set[str] | None] = {"policyholder": None}
        if members and s.prep.recipients > 1:
            unreached["members"] = None
        tried: set[Channel] = set()
        at = slot_groups[0][0]
        for at, channels in slot_groups:
            # A later slot (a channel with later quiet hours) waits; signals are served.
            while not await self._sleep_until(_Event(at, "slot", f"until {key} may go out on "
                                                     f"{', '.join(c.value for c in channels)}")):
                await self._drain_pending()
                if s.stage is Stage.CLOSED:
                    return
            results = await asyncio.gather(*(self._send(key, message, ch, scope, at=at)
                                             for ch in channels for scope in unreached))
            tried.update(channels)
            self._merge(unreached, results)
        # Only channels that have a template for this message can stand in.
        usable = set(available_channels(message))
        fallbacks = [c for c in self._fallback_order() if c not in tried and c in usable]
        for channel in fallbacks:
            if not any(unreached.values()):
                break
            results = await asyncio.gather(*(
                self._send(key, message, channel, scope, only=sorted(ids), at=at)
                for scope, ids in unreached.items() if ids))
            self._merge(unreached, results)
        if unreached.get("policyholder"):
            await self._unreachable(key)
        if unreached.get("members"):
            await self._task("contact_repair", f"{key}-members", priority=3)

    async def _send(self, key: str, message: str, channel: Channel, scope: RecipientScope,
                    only: list[str] | None = None, at: datetime | None = None,
                    ) -> tuple[RecipientScope, list[SendOutcome]]:
        """Send to one scope on one channel; `at` is the journey moment the send belongs to
        (its slot), which dates the message even when compressed time runs on meanwhile."""
        s = self._s
        at = at or self._journey_now()
        plan = s.prep.plan
        trigger = self._input.trigger
        if s.debit_failures:
            trigger = trigger.model_copy(update={"debit_failure": s.debit_failures[-1]})
        milestone = next((m for m in plan.milestones if m.key == key.split("-")[0]), None)
        base = SendRequest(
            journey_id=self._journey_id(), policy_number=trigger.policy_number,
            milestone_key=key, message=message, channel=channel, scope=scope, only=only,
            journey_date=at.astimezone(TZ).date(), journey_at=at, trigger=trigger,
            outstanding=self._outstanding(), segments=s.segments,
            grace_ends_on=plan.grace_ends_on, lapses_on=plan.lapses_on,
            reinstatement_deadline=plan.reinstatement_deadline,
            follow_up_month=milestone.index if milestone else None, quote=self._quote(),
            paid_amount=self._payment.amount if self._payment else None,
            paid_on=self._payment.paid_at.astimezone(TZ).date() if self._payment else None)
        if scope == "members" and only is None:
            batches = [base.model_copy(update={"offset": o, "limit": MEMBER_BATCH})
                       for o in range(0, s.prep.recipients - 1, MEMBER_BATCH)]
        else:
            batches = [base]
        outcomes = await asyncio.gather(*(self._send_batch(b, at) for b in batches))
        return scope, list(outcomes)

    async def _send_batch(self, req: SendRequest, at: datetime) -> SendOutcome:
        try:
            out: SendOutcome = await workflow.execute_activity_method(
                JourneyActivities.send_notifications, req,
                summary=f"{req.message} by {req.channel.value} to {req.scope}"
                        + (f" {req.offset + 1}-{req.offset + req.limit}"
                           if req.scope == "members" else ""), **SEND_CALL)
        except ActivityError as err:
            # Retries are exhausted or the provider said no for good: treat this channel
            # as dead for these recipients and let the fallback order take over.
            workflow.logger.warning("send failed for good", extra={
                "milestone": req.milestone_key, "channel": req.channel.value,
                "error": type(err.cause).__name__ if err.cause else "unknown"})
            everyone = ([self._s.prep.policyholder_id] if req.scope == "policyholder"
                        else list(req.only or []))
            out = SendOutcome(channel=req.channel, sent=0, failed=everyone)
            if req.scope == "members" and req.only is None:
                # Member ids of a failed batch are not known here: operations take over.
                await self._task("contact_repair", f"{req.milestone_key}-batch{req.offset}", 3)
        status = "sent" if out.sent else "failed"
        if out.sent or out.failed:
            self._note(req.milestone_key, req.channel, status, at,
                       out.first_notification_id, out.sent + len(out.failed))
        return out

    @staticmethod
    def _merge(unreached: dict[RecipientScope, set[str] | None],
               results: list[tuple[RecipientScope, list[SendOutcome]]]) -> None:
        """A recipient is unreached while every channel tried so far failed for them."""
        per_scope: dict[RecipientScope, list[set[str]]] = {}
        for scope, outcomes in results:
            failed: set[str] = set()
            for out in outcomes:
                failed |= set(out.failed)
            per_scope.setdefault(scope, []).append(failed)
        for scope, failures in per_scope.items():
            failed_everywhere = set.intersection(*failures)
            if unreached[scope] is None:
                unreached[scope] = failed_everywhere
            else:
                unreached[scope] &= failed_everywhere

    async def _unreachable(self, key: str) -> None:
        s = self._s
        if key not in s.undelivered:
            s.undelivered.append(key)
        if Segment.UNREACHABLE not in s.segments:
            s.segments.append(Segment.UNREACHABLE)
        await self._task("contact_repair", key, priority=2)
        await self._send(key + "-emergency", "emergency_contact", Channel.SMS,
                         "emergency_contact")
        if not s.public_notice:
            s.public_notice = True
            await workflow.execute_activity_method(
                JourneyActivities.set_public_notice,
                args=[self._input.trigger.policy_number, True],
                summary="list the policy (masked) on the public unreachable notice", **DB_CALL)

    def _fallback_order(self) -> list[Channel]:
        segment = Segment.ELDERLY if Segment.ELDERLY in self._s.segments else Segment.STANDARD
        return self._s.prep.fallbacks.get(segment) or self._s.prep.fallbacks[Segment.STANDARD]

    def _note(self, key: str, channel: Channel, status: str, at: datetime,
              notification_id: str | None = None, recipients: int = 1) -> None:
        self._s.notifications.append(NotificationView(
            id=notification_id or f"{self._journey_id()}/{key}/{channel.value}", milestone=key,
            channel=channel, status=status, at=at, recipients=recipients))

    # --- people and tasks ---------------------------------------------------------------

    async def _task(self, kind: str, reference: str, priority: int) -> None:
        await workflow.execute_activity_method(
            JourneyActivities.create_task,
            TaskRequest(journey_id=self._journey_id(),
                        policy_number=self._input.trigger.policy_number, kind=kind,
                        priority=priority, due_at=self._journey_now() + timedelta(days=1),
                        reference=reference),
            summary=f"agent task: {kind} ({reference})", **DB_CALL)

    async def _escalate(self, inquiry_id: str) -> None:
        s = self._s
        s.inquiries = [i.model_copy(update={"escalated": True}) if i.inquiry_id == inquiry_id
                       else i for i in s.inquiries]
        await self._task("inquiry_escalation", inquiry_id, priority=1)

    async def _change_stage(self, stage: Stage, summary: str, outcome: Outcome | None = None,
                            policy_status: str | None = None) -> None:
        await workflow.execute_activity_method(
            JourneyActivities.change_stage,
            StageChange(journey_id=self._journey_id(),
                        policy_number=self._input.trigger.policy_number, stage=stage,
                        at=self._journey_now(), outcome=outcome, policy_status=policy_status,
                        trigger=self._input.trigger.kind.value),
            summary=summary, **DB_CALL)

    async def _close(self, outcome: Outcome) -> None:
        s = self._s
        if outcome is Outcome.PAID:
            await self._deliver("payment_confirmation", "payment_confirmation",
                                [(self._journey_now(), [Channel.SMS])], members=False)
        s.stage = Stage.CLOSED
        s.outcome = outcome
        await self._change_stage(Stage.CLOSED, f"close the journey: {outcome.value}",
                                 outcome=outcome,
                                 policy_status="in_force" if outcome in (
                                     Outcome.PAID, Outcome.REINSTATED) else None)
        if s.public_notice:
            s.public_notice = False
            await workflow.execute_activity_method(
                JourneyActivities.set_public_notice,
                args=[self._input.trigger.policy_number, False],
                summary="remove the policy from the public unreachable notice", **DB_CALL)

    # --- signals, update and query --------------------------------------------------------

    @workflow.signal(name="payment_received")
    async def payment_received(self, payment: Payment) -> None:
        try:
            self._validate_payment(payment)
        except ApplicationError as err:
            workflow.logger.warning("payment signal ignored", extra={"reason": err.message})
            return
        await self._wait_ready()
        async with self._lock:
            await self._apply_payment(payment)
        self._wake()

    @workflow.update(name="record_payment")
    async def record_payment(self, payment: Payment) -> PaymentAnswer:
        await self._wait_ready()
        async with self._lock:
            answer = await self._apply_payment(payment)
        self._wake()
        return answer

    @record_payment.validator
    def _check_record_payment(self, payment: Payment) -> None:
        self._validate_payment(payment)

    @workflow.signal(name="debit_failed")
    def debit_failed(self, failure: DebitFailedSignal) -> None:
        self._queue(failure)

    @workflow.signal(name="contact_updated")
    def contact_updated(self, update: ContactUpdated) -> None:
        self._queue(update)

    @workflow.signal(name="inquiry_received")
    def inquiry_received(self, inquiry: InquiryReceived) -> None:
        self._queue(inquiry)

    @workflow.signal(name="inquiry_handled")
    def inquiry_handled(self, handled: InquiryHandled) -> None:
        self._queue(handled)

    @workflow.signal(name="reinstatement_applied")
    def reinstatement_applied(self, applied: ReinstatementApplied) -> None:
        self._queue(applied)

    @workflow.signal(name="reinstatement_decided")
    def reinstatement_decided(self, decided: ReinstatementDecided) -> None:
        self._queue(decided)

    @workflow.signal(name="delivery_failed")
    def delivery_failed(self, failed: DeliveryFailed) -> None:
        if failed.permanent:
            self._queue(failed)

    @workflow.query(name="status")
    def status(self) -> JourneyStatus:
        if self._s is None:
            raise ApplicationError("the journey is still being planned; ask again shortly")
        return self._status()

    def _queue(self, item: object) -> None:
        self._pending.append(item)
        self._wake()

    async def _drain_pending(self) -> None:
        while self._pending and self._s.stage is not Stage.CLOSED:
            item = self._pending.pop(0)
            if isinstance(item, DebitFailedSignal):
                # Signal-with-start repeats the failure that is already the trigger's.
                if all(f.failed_at != item.failed_at for f in self._s.debit_failures):
                    self._s.debit_failures.append(item)
            elif isinstance(item, ContactUpdated):
                await self._contact_updated()
            elif isinstance(item, InquiryReceived):
                await self._open_inquiry(item)
            elif isinstance(item, InquiryHandled):
                self._s.inquiries = [i for i in self._s.inquiries
                                     if i.inquiry_id != item.inquiry_id]
            elif isinstance(item, ReinstatementApplied):
                await self._reinstatement_applied(item)
            elif isinstance(item, ReinstatementDecided):
                await self._reinstatement_decided(item)
            elif isinstance(item, DeliveryFailed):
                await self._delivery_failed(item)

    # --- what the signals do ----------------------------------------------------------------

    def _validate_payment(self, payment: Payment) -> None:
        if payment.amount <= 0:
            raise ApplicationError(f"amount must be positive, got {payment.amount}",
                                   type="InvalidPayment")
        if payment.currency != CURRENCY:
            raise ApplicationError(f"currency must be {CURRENCY}, got {payment.currency}",
                                   type="InvalidPayment")
        if self._s is not None and self._s.stage is Stage.CLOSED:
            raise ApplicationError("the journey is closed", type="JourneyClosed")

    async def _apply_payment(self, payment: Payment) -> PaymentAnswer:
        s = self._s
        if payment.transaction_id in s.transactions:
            return PaymentAnswer(accepted=True, outcome="duplicate",
                                 outstanding=self._outstanding())
        if s.stage is Stage.CLOSED:
            return PaymentAnswer(accepted=False, outcome="journey_closed",
                                 outstanding=self._outstanding())
        await workflow.execute_activity_method(
            JourneyActivities.record_payment,
            PaymentRecord(policy_number=self._input.trigger.policy_number, payment=payment),
            summary=f"record payment {payment.transaction_id}", **DB_CALL)
        self._payment = payment
        s.transactions.append(payment.transaction_id)
        s.amount_paid += payment.amount
        if self._input.trigger.kind is TriggerKind.RESCISSION:
            return PaymentAnswer(accepted=True, outcome="recorded",
                                 outstanding=self._outstanding())
        if s.stage is Stage.AT_RISK:
            if self._outstanding() <= 0:
                await self._close(Outcome.PAID)
                return PaymentAnswer(accepted=True, outcome="paid_in_full",
                                     outstanding=Decimal("0"))
            return PaymentAnswer(accepted=True, outcome="recorded",
                                 outstanding=self._outstanding())
        # After the lapse a payment alone does not restore cover: explain reinstatement.
        await self._deliver(f"payment_after_lapse-{payment.transaction_id}",
                            "payment_after_lapse", [(self._journey_now(), [Channel.SMS])],
                            members=False)
        return PaymentAnswer(accepted=True, outcome="after_lapse",
                             outstanding=self._outstanding())

    async def _open_inquiry(self, inquiry: InquiryReceived) -> None:
        s = self._s
        if any(i.inquiry_id == inquiry.inquiry_id for i in s.inquiries):
            return
        view: InquiryView = await workflow.execute_activity_method(
            JourneyActivities.open_inquiry,
            InquiryRequest(journey_id=self._journey_id(),
                           policy_number=self._input.trigger.policy_number, inquiry=inquiry,
                           received_journey_at=self._journey_now()),
            summary=f"open the response clock for inquiry {inquiry.inquiry_id}", **DB_CALL)
        s.inquiries.append(view)
        if inquiry.kind is InquiryKind.HARDSHIP and Segment.HARDSHIP not in s.segments:
            s.segments.append(Segment.HARDSHIP)

    async def _reinstatement_applied(self, applied: ReinstatementApplied) -> None:
        s = self._s
        if s.stage is not Stage.LAPSED or not s.prep.reinstatable:
            workflow.logger.info("reinstatement application ignored",
                                 extra={"stage": s.stage.value})
            return
        s.stage = Stage.REINSTATING
        s.application_id = applied.application_id
        await self._change_stage(Stage.REINSTATING, "reinstatement applied: follow-ups pause")
        await self._open_inquiry(InquiryReceived(
            inquiry_id=applied.application_id, kind=InquiryKind.REINSTATEMENT,
            received_at=applied.applied_at))

    async def _reinstatement_decided(self, decided: ReinstatementDecided) -> None:
        s = self._s
        if s.stage is not Stage.REINSTATING or decided.application_id != s.application_id:
            workflow.logger.info("reinstatement decision ignored: no such open application")
            return
        s.inquiries = [i for i in s.inquiries if i.inquiry_id != decided.application_id]
        if decided.approved:
            await self._deliver("reinstatement_approved", "reinstatement_approved",
                                [(self._journey_now(), [Channel.SMS])], members=False)
            await self._close(Outcome.REINSTATED)
            return
        s.stage = Stage.LAPSED
        s.application_id = None
        await self._deliver(f"reinstatement_refused-{decided.application_id}",
                            "reinstatement_refused", [(self._journey_now(), [Channel.SMS])],
                            members=False)
        await self._change_stage(Stage.LAPSED, "reinstatement refused: follow-ups resume")

    async def _contact_updated(self) -> None:
        s = self._s
        missed, s.undelivered = s.undelivered, []
        if Segment.UNREACHABLE in s.segments:
            s.segments.remove(Segment.UNREACHABLE)
        for key in missed:
            m = next((m for m in s.prep.plan.milestones if m.key == key), None)
            message = m.kind.value if m else key.split("-")[0]
            channels = m.channels if m else [Channel.SMS]
            await self._deliver(f"{key}-resend{len(s.notifications)}", message,
                                [(self._journey_now(), channels)])
        if s.public_notice and not s.undelivered:
            s.public_notice = False
            await workflow.execute_activity_method(
                JourneyActivities.set_public_notice,
                args=[self._input.trigger.policy_number, False],
                summary="contact repaired: remove the public notice entry", **DB_CALL)

    async def _delivery_failed(self, failed: DeliveryFailed) -> None:
        # Notification ids are "{journey}/{milestone}/{channel}/{recipient}".
        parts = failed.notification_id.split("/")
        if len(parts) < 4 or parts[0] != self._journey_id():
            workflow.logger.warning("delivery failure for an unknown notification ignored")
            return
        key, recipient = parts[1], parts[-1]
        m = next((m for m in self._s.prep.plan.milestones if m.key == key), None)
        message = m.kind.value if m else key.split("-")[0]
        scope: RecipientScope = ("policyholder" if recipient == self._s.prep.policyholder_id
                                 else "members")
        unreached: dict[RecipientScope, set[str] | None] = {scope: {recipient}}
        usable = set(available_channels(message))
        for channel in [c for c in self._fallback_order()
                        if c != failed.channel and c in usable]:
            results = [await self._send(f"{key}-fallback", message, channel, scope,
                                        only=[recipient])]
            self._merge(unreached, results)
            if not unreached[scope]:
                return
        if scope == "policyholder":
            await self._unreachable(key)

    # --- time and visibility -------------------------------------------------------------

    def _journey_now(self) -> datetime:
        s = self._s
        elapsed = workflow.now() - s.wall_anchor
        return s.journey_anchor + elapsed * self._input.time_scale

    async def _sleep_until(self, event: _Event) -> bool:
        """Wait until the journey clock reaches the event; False when a signal came first."""
        self._woken = False
        if self._pending:
            return False
        wait = (event.at - self._journey_now()).total_seconds() / self._input.time_scale
        if wait <= 0:
            return True
        try:
            await workflow.wait_condition(lambda: self._woken, timeout=timedelta(seconds=wait),
                                          timeout_summary=event.summary)
        except TimeoutError:
            return True
        return False

    def _wake(self) -> None:
        self._woken = True

    async def _wait_ready(self) -> None:
        await workflow.wait_condition(lambda: self._s is not None)

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (info.is_continue_as_new_suggested()
                or info.get_current_history_length() > self._input.continue_as_new_after)

    def _journey_id(self) -> str:
        info = workflow.info()
        return f"{info.workflow_id}@{info.first_execution_run_id[:8]}"

    def _outstanding(self) -> Decimal:
        return max(Decimal("0"), self._input.trigger.amount_due - self._s.amount_paid)

    def _next_milestone(self) -> NextMilestone | None:
        s = self._s
        if s.stage is Stage.CLOSED or s.next_index >= len(s.prep.plan.milestones):
            return None
        m = s.prep.plan.milestones[s.next_index]
        return NextMilestone(name=m.key, at=m.at, channels=m.channels)

    def _quote(self) -> ReinstatementQuote | None:
        """What reinstatement costs today, for a lapsed reinstatable policy in its window."""
        s = self._s
        plan = s.prep.plan
        today = self._journey_now().date()
        if (s.stage not in (Stage.LAPSED, Stage.REINSTATING) or not s.prep.reinstatable
                or plan.lapses_on is None or plan.reinstatement_deadline is None
                or today > plan.reinstatement_deadline):
            return None
        # Every premium unpaid today, each with interest from its own due date (a payment
        # after lapse counts). The journey knows the trigger's due; no schedule yet.
        trigger = self._input.trigger
        due = Due(due_date=trigger.due_date, amount=trigger.amount_due)
        return journey_quote(open_dues=[due], schedule=None, paid=s.amount_paid,
                             rate=s.prep.interest_rate, on=today,
                             insurer_fault=trigger.insurer_fault,
                             deadline=plan.reinstatement_deadline)

    def _status(self) -> JourneyStatus:
        s = self._s
        plan = s.prep.plan
        now = self._journey_now()
        return JourneyStatus(
            policy_number=self._input.trigger.policy_number, stage=s.stage, outcome=s.outcome,
            trigger=self._input.trigger.kind.value, due_date=plan.due_date,
            grace_ends_at=plan.grace_ends_on, lapses_at=plan.lapses_at,
            amount_due=self._input.trigger.amount_due, amount_paid=s.amount_paid,
            outstanding=self._outstanding(), next_milestone=self._next_milestone(),
            notifications=list(s.notifications),
            open_inquiries=list(s.inquiries), reinstatement=self._quote(),
            segments=list(s.segments), journey_now=now, debit_failures=list(s.debit_failures))

    def _publish(self) -> None:
        """Upsert the search attributes that changed, and describe the journey for the UI."""
        s = self._s
        plan = s.prep.plan
        nxt = self._next_milestone()
        wanted: dict[str, tuple] = {
            "PolicyNumber": (sa.POLICY_NUMBER, plan.policy_number),
            "LapseStage": (sa.LAPSE_STAGE, s.stage.value),
            "LapseTrigger": (sa.LAPSE_TRIGGER, plan.trigger.value),
            "ProductKind": (sa.PRODUCT_KIND, s.prep.product_kind),
            "CustomerSegment": (sa.CUSTOMER_SEGMENT, sorted(x.value for x in s.segments)),
            "GraceEndsAt": (sa.GRACE_ENDS_AT, plan.lapses_at),
            "NextReminderAt": (sa.NEXT_REMINDER_AT, nxt.at if nxt else None),
            "OutstandingAmount": (sa.OUTSTANDING_AMOUNT, float(self._outstanding())),
        }
        updates: list[SearchAttributeUpdate] = []
        for name, (key, value) in wanted.items():
            if self._upserted.get(name, object()) == value:
                continue
            self._upserted[name] = value
            updates.append(key.value_unset() if value is None or value == []
                           else key.value_set(value))
        if updates:
            workflow.upsert_search_attributes(updates)
        sent = sum(1 for n in s.notifications if n.status == "sent")
        failed = sum(1 for n in s.notifications if n.status == "failed")
        lines = [f"**Stage:** {s.stage.value}" + (f" ({s.outcome.value})" if s.outcome else ""),
                 f"**Outstanding:** ¥{self._outstanding():,.2f} of ¥"
                 f"{self._input.trigger.amount_due:,.2f}",
                 f"**Grace ends:** {plan.grace_ends_on or '-'}; lapse: {plan.lapses_on or '-'}",
                 f"**Next:** {nxt.name} at {nxt.at:%Y-%m-%d %H:%M} "
                 f"({', '.join(c.value for c in nxt.channels)})" if nxt else "**Next:** -",
                 f"**Messages:** {sent} sent, {failed} failed",
                 f"**Open inquiries:** {len(s.inquiries)}",
                 f"**Segments:** {', '.join(x.value for x in s.segments) or 'standard'}"]
        workflow.set_current_details("\n\n".join(lines))
