"""PolicyLapseWorkflow: one durable journey per policy at risk, from first reminder to close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import contract
    import contract as sa
    from activities.journey import JourneyActivities
    from contract import UPDATES, read_payload
    from domain.ids import IdError, JourneyId, MilestoneKey, NotificationId, Suffix
    from domain.journey import (
        BadSignal,
        ContactUpdated,
        DataVerified,
        DebitFailedSignal,
        DeferredFallback,
        DeferredMessage,
        DeliveryFailed,
        DialRequest,
        InquiryClosed,
        InquiryHandled,
        InquiryKind,
        InquiryReceived,
        InquiryRequest,
        InquiryView,
        JourneyInput,
        JourneyState,
        JourneyStatus,
        MilestoneSend,
        MilestoneSent,
        NextMilestone,
        NotificationView,
        Outcome,
        Payment,
        PaymentAnswer,
        PaymentOutcome,
        PaymentRecord,
        PaymentStored,
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
        VerificationOutcome,
        payment_problem,
    )
    from domain.journey_rules import (
        ROLE_OF,
        allowed_at,
        caught_up_slots,
        due_after_hold,
        end_outcome,
        event_slots,
        failed_for_good,
        fallback_segment,
        follow_up_paused,
        is_short_term,
        milestone_moment,
        must_prove,
        needs_home_visit,
        payment_outcome,
        proven,
        rechecks_policy,
        redial_at,
        segments_at,
        stand_ins,
        still_due_after_close,
        with_segment_channels,
        worth_resending,
    )
    from domain.models import (
        Channel,
        MessageKind,
        NotificationStatus,
        PolicyStatus,
        Segment,
        TriggerKind,
    )
    from domain.plan import TZ, PlannedMilestone
    from domain.reinstatement import Due, ReinstatementQuote, journey_quote
    from domain.verification import hold_priority

# Activities that talk to the database: retried quickly, forever within their timeout.
DB_CALL = {"start_to_close_timeout": timedelta(seconds=30),
           "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1),
                                       maximum_interval=timedelta(seconds=30))}
# Sends: providers fail transiently, for as long as an outage lasts. The activity retries
# (backoff capped, a provider's Retry-After as the next delay) until the message's
# `give_up_at`, then records the give-up and answers: it never fails for a provider.
SEND_CALL = {"start_to_close_timeout": timedelta(minutes=5),
             "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=2),
                                         maximum_interval=timedelta(minutes=5),
                                         non_retryable_error_types=["PermanentSendError"])}
MEMBER_BATCH = 500
# A message outside the plan (a confirmation, a resend) is worth this long of journey time.
EVENT_MESSAGE_LIFETIME = timedelta(days=1)
# However compressed the journey's time, a send keeps retrying at least this long of wall
# time (a deadline a day of journey time away is a fraction of a second at high scales).
MIN_SEND_RETRYING = timedelta(minutes=10)
# Call statuses after which a call is dialled again (Twilio's words).
REDIAL_CODES = frozenset({"busy", "no-answer"})


@dataclass
class _Event:
    at: datetime
    kind: str  # "milestone", "lapse", "inquiry_deadline", "redial", "deferred", "end", ...
    summary: str
    ref: str = ""


@workflow.defn(name=contract.WORKFLOW_TYPE)
class PolicyLapseWorkflow:
    def __init__(self) -> None:
        self._input: JourneyInput | None = None
        self._s: JourneyState | None = None
        self._lock = asyncio.Lock()  # the journey's steps, one at a time
        # Payments, one at a time, but never behind a milestone that waits for a provider:
        # a payment is answered once it is stored and its effect decided.
        self._pay_lock = asyncio.Lock()
        self._woken = False
        # The journey's timers by the journey moment they wait for (see _sleep_until).
        self._timers: dict[datetime, asyncio.Task[None]] = {}
        self._pending: list[object] = []  # signals that need activities, in arrival order
        self._upserted: dict[str, object] = {}
        self._payment: Payment | None = None  # the payment being acknowledged right now
        self._settling = False  # closed: the confirmation and records are being done

    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyStatus:
        self._input = inp
        # What the starter (or the previous run) set needs no upsert again.
        current = workflow.info().typed_search_attributes
        self._upserted = {key.name: current.get(key) for key in sa.SEARCH_ATTRIBUTES
                          if current.get(key) is not None}
        if inp.carry is not None:
            self._s = inp.carry
        else:
            now = workflow.now()
            start = inp.journey_start or now
            # Planned by the starter (the daily scan plans its pages), or planned here.
            prep = inp.preparation or await self._plan(inp, start)
            self._s = self._started(inp, prep, start, now)
            if self._s.prep.anomalies:
                await self._hold()
        if not self._due_now():  # a first reminder due at once: one upsert after it
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
            if not self._due_now():  # what is due at once changes the attributes again
                self._publish()
        async with self._lock:
            await self._settle_close()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._publish()
        return self._status()

    # --- the journey ------------------------------------------------------------------

    async def _plan(self, inp: JourneyInput, start: datetime,
                    verify: bool = True) -> Preparation:
        return await workflow.execute_activity_method(
            JourneyActivities.prepare_journey,
            PrepareRequest(journey_id=self._journey_id(), trigger=inp.trigger, starts_at=start,
                           verify=verify),
            summary="plan the journey from the policy and product rules", **DB_CALL)

    def _started(self, inp: JourneyInput, prep: Preparation, start: datetime,
                 now: datetime) -> JourneyState:
        """The journey's state at its start, from its plan."""
        failures = [self._without_text(inp.trigger.debit_failure)] \
            if inp.trigger.debit_failure else []
        return JourneyState(
            prep=prep, stage=Stage.AT_RISK, next_index=0, amount_paid=Decimal("0"),
            owed=inp.trigger.amount_due,
            transactions=[], debit_failures=failures, segments=list(prep.plan.segments),
            notifications=[], inquiries=[], undelivered=[], application_id=None,
            journey_anchor=start, wall_anchor=self._wall_anchor(inp, now))

    @staticmethod
    def _wall_anchor(inp: JourneyInput, now: datetime) -> datetime:
        """The starter's moment when it is plausible (a scan's journeys share it), else the
        first workflow task's (a clock far off, such as a time-skipping test server's)."""
        if inp.journey_start is None or inp.wall_anchor is None:
            return now
        return inp.wall_anchor if abs(now - inp.wall_anchor) < timedelta(minutes=10) else now

    @staticmethod
    def _without_text(failure):
        """A debit failure without its free text (kept in PostgreSQL, never in history)."""
        return failure.model_copy(update={"reason_text": ""}) if failure.reason_text \
            else failure

    def _next_event(self) -> _Event:
        s = self._s
        plan = s.prep.plan
        events: list[_Event] = []
        if s.stage is Stage.HELD:
            # Nothing goes out while held; the grace clock runs on, so the task escalates.
            if not s.hold_escalated:
                events.append(_Event(self._hold_deadline(), "hold_deadline",
                                     "until the data check must be answered"))
            else:
                events.append(_Event(self._journey_now() + timedelta(days=3650), "held",
                                     "until operations verify the data"))
            return min(events, key=lambda e: e.at)
        if s.next_index < len(plan.milestones):
            m = plan.milestones[s.next_index]
            events.append(_Event(self._milestone_at(m), "milestone",
                                 f"until {m.key} on {m.day}", m.key))
        for at, key, attempt in s.redials:
            events.append(_Event(at, "redial", f"until {key} is dialled again ({attempt})",
                                 key))
        for d in s.deferred:
            events.append(_Event(d.at, "deferred", f"until {d.key} may go out (quiet hours)",
                                 d.key))
        for f in s.fallbacks:
            events.append(_Event(f.at, "fallback", f"until the fallback for {f.key} may go "
                                 "out (quiet hours)", f.key))
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
            if self._milestone_at(m) > self._journey_now():
                return  # its timer fired hours ago (no worker): it waits for the morning
            self._s.next_index += 1
            # Caught up in its channels' quiet hours, it waited for them: dated when it goes.
            await self._run_milestone(m, waited=event.at > m.at)
        elif event.kind == "inquiry_deadline":
            await self._escalate(event.ref)
        elif event.kind == "redial":
            await self._redial_now(event)
        elif event.kind == "deferred":
            d = min(self._s.deferred, key=lambda d: d.at)
            self._s.deferred.remove(d)
            # Its first channel opens at d.at (the clock may read a hair before): now; a
            # channel that opens later keeps its own slot.
            now = self._journey_now()
            slots = [(now if at <= d.at else at, channels) for at, channels in
                     event_slots(d.at, d.channels, self._s.prep.send_windows)]
            await self._deliver(d.key, d.message, slots, members=d.members, formal=d.formal)
        elif event.kind == "fallback":
            f = min(self._s.fallbacks, key=lambda f: f.at)
            self._s.fallbacks.remove(f)
            if f.scope == "emergency_contact":
                await self._send(f.key, f.message, Channel.SMS, "emergency_contact")
            else:
                await self._fall_back_on(f)
        elif event.kind == "hold_deadline":
            self._s.hold_escalated = True  # the same task, now the most urgent
            await self._task("data_verification", "hold", priority=1,
                             rules=self._s.prep.anomalies)
        elif event.kind == "end":
            await self._finish()

    async def _lapse(self) -> None:
        s = self._s
        s.stage = Stage.LAPSED
        short_term = is_short_term(self._input.trigger.kind, s.prep.product_kind)
        await self._change_stage(Stage.LAPSED, policy_status=PolicyStatus.LAPSED,
                                 summary="mark the policy not renewed" if short_term
                                 else "mark the policy lapsed: cover suspended")

    async def _finish(self) -> None:
        self._close(end_outcome(self._input.trigger.kind, self._s.prep.product_kind))

    # --- the data check before the first message -------------------------------------------

    def _hold_deadline(self) -> datetime:
        s = self._s
        deadline = s.prep.hold_until or (s.held_since + timedelta(days=1))
        lapses_at = s.prep.plan.lapses_at
        if lapses_at is not None:
            deadline = min(deadline, lapses_at - timedelta(days=7))
        return max(deadline, s.held_since)

    async def _hold(self) -> None:
        s = self._s
        s.stage = Stage.HELD
        s.held_since = self._journey_now()
        await self._change_stage(Stage.HELD, "hold: the data check failed ("
                                 + ", ".join(s.prep.anomalies) + ")")
        grace_end = s.prep.plan.grace_ends_on
        days = (grace_end - s.held_since.astimezone(TZ).date()).days if grace_end else None
        await self._task("data_verification", "hold", priority=hold_priority(days),
                         rules=s.prep.anomalies)

    async def _data_verified(self, verified: DataVerified) -> None:
        s = self._s
        if s.stage is not Stage.HELD:
            workflow.logger.info("data_verified ignored: the journey is not held",
                                 extra={"stage": s.stage.value})
            return
        if verified.outcome is VerificationOutcome.CANCEL:
            self._close(Outcome.CANCELLED)
            return
        # Plan again from the corrected data, from the same start: what fell due while
        # held goes out now (the latest due milestone, and the formal demand if the
        # policy has not lapsed yet); what a later milestone supersedes does not.
        s.prep = await self._plan(self._input, s.journey_anchor, verify=False)
        s.segments = list(s.prep.plan.segments)
        s.stage = Stage.AT_RISK
        await self._change_stage(Stage.AT_RISK, f"data verified by {verified.verified_by}: "
                                 "the journey goes on")
        s.skipped = due_after_hold(s.prep.plan.milestones, self._journey_now(),
                                   s.prep.plan.lapses_at)

    async def _run_milestone(self, m: PlannedMilestone, waited: bool = False) -> None:
        s = self._s
        if m.key in s.skipped:
            self._note(m.key, m.channels[0], NotificationStatus.SKIPPED, m.at)  # superseded
            return
        if follow_up_paused(m.kind, s.stage):
            self._note(m.key, m.channels[0], NotificationStatus.SKIPPED, m.at)
            return
        slots = caught_up_slots(m, self._journey_now(), self._input.time_scale,
                                s.prep.send_windows, waited)
        if Segment.HARDSHIP in s.segments:
            slots = with_segment_channels(slots, s.prep.hardship_channels.get(m.kind, []),
                                          s.prep.send_windows)
        # The policy is re-checked by the milestone's own activity, right before it sends.
        await self._deliver(m.key, m.kind, slots,
                            until=m.until, formal=must_prove(m.kind, "policyholder"),
                            recheck=rechecks_policy(m.kind))

    def _milestone_at(self, m: PlannedMilestone) -> datetime:
        return milestone_moment(m, self._journey_now(), self._input.time_scale,
                                self._s.prep.send_windows)

    # --- sending ----------------------------------------------------------------------

    async def _deliver_event(self, key: MilestoneKey, message: MessageKind,
                             channels: list[Channel], *, members: bool = True,
                             formal: bool = False) -> None:
        """A message sent on an event (an explanation, a decision, a resend): now, or, in
        its channels' quiet hours, deferred to when they open (the journey's next event),
        each channel at its own opening."""
        now = self._journey_now()
        slots = event_slots(now, channels, self._s.prep.send_windows)
        if slots == [(now, list(channels))]:
            await self._deliver(key, message, [(now, list(channels))], members=members,
                                formal=formal)
            return
        if slots[0][0] > now:
            self._s.deferred.append(DeferredMessage(at=slots[0][0], key=key, message=message,
                                                    channels=list(channels),
                                                    members=members, formal=formal))
            return
        await self._deliver(key, message, slots, members=members, formal=formal)

    def _usable(self, message: MessageKind) -> set[Channel]:
        """The channels with a template for `message`, as decided when the journey was
        planned (never the templates on disk: a deployment must not change a journey)."""
        usable = self._s.prep.usable
        if message in usable:
            return set(usable[message])
        return {Channel.SMS}  # a plan from before `usable` existed: every message has SMS

    async def _deliver(self, key: MilestoneKey, message: MessageKind,
                       slot_groups: list[tuple[datetime, list[Channel]]],
                       members: bool = True, until: datetime | None = None,
                       formal: bool = False, recheck: bool = False) -> None:
        """Send a message on its channels, fall back per recipient and per role, and
        handle the unreachable. `formal`: the policyholder must be reached provably;
        `recheck`: the policy is re-read first, and what it says may end the journey."""
        s = self._s
        unreached: dict[RecipientScope, set[str] | None] = {"policyholder": None}
        if members and s.prep.recipients > 1:
            unreached["members"] = None
        tried: set[Channel] = set()
        ours: set[str] = set()  # recipients one of whose channels failed on our side
        holder_ok: set[Channel] = set()  # channels that reached the policyholder
        holder_failed: list[Channel] = []
        at = slot_groups[0][0]
        until = until or at + EVENT_MESSAGE_LIFETIME
        if until <= self._journey_now():
            # Late (caught up after a hold, or a worker down for long): still worth a day.
            until = self._journey_now() + EVENT_MESSAGE_LIFETIME
        for at, channels in slot_groups:
            summary = f"until {key} may go out on {', '.join(c.value for c in channels)}"
            if self._settling:
                # Closed: an event message waits out quiet hours, nothing else is served
                # (a payment meanwhile goes to the ledger).
                if at > self._journey_now():
                    await workflow.sleep(self._wall_wait(at), summary=summary)
            else:
                # A later slot (a channel with later quiet hours) waits; signals are served.
                while not await self._sleep_until(_Event(at, "slot", summary)):
                    await self._drain_pending()
                    if s.stage is Stage.CLOSED:
                        return
            stop, results = await self._send_slot(key, message, channels, list(unreached),
                                                  at=at, until=until, recheck=recheck)
            recheck = False  # once, before the first slot
            if stop is not None:
                self._close(stop)  # paid, terminated or reinstated meanwhile: nothing more
                return
            if s.stage is Stage.CLOSED and not self._settling:
                return  # paid while this went out: no fallback, no reminder after it
            tried.update(channels)
            self._merge(unreached, results, ours)
            self._holder(results, holder_ok, holder_failed)
        usable = self._usable(message)
        order = self._fallback_order(key)
        # A role whose channels all failed for the policyholder is filled first: a formal
        # notice that cannot go by e-mail goes on paper.
        for failed in list(holder_failed):
            role = ROLE_OF[failed]
            if any(ROLE_OF[ok] is role for ok in holder_ok):
                continue
            for channel in [c for c in stand_ins(failed, order, tried, usable)
                            if ROLE_OF[c] is role]:
                tried.add(channel)
                results = [await self._send(key, message, channel, "policyholder",
                                            until=until)]
                self._merge(unreached, results, ours)
                self._holder(results, holder_ok, holder_failed)
                if channel in holder_ok:
                    break
        # Then the fallback order for whoever every channel failed.
        for channel in [c for c in order if c not in tried and c in usable]:
            if not any(unreached.values()) and not (formal and not proven(holder_ok)):
                break
            scopes = {scope: ids for scope, ids in unreached.items() if ids}
            if formal and not proven(holder_ok) and proven({channel}):
                scopes.setdefault("policyholder", {s.prep.policyholder_id})
            if not scopes:
                continue
            tried.add(channel)
            results = await asyncio.gather(*(
                self._send(key, message, channel, scope, only=sorted(ids)
                           if scope == "members" else None, until=until)
                for scope, ids in scopes.items()))
            self._merge(unreached, results, ours)
            self._holder(results, holder_ok, holder_failed)
        holder = unreached.get("policyholder")
        if holder and holder & ours:
            # Not every channel failed for good (an outage, a limit, a content rule): the
            # customer is not unreachable; a formal notice goes to operations.
            if formal:
                await self._task("notice_failed", str(key), priority=1)
        elif holder:
            await self._unreachable(key)
        elif formal and not proven(holder_ok):
            # Reached, but on no channel whose delivery can be proven: a person decides.
            await self._task("notice_failed", str(key), priority=1)
        if unreached.get("members"):
            await self._task("contact_repair", f"{key}-members", priority=3)

    @staticmethod
    def _holder(results: list[tuple[RecipientScope, list[SendOutcome]]], ok: set[Channel],
                failed: list[Channel]) -> None:
        for scope, outcomes in results:
            if scope != "policyholder":
                continue
            for out in outcomes:
                if out.sent:
                    ok.add(out.channel)
                elif out.failed and out.channel not in failed:
                    failed.append(out.channel)

    async def _send(self, key: MilestoneKey, message: MessageKind, channel: Channel,
                    scope: RecipientScope, only: list[str] | None = None,
                    at: datetime | None = None, until: datetime | None = None,
                    ) -> tuple[RecipientScope, list[SendOutcome]]:
        """Send to one scope on one channel; `at` is the journey moment the send belongs to
        (its slot), which dates the message even when compressed time runs on meanwhile;
        `until` (journey time) is when retrying stops and the give-up is recorded."""
        at = at or self._journey_now()
        batches = self._requests(key, message, channel, scope, only, at, until)
        outcomes = await asyncio.gather(*(self._send_batch(b, at) for b in batches))
        return scope, list(outcomes)

    def _requests(self, key: MilestoneKey, message: MessageKind, channel: Channel,
                  scope: RecipientScope, only: list[str] | None, at: datetime,
                  until: datetime | None) -> list[SendRequest]:
        """The send requests for one scope on one channel: one, or a group's members in
        batches."""
        s = self._s
        until = until or at + EVENT_MESSAGE_LIFETIME
        plan = s.prep.plan
        trigger = self._input.trigger
        if s.debit_failures:
            trigger = trigger.model_copy(update={"debit_failure": s.debit_failures[-1]})
        elif trigger.debit_failure is not None:
            trigger = trigger.model_copy(
                update={"debit_failure": self._without_text(trigger.debit_failure)})
        milestone = next((m for m in plan.milestones if m.key == key.base), None)
        segments = self._segments_for(key)
        base = SendRequest(
            journey_id=self._journey_id(), policy_number=trigger.policy_number,
            milestone_key=key, message=message, channel=channel, scope=scope, only=only,
            journey_date=at.astimezone(TZ).date(), journey_at=at, trigger=trigger,
            outstanding=self._outstanding(), segments=segments,
            grace_ends_on=plan.grace_ends_on, lapses_on=plan.lapses_on,
            reinstatement_deadline=plan.reinstatement_deadline,
            follow_up_month=milestone.index if milestone else None, quote=self._quote(),
            paid_amount=self._payment.amount if self._payment else None,
            paid_on=self._payment.paid_at.astimezone(TZ).date() if self._payment else None,
            give_up_at=max(self._wall_time(until), workflow.now() + MIN_SEND_RETRYING))
        if scope == "members" and only is None:
            return [base.model_copy(update={"offset": o, "limit": MEMBER_BATCH})
                    for o in range(0, s.prep.recipients - 1, MEMBER_BATCH)]
        return [base]

    async def _send_slot(self, key: MilestoneKey, message: MessageKind, channels: list[Channel],
                         scopes: list[RecipientScope], at: datetime, until: datetime | None,
                         recheck: bool,
                         ) -> tuple[Outcome | None, list[tuple[RecipientScope,
                                                               list[SendOutcome]]]]:
        """A slot's channels for the policyholder in one activity, which first re-checks
        the policy when `recheck` (and may answer that the journey ends: nothing sent);
        then a group's members, in batches of their own."""
        reqs = [r for ch in channels for r in self._requests(key, message, ch,
                                                             "policyholder", None, at, until)]
        try:
            sent: MilestoneSent = await workflow.execute_activity_method(
                JourneyActivities.send_milestone,
                MilestoneSend(sends=reqs, recheck_stage=self._s.stage if recheck else None),
                summary=("re-check the policy, then " if recheck else "")
                        + f"{message} by {', '.join(c.value for c in channels)}", **SEND_CALL)
        except ActivityError as err:
            self._send_failed(reqs[0], err)
            sent = MilestoneSent(outcomes=[
                SendOutcome(channel=r.channel, sent=0, failed=[self._s.prep.policyholder_id])
                for r in reqs])
        if sent.check is not None:
            self._read_ledger(sent.check.outstanding)
        if sent.stop is not None:
            return sent.stop, []
        results: list[tuple[RecipientScope, list[SendOutcome]]] = []
        for req, out in zip(reqs, sent.outcomes, strict=True):
            self._noted(req, out, at)
            results.append(("policyholder", [out]))
        others = [scope for scope in scopes if scope != "policyholder"]
        if others:
            results += await asyncio.gather(*(
                self._send(key, message, ch, scope, at=at, until=until)
                for ch in channels for scope in others))
        return None, results

    async def _send_batch(self, req: SendRequest, at: datetime) -> SendOutcome:
        try:
            out: SendOutcome = await workflow.execute_activity_method(
                JourneyActivities.send_notifications, req,
                summary=f"{req.message} by {req.channel.value} to {req.scope}"
                        + (f" {req.offset + 1}-{req.offset + req.limit}"
                           if req.scope == "members" else ""), **SEND_CALL)
        except ActivityError as err:
            # Only a failure the send could not record ends here (the activity records
            # its give-ups and answers): these recipients count as failed on this
            # channel, the fallback order takes over and a person looks at the batch.
            self._send_failed(req, err)
            everyone = ([self._s.prep.policyholder_id] if req.scope == "policyholder"
                        else list(req.only or []))
            out = SendOutcome(channel=req.channel, sent=0, failed=everyone)
            if req.scope == "members" and req.only is None:
                await self._task("contact_repair", f"{req.milestone_key}-batch{req.offset}", 3)
        self._noted(req, out, at)
        return out

    @staticmethod
    def _send_failed(req: SendRequest, err: ActivityError) -> None:
        workflow.logger.warning("send failed without an answer", extra={
            "milestone": req.milestone_key, "channel": req.channel.value,
            "error": type(err.cause).__name__ if err.cause else "unknown"})

    def _noted(self, req: SendRequest, out: SendOutcome, at: datetime) -> None:
        if out.sent or out.failed:
            self._note(req.milestone_key, req.channel, NotificationStatus.SENT if out.sent
                       else NotificationStatus.FAILED, at,
                       out.first_notification_id, out.sent + len(out.failed))

    @staticmethod
    def _merge(unreached: dict[RecipientScope, set[str] | None],
               results: list[tuple[RecipientScope, list[SendOutcome]]],
               ours: set[str]) -> None:
        """A recipient is unreached while every channel tried so far failed for them;
        `ours` gathers those a channel failed for on our side (`failed_for_good`)."""
        per_scope: dict[RecipientScope, list[set[str]]] = {}
        for scope, outcomes in results:
            failed: set[str] = set()
            for out in outcomes:
                failed |= set(out.failed)
                ours.update(r for r in out.failed if not failed_for_good(out.reasons.get(r)))
            per_scope.setdefault(scope, []).append(failed)
        for scope, failures in per_scope.items():
            failed_everywhere = set.intersection(*failures)
            if unreached[scope] is None:
                unreached[scope] = failed_everywhere
            else:
                unreached[scope] &= failed_everywhere

    async def _unreachable(self, key: MilestoneKey) -> None:
        s = self._s
        if key not in s.undelivered:
            s.undelivered.append(key)
        if Segment.UNREACHABLE not in s.segments:
            s.segments.append(Segment.UNREACHABLE)
        await self._task("contact_repair", str(key), priority=2)
        emergency = key.base.with_suffix(Suffix.EMERGENCY)
        now = self._journey_now()
        opens = allowed_at(now, Channel.SMS, s.prep.send_windows)
        if opens > now:
            # Nobody is texted at night, a third party least of all: at the window's opening.
            s.fallbacks.append(DeferredFallback(
                at=opens, key=emergency, message=MessageKind.EMERGENCY_CONTACT,
                scope="emergency_contact", recipient=s.prep.policyholder_id,
                failed=Channel.SMS, tried=[Channel.SMS]))
        else:
            await self._send(emergency, MessageKind.EMERGENCY_CONTACT, Channel.SMS,
                             "emergency_contact")
        if not s.public_notice:
            s.public_notice = True
            await workflow.execute_activity_method(
                JourneyActivities.set_public_notice,
                args=[self._input.trigger.policy_number, True],
                summary="list the policy (masked) on the public unreachable notice", **DB_CALL)

    def _fallback_order(self, key: MilestoneKey | None = None) -> list[Channel]:
        segment = fallback_segment(self._segments_for(key))
        return self._s.prep.fallbacks.get(segment) or self._s.prep.fallbacks[Segment.STANDARD]

    def _segments_for(self, key: MilestoneKey | None) -> list[Segment]:
        """The journey's segments at the milestone of `key` (`segments_at`)."""
        m = self._planned(key.base) if key is not None else None
        return segments_at(self._s.segments, m.segment if m is not None else None)

    def _planned(self, base: MilestoneKey) -> PlannedMilestone | None:
        return next((m for m in self._s.prep.plan.milestones if m.key == base), None)

    def _note(self, key: MilestoneKey, channel: Channel, status: NotificationStatus,
              at: datetime, notification_id: str | None = None, recipients: int = 1) -> None:
        self._s.notifications.append(NotificationView(
            id=notification_id or f"{self._journey_id()}/{key}/{channel.value}", milestone=key,
            channel=channel, status=status, at=at, recipients=recipients))

    # --- people and tasks ---------------------------------------------------------------

    async def _task(self, kind: str, reference: str, priority: int,
                    rules: list[str] | None = None, nearest_branch: bool = False) -> None:
        await workflow.execute_activity_method(
            JourneyActivities.create_task,
            TaskRequest(journey_id=self._journey_id(),
                        policy_number=self._input.trigger.policy_number, kind=kind,
                        priority=priority, due_at=self._journey_now() + timedelta(days=1),
                        reference=reference, rules=rules or [],
                        nearest_branch=nearest_branch, raised_at=self._journey_now()),
            summary=f"agent task: {kind} ({reference})", **DB_CALL)

    async def _escalate(self, inquiry_id: str) -> None:
        s = self._s
        s.inquiries = [i.model_copy(update={"escalated": True}) if i.inquiry_id == inquiry_id
                       else i for i in s.inquiries]
        await self._task("inquiry_escalation", inquiry_id, priority=1)

    async def _change_stage(self, stage: Stage, summary: str, outcome: Outcome | None = None,
                            policy_status: PolicyStatus | None = None) -> None:
        await workflow.execute_activity_method(
            JourneyActivities.change_stage,
            StageChange(journey_id=self._journey_id(),
                        policy_number=self._input.trigger.policy_number, stage=stage,
                        at=self._journey_now(), outcome=outcome, policy_status=policy_status,
                        trigger=self._input.trigger.kind, started_at=self._s.journey_anchor),
            summary=summary, **DB_CALL)

    def _close(self, outcome: Outcome) -> None:
        """Decide the journey's end now; what follows (the confirmation, the records, the
        tasks) is done by `_settle_close` once the main loop sees the journey closed."""
        s = self._s
        if s.stage is Stage.CLOSED:
            return
        s.stage = Stage.CLOSED
        s.outcome = outcome
        s.closing = True
        self._wake()

    async def _settle_close(self) -> None:
        s = self._s
        if not s.closing:
            return
        self._settling = True
        outcome = s.outcome
        # What waited out quiet hours and still matters (underwriting's decision) goes
        # once the close is on record; a reminder or an explanation is moot now.
        later = sorted((d for d in s.deferred if still_due_after_close(d.message)),
                       key=lambda d: d.at)
        s.deferred = []
        s.fallbacks = []  # a fallback for a reminder is moot once the journey is over
        if outcome is Outcome.PAID and self._payment is not None:
            # What the journey took is confirmed; a premium paid through another route
            # (the counter, a bank) is confirmed by that route, which knows the amount.
            confirmation = MilestoneKey(MessageKind.PAYMENT_CONFIRMATION)
            now = self._journey_now()
            opens = event_slots(now, [Channel.SMS], s.prep.send_windows)[0][0]
            if opens > now:
                later.append(DeferredMessage(at=opens, key=confirmation,
                                             message=MessageKind.PAYMENT_CONFIRMATION,
                                             channels=[Channel.SMS]))
            else:
                await self._deliver(confirmation, MessageKind.PAYMENT_CONFIRMATION,
                                    [(now, [Channel.SMS])], members=False)
        await self._change_stage(Stage.CLOSED, f"close the journey: {outcome.value}",
                                 outcome=outcome,
                                 policy_status=PolicyStatus.IN_FORCE if outcome in (
                                     Outcome.PAID, Outcome.REINSTATED) else None)
        if s.public_notice:
            s.public_notice = False
            await workflow.execute_activity_method(
                JourneyActivities.set_public_notice,
                args=[self._input.trigger.policy_number, False],
                summary="remove the policy from the public unreachable notice", **DB_CALL)
        for d in later:
            await self._deliver(d.key, d.message,
                                event_slots(self._journey_now(), d.channels,
                                            s.prep.send_windows),
                                members=d.members, formal=d.formal)
        s.closing = False

    # --- signals, update and query --------------------------------------------------------
    # One handler for every signal and one for the update, over raw payloads: whatever a
    # client sends (two payloads, none, a wrong shape, an unknown name) is read here,
    # rejected with a logged reason that names fields and rules but never values, and the
    # journey carries on. The update's validator rejects before anything enters history.

    @workflow.signal(dynamic=True)
    async def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        try:
            signal = read_payload(name, self._decode(args))
        except BadSignal as err:
            workflow.logger.warning("signal ignored", extra={
                "signal": name if name.isidentifier() and len(name) <= 40 else "?",
                "reason": str(err)})
            return
        if isinstance(signal, Payment):
            try:
                self._validate_payment(signal)
                await self._wait_ready()
                async with self._pay_lock:
                    await self._apply_payment(signal)
            except ApplicationError as err:
                if err.type == "JourneyClosed":
                    await self._store_after_close(signal)
                else:
                    workflow.logger.warning("payment signal ignored",
                                            extra={"reason": err.type or "refused"})
            self._wake()
            return
        if (isinstance(signal, DeliveryFailed) and not signal.permanent
                and signal.error_code.replace("_", "-") not in REDIAL_CODES):
            return  # a provider's transient word: its own retries settle it
        self._queue(signal)

    @workflow.update(dynamic=True)
    async def on_update(self, name: str, args: Sequence[RawValue]) -> PaymentAnswer:
        payment = read_payload(name, self._decode(args), UPDATES)
        await self._wait_ready()
        async with self._pay_lock:
            answer = await self._apply_payment(payment)
        self._wake()
        return answer

    @on_update.validator
    def _check_update(self, name: str, args: Sequence[RawValue]) -> None:
        try:
            payment = read_payload(name, self._decode(args), UPDATES)
        except BadSignal as err:
            raise ApplicationError(f"{name if name.isidentifier() else 'update'}: {err}",
                                   type="InvalidPayment") from None
        self._validate_payment(payment)

    @staticmethod
    def _decode(args: Sequence[RawValue]) -> list[object]:
        converter = workflow.payload_converter()
        values = []
        for raw in args:
            try:
                values.append(converter.from_payload(raw.payload))
            except Exception:
                raise BadSignal("a payload is not JSON") from None
        return values

    @workflow.query(name=contract.STATUS_QUERY)
    def status(self) -> JourneyStatus:
        if self._s is None:
            raise ApplicationError("the journey is still being planned; ask again shortly")
        return self._status()

    def _queue(self, item: object) -> None:
        self._pending.append(item)
        self._wake()

    async def _drain_pending(self) -> None:
        s = self._s
        while s.after_lapse and s.stage is not Stage.CLOSED:
            # A payment after the lapse does not restore cover alone: explain reinstatement.
            txn = s.after_lapse.pop(0)
            await self._deliver_event(
                MilestoneKey(MessageKind.PAYMENT_AFTER_LAPSE, suffix=Suffix.TXN, ref=txn),
                MessageKind.PAYMENT_AFTER_LAPSE, [Channel.SMS], members=False)
        while self._pending and s.stage is not Stage.CLOSED:
            item = self._pending.pop(0)
            if s.stage is Stage.HELD and not isinstance(item, (DataVerified, DebitFailedSignal,
                                                               InquiryReceived,
                                                               InquiryHandled)):
                # Nothing is sent while held; a contact fix or a bounce waits for the
                # verification, which plans again from the data as it is then.
                continue
            if isinstance(item, DebitFailedSignal):
                item = self._without_text(item)
                # Signal-with-start repeats the failure that is already the trigger's.
                if all(f.failed_at != item.failed_at for f in s.debit_failures):
                    s.debit_failures.append(item)
            elif isinstance(item, ContactUpdated):
                await self._contact_updated()
            elif isinstance(item, InquiryReceived):
                await self._open_inquiry(item)
            elif isinstance(item, InquiryHandled):
                await self._inquiry_handled(item)
            elif isinstance(item, ReinstatementApplied):
                await self._reinstatement_applied(item)
            elif isinstance(item, ReinstatementDecided):
                await self._reinstatement_decided(item)
            elif isinstance(item, DeliveryFailed):
                await self._delivery_failed(item)
            elif isinstance(item, DataVerified):
                await self._data_verified(item)

    async def _close_inquiry(self, inquiry_id: str, kind: str, note: str) -> None:
        """The inquiry's record says when it was answered, on the journey's clock (the one
        its response deadline is on); free text that came with the answer goes to
        PostgreSQL, never into the state."""
        s = self._s
        s.inquiries = [i for i in s.inquiries if i.inquiry_id != inquiry_id]
        await workflow.execute_activity_method(
            JourneyActivities.close_inquiry,
            InquiryClosed(journey_id=self._journey_id(),
                          policy_number=self._input.trigger.policy_number,
                          inquiry_id=inquiry_id, handled_at=self._journey_now(), kind=kind,
                          note=note),
            summary=f"inquiry {inquiry_id} answered", **DB_CALL)

    async def _inquiry_handled(self, handled: InquiryHandled) -> None:
        if all(i.inquiry_id != handled.inquiry_id for i in self._s.inquiries):
            workflow.logger.info("inquiry_handled ignored: no such open inquiry")
            return
        await self._close_inquiry(handled.inquiry_id, "inquiry_handled", handled.note)

    # --- what the signals do ----------------------------------------------------------------

    def _validate_payment(self, payment: Payment) -> None:
        if (problem := payment_problem(payment)) is not None:
            raise ApplicationError(problem, type="InvalidPayment")
        if self._s is not None and self._s.stage is Stage.CLOSED:
            raise ApplicationError("the journey is closed", type="JourneyClosed")

    async def _store(self, payment: Payment, note: str = "") -> PaymentStored:
        """The ledger's store of a payment, by a local activity: it runs inside the
        workflow task that took the update, so the payer's answer waits for one round trip
        to the server, not three."""
        return await workflow.execute_local_activity_method(
            JourneyActivities.record_payment,
            PaymentRecord(policy_number=self._input.trigger.policy_number, payment=payment,
                          journey_id=self._journey_id()),
            summary=f"record payment {payment.transaction_id}{note}", **DB_CALL)

    async def _store_after_close(self, payment: Payment) -> None:
        """A payment signalled while the journey finishes its close: nothing it does to the
        journey any more, but the ledger takes it (as with no journey), never dropped."""
        async with self._pay_lock:
            stored = await self._store(payment, " (journey closed)")
        workflow.logger.info("payment signal after the close stored in the ledger",
                             extra={"outcome": stored.outcome})

    async def _apply_payment(self, payment: Payment) -> PaymentAnswer:
        """Store the payment, decide what it does to the journey, answer. Whatever the
        decision sends (a confirmation, an explanation) goes out after the answer."""
        s = self._s
        if payment.transaction_id in s.transactions:
            return PaymentAnswer(accepted=True, outcome=PaymentOutcome.DUPLICATE,
                                 outstanding=self._outstanding())
        if s.stage is Stage.CLOSED:
            return PaymentAnswer(accepted=False, outcome=PaymentOutcome.JOURNEY_CLOSED,
                                 outstanding=self._outstanding())
        stored = await self._store(payment)
        self._read_ledger(stored.owed)
        if stored.outcome == "conflict":
            raise ApplicationError("the transaction id is already recorded for another "
                                   "policy", type="TransactionConflict", non_retryable=True)
        s.transactions.append(payment.transaction_id)
        if stored.outcome == "duplicate":
            return PaymentAnswer(accepted=True, outcome=PaymentOutcome.DUPLICATE,
                                 outstanding=self._outstanding())
        # What is paid is what the ledger stored, never what the caller claims.
        payment = payment.model_copy(update={"amount": stored.amount})
        self._payment = payment
        s.amount_paid += stored.amount
        # What it does follows from what the ledger says is owed now, never from a tally
        # of the journey's own payments: the ledger also knows what reached it otherwise.
        outcome = payment_outcome(self._input.trigger.kind, s.stage, self._outstanding())
        if outcome is PaymentOutcome.PAID_IN_FULL:
            self._close(Outcome.PAID)
        elif outcome is PaymentOutcome.AFTER_LAPSE:
            s.after_lapse.append(payment.transaction_id)
        return PaymentAnswer(accepted=True, outcome=outcome, outstanding=self._outstanding())

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
        await self._close_inquiry(decided.application_id, "reinstatement_decided",
                                  decided.reason)
        if decided.approved:
            await self._deliver_event(MilestoneKey(MessageKind.REINSTATEMENT_APPROVED),
                                      MessageKind.REINSTATEMENT_APPROVED, [Channel.SMS],
                                      members=False)
            self._close(Outcome.REINSTATED)
            return
        s.stage = Stage.LAPSED
        s.application_id = None
        await self._deliver_event(
            MilestoneKey(MessageKind.REINSTATEMENT_REFUSED, suffix=Suffix.APPLICATION,
                         ref=decided.application_id),
            MessageKind.REINSTATEMENT_REFUSED, [Channel.SMS], members=False)
        await self._change_stage(Stage.LAPSED, "reinstatement refused: follow-ups resume")

    async def _contact_updated(self) -> None:
        s = self._s
        await workflow.execute_activity_method(
            JourneyActivities.contact_updated, self._input.trigger.policy_number,
            summary="contact corrected: the addresses may be used again", **DB_CALL)
        missed, s.undelivered = s.undelivered, []
        if Segment.UNREACHABLE in s.segments:
            s.segments.remove(Segment.UNREACHABLE)
        s.resends += 1
        plan = s.prep.plan.milestones
        lapsed = s.stage in (Stage.LAPSED, Stage.REINSTATING)
        for key in missed:
            m = self._planned(key.base)
            if m is not None and not worth_resending(m.kind, plan.index(m), s.next_index - 1,
                                                     lapsed):
                self._note(key.base.with_suffix(Suffix.RESEND, s.resends), m.channels[0],
                           NotificationStatus.SKIPPED, self._journey_now())
                continue
            message = m.kind if m else key.kind
            channels = m.channels if m else [Channel.SMS]
            await self._deliver_event(key.base.with_suffix(Suffix.RESEND, s.resends),
                                      message, channels,
                                      formal=must_prove(m.kind if m else None, "policyholder"))
        if s.public_notice and not s.undelivered:
            s.public_notice = False
            await workflow.execute_activity_method(
                JourneyActivities.set_public_notice,
                args=[self._input.trigger.policy_number, False],
                summary="contact repaired: remove the public notice entry", **DB_CALL)

    def _message_of(self, key: MilestoneKey) -> MessageKind | None:
        """The message kind a milestone key names: a planned milestone's kind, or an
        event message's own kind; None for a key this journey never sent."""
        m = self._planned(key.base)
        if m is not None:
            return m.kind
        return key.kind if key.month is None and key.kind in self._s.prep.usable else None

    async def _delivery_failed(self, failed: DeliveryFailed) -> None:
        try:
            nid = NotificationId.parse(failed.notification_id)
        except IdError as err:
            workflow.logger.warning("delivery failure ignored", extra={"reason": str(err)})
            return
        if str(nid.journey) != self._journey_id():
            workflow.logger.warning("delivery failure ignored: another journey's notification")
            return
        key = nid.key
        message = self._message_of(key)
        if message is None:
            workflow.logger.warning("delivery failure ignored: no such message in the journey")
            return
        if key.suffix is Suffix.EMERGENCY:
            return  # the emergency contact is the last resort: the repair task is open
        s = self._s
        if nid.recipient_id == s.prep.policyholder_id:
            scope: RecipientScope = "policyholder"
        elif s.prep.recipients > 1:
            scope = "members"  # the send checks that the member belongs to the policy
        else:
            workflow.logger.warning("delivery failure ignored: not a recipient of the policy")
            return
        if (failed.channel is Channel.VOICE and scope == "policyholder"
                and failed.error_code.replace("_", "-") in REDIAL_CODES
                and await self._schedule_redial(key)):
            return
        await self._fall_back(key, message, scope, nid.recipient_id, failed.channel,
                              failed.error_code)

    async def _fall_back(self, key: MilestoneKey, message: MessageKind, scope: RecipientScope,
                         recipient: str, channel_failed: Channel, reason: str) -> None:
        """A message did not reach `recipient` on `channel_failed` after all: the same role
        first, then the fallback order; the unreachable handling when nothing works."""
        m = self._planned(key.base)
        kind = m.kind if m is not None else None
        if needs_home_visit(channel_failed, scope, kind, self._segments_for(key)):
            await self._task("home_visit", key.base, priority=2, nearest_branch=True)
        await self._fall_back_on(DeferredFallback(
            at=self._journey_now(), key=key.base if key.suffix is not Suffix.RESEND else key,
            message=message, scope=scope, recipient=recipient, failed=channel_failed,
            tried=[channel_failed], ours=not failed_for_good(reason),
            formal=must_prove(kind, scope)))

    async def _fall_back_on(self, f: DeferredFallback) -> None:
        """The fallback's channels in turn from where it stands. A channel in its quiet
        hours (a bounce reported at night) defers the rest to its opening, the journey's
        next event, while everything else goes on."""
        scope, recipient, base = f.scope, f.recipient, f.key
        unreached: dict[RecipientScope, set[str] | None] = {scope: {recipient}}
        ours = {recipient} if f.ours else set()
        tried = set(f.tried)
        for channel in stand_ins(f.failed, self._fallback_order(base), tried,
                                 self._usable(f.message)):
            now = self._journey_now()
            opens = allowed_at(now, channel, self._s.prep.send_windows)
            if opens > now:
                self._s.fallbacks.append(f.model_copy(update={
                    "at": opens, "tried": sorted(tried), "ours": bool(ours)}))
                return
            tried.add(channel)
            results = [await self._send(base, f.message, channel, scope,
                                        only=[recipient] if scope == "members" else None)]
            self._merge(unreached, results, ours)
            if not unreached[scope] and (not f.formal or proven({channel})):
                return
        if unreached[scope] and scope == "policyholder" and unreached[scope] & ours:
            if f.formal:
                await self._task("notice_failed", str(base), priority=1)
        elif unreached[scope] and scope == "policyholder":
            await self._unreachable(base)
        elif f.formal:
            await self._task("notice_failed", str(base), priority=1)

    # --- calls dialled again ----------------------------------------------------------------

    async def _schedule_redial(self, key: MilestoneKey) -> bool:
        """A busy or unanswered call is dialled again after the gap, inside the call window
        and the milestone's time, while the number's daily cap allows; False when not."""
        s = self._s
        attempt = (int(key.ref) + 1) if key.suffix is Suffix.REDIAL and key.ref.isdigit() else 1
        m = self._planned(key.base)
        at = redial_at(self._journey_now(), attempt, s.prep.max_dial_attempts,
                       timedelta(minutes=s.prep.redial_gap_minutes), s.prep.voice_window,
                       m.until if m is not None else None)
        if at is None:
            return False  # no attempt left, or the call window is over: fall back
        local = at.astimezone(TZ)
        allowed: bool = await workflow.execute_activity_method(
            JourneyActivities.may_dial, DialRequest(
                policy_number=self._input.trigger.policy_number, day=local.date(),
                max_per_day=s.prep.max_dial_attempts),
            summary="count today's calls to the policyholder's number", **DB_CALL)
        if not allowed:
            return False
        s.redials.append((at, key.base, attempt))
        return True

    async def _redial_now(self, event: _Event) -> None:
        s = self._s
        at, base, attempt = min(s.redials)
        s.redials.remove((at, base, attempt))
        if s.stage is Stage.CLOSED:
            return
        key = base.with_suffix(Suffix.REDIAL, attempt)
        message = self._message_of(key)
        if message is None:
            return
        _, [out] = await self._send(key, message, Channel.VOICE, "policyholder", at=at)
        if not out.sent:
            holder = s.prep.policyholder_id
            await self._fall_back(key, message, "policyholder", holder, Channel.VOICE,
                                  out.reasons.get(holder, ""))

    # --- time and visibility -------------------------------------------------------------

    def _journey_now(self) -> datetime:
        s = self._s
        elapsed = workflow.now() - s.wall_anchor
        return s.journey_anchor + elapsed * self._input.time_scale

    async def _sleep_until(self, event: _Event) -> bool:
        """Wait until the journey clock reaches the event; False when a signal came first.

        A signal does not cancel the timer: the next wait for the same moment goes on with
        it, so a bounce or a callback costs no new timer, and a timer that fires while the
        signal's task is with the worker is never cancelled after the fact (the
        time-skipping test server strands a run that does, temporalio/sdk-java#3088). A
        timer left behind when the next moment changes fires later into a task that does
        nothing."""
        self._woken = False
        if self._pending:
            return False
        wait = (event.at - self._journey_now()).total_seconds() / self._input.time_scale
        if wait <= 0:
            self._timers.pop(event.at, None)
            return True
        timer = self._timers.get(event.at)
        if timer is None:
            self._timers = {at: t for at, t in self._timers.items() if not t.done()}
            timer = self._timers[event.at] = asyncio.create_task(
                workflow.sleep(timedelta(seconds=wait), summary=event.summary))
        woken = asyncio.create_task(workflow.wait_condition(lambda: self._woken))
        await workflow.wait([timer, woken], return_when=asyncio.FIRST_COMPLETED)
        if woken.done():  # a signal first, as a condition is checked before a timer fires
            return False
        woken.cancel()
        self._timers.pop(event.at, None)  # two waits may share a moment
        return True

    def _due_now(self) -> bool:
        """Whether the journey's next step is due already (a lapse and its notice at one
        moment, the end after the last follow-up): then the search attributes are upserted
        once after it, not once per step."""
        s = self._s
        if s.stage is Stage.CLOSED or self._pending:
            return False
        event = self._next_event()
        return event.kind != "held" and event.at <= self._journey_now()

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
        try:
            return str(JourneyId.of(info.workflow_id, info.first_execution_run_id))
        except IdError:  # started by hand under another id: the records still need one
            return f"{info.workflow_id}@{info.first_execution_run_id}"

    def _wall_wait(self, journey_at: datetime) -> timedelta:
        """How long, on the wall clock, until the journey clock reaches `journey_at`."""
        return self._wall_time(journey_at) - workflow.now()

    def _wall_time(self, journey_at: datetime) -> datetime:
        """The wall-clock moment the journey clock reaches `journey_at`."""
        ahead = (journey_at - self._journey_now()) / self._input.time_scale
        return workflow.now() + max(ahead, timedelta(0))

    def _outstanding(self) -> Decimal:
        """What is owed: the ledger's latest reading."""
        return self._s.owed

    def _read_ledger(self, owed: Decimal) -> None:
        """Keep the ledger's reading of what is owed. A rescission is not about a premium
        (its trigger owes nothing): what the ledger says does not change what it shows."""
        if self._input.trigger.kind is not TriggerKind.RESCISSION:
            self._s.owed = owed

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
        # after lapse counts): what the ledger last said is owed, from the trigger's due
        # date, and each premium of the policy's schedule that fell due since.
        trigger = self._input.trigger
        owed = self._outstanding()
        dues = [Due(due_date=trigger.due_date, amount=owed)] if owed > 0 else []
        return journey_quote(open_dues=dues, schedule=s.prep.schedule, paid=Decimal("0"),
                             rate=s.prep.interest_rate, on=today,
                             insurer_fault=trigger.insurer_fault,
                             deadline=plan.reinstatement_deadline)

    def _status(self) -> JourneyStatus:
        s = self._s
        plan = s.prep.plan
        now = self._journey_now()
        return JourneyStatus(
            policy_number=self._input.trigger.policy_number, stage=s.stage, outcome=s.outcome,
            trigger=self._input.trigger.kind, due_date=plan.due_date,
            grace_ends_at=plan.grace_ends_on, lapses_at=plan.lapses_at,
            amount_due=self._input.trigger.amount_due, amount_paid=s.amount_paid,
            outstanding=self._outstanding(), next_milestone=self._next_milestone(),
            notifications=list(s.notifications),
            open_inquiries=list(s.inquiries), reinstatement=self._quote(),
            segments=list(s.segments), journey_now=now, debit_failures=list(s.debit_failures),
            held_rules=list(s.prep.anomalies) if s.stage is Stage.HELD else [])

    def _publish(self) -> None:
        """Upsert the search attributes that changed, and describe the journey for the UI."""
        s = self._s
        plan = s.prep.plan
        nxt = self._next_milestone()
        wanted = sa.journey_search_attributes(
            plan.policy_number, s.stage.value, plan.trigger.value, s.prep.product_kind.value,
            [x.value for x in s.segments], plan.lapses_at, nxt.at if nxt else None,
            self._outstanding(), s.outcome.value if s.outcome else None)
        updates: list[SearchAttributeUpdate] = []
        for key, value in wanted:
            name = key.name
            if self._upserted.get(name) == value:
                continue
            self._upserted[name] = value
            updates.append(key.value_unset() if value is None or value == []
                           else key.value_set(value))
        if updates:
            workflow.upsert_search_attributes(updates)
        sent = sum(1 for n in s.notifications if n.status is NotificationStatus.SENT)
        failed = sum(1 for n in s.notifications if n.status is NotificationStatus.FAILED)
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
