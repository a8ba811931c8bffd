"""Issue 10 point 7: random sequences of every signal and the update of CONTRACT.md, well
formed or not, duplicated, out of order and late, with provider failures and time passing,
never freeze a journey, always end it where the sequence says, and never send a message
twice or to someone else.

Real parts: the time-skipping server, the embedded PostgreSQL, the worker with the real
Twilio/SendGrid/WeChat clients talking to the sandbox providers (whose delivery callbacks
signal the journey), and the codec data converter. One server, database, sandbox and worker
serve every example (a new server after a journey froze: it stops that server's clock);
each example gets its own copy of a sample policy and customer.

An example fails with every violation it found: a workflow task failed (the history, or the
worker's report when a termination overtook it), an end the sequence does not justify (the
`Oracle`), what was paid not what the valid payments make, a rejected update in history, a
message reaching the same recipient twice for one milestone and channel, a provider given
the same message twice, a message of this journey for anyone but its holder and their
emergency contact.

`test_known_sequence` replays one sequence per rule of the issue on every run. Profiles of
the random test (LAPSE_PROPERTY_PROFILE): `ci` (default) runs the same 15 examples every
time, without shrinking (an example takes seconds); `thorough` runs 200 random ones with
Hypothesis' example database and shrinks what fails (Hypothesis bounds the shrinking).
    LAPSE_PROPERTY_PROFILE=thorough ./run tests tests/workflows/test_journey_properties.py -x
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import sandbox as sb
from domain.calendar import BusinessCalendar
from domain.models import Channel
from domain.planner import plan_journey
from domain.policy_file import parse_policy_file
from domain.triggers import detect_trigger, segments_for
from infra import store
from infra.embedded import BIN_DIR
from infra.temporal import ensure_search_attributes
from tests.channel_helpers import journeys_with_sandbox
from tests.codec_helpers import DATA_CONVERTER
from tests.hostile_helpers import (
    FROZEN,
    MALFORMED,
    SIGNALS,
    UPDATE,
    Person,
    accepted_twice,
    accepted_updates,
    closed_as,
    freeze_watch,
    fresh_policy,
    malformed_args,
    outbox_of,
    sent_twice,
    strangers,
    task_failures,
    terminate,
    valid_payload,
)
from tests.journey_helpers import SAMPLE, at, load_sample, start_journey
from workflows.policy_lapse import PolicyLapseWorkflow

_COMMON = {"deadline": None, "suppress_health_check": [
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]}
PROFILES = {
    # Fixed examples (derandomized, no example database): CI sees the same 15 every run.
    # No shrinking: an example takes seconds, and a failure is reported with every
    # violation it found.
    "ci": settings(max_examples=15, derandomize=True, database=None,
                   phases=[Phase.explicit, Phase.generate], **_COMMON),
    "thorough": settings(max_examples=200, **_COMMON),
}
PROFILE = PROFILES[os.environ.get("LAPSE_PROPERTY_PROFILE", "ci")]

OTHER_POLICY = "P2026000003"  # a sample policy with no journey: its holder is a stranger
OTHER_HOLDER = "C0003"
OTHER_TXN = "T-OTHER-POLICY"  # a payment already stored for OTHER_POLICY
MARGIN = timedelta(hours=2)  # how far the test's clock and the journey's may disagree
ENDING = timedelta(days=5)  # an open inquiry may keep a finished journey a few days more


@dataclass(frozen=True)
class Template:
    policy: str
    start: str
    kind: str  # long_term, short_term, rescission


LONG = Template("P2026000001", "2026-11-21 08:00", "long_term")
SHORT = Template("P2026000004", "2026-11-19 08:00", "short_term")
RESCISSION = Template("P2026000005", "2026-11-26 18:00", "rescission")


# --- the steps a sequence is made of -------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    hours: int


@dataclass(frozen=True)
class Pay:
    via: str  # "signal" or "update"
    share: str  # "full", "third", "over"
    txn: str  # "new", "again" (the last one used), "foreign" (another policy's)
    flaw: str | None = None  # "zero", "negative", "usd", "three_decimals"


@dataclass(frozen=True)
class Send:
    """A well-formed signal other than a payment; `ref` picks the id it names."""

    name: str
    ref: int = 0
    approved: bool = True
    kind: str = "question"
    outcome: str = "proceed"


@dataclass(frozen=True)
class Malformed:
    name: str
    kind: str


@dataclass(frozen=True)
class Bounce:
    """`delivery_failed` naming one of this journey's records (`pick`), a record id with
    another customer in it, another journey's record, or nonsense."""

    target: str
    pick: int
    channel: str
    permanent: bool


@dataclass(frozen=True)
class Fault:
    fault: str
    api: str
    times: int


@dataclass(frozen=True)
class Repeat:
    """The previous signal or update once more, as a retrying client sends it."""


APIS = {"sms": "mobile", "voice": "mobile", "email": "email", "wechat": "openid"}
FAULTS = [("unavailable", "sms"), ("unavailable", "email"), ("rate_limited", "sms"),
          ("server_error", "wechat"), ("invalid_number", "sms"), ("invalid_number", "voice"),
          ("invalid_number", "wechat"), ("unsubscribed", "sms"), ("bounce", "email"),
          ("undelivered", "sms"), ("busy", "voice"), ("no_answer", "voice"),
          ("timeout", "sms")]

waits = st.one_of(st.integers(1, 48), st.integers(3, 45).map(lambda d: d * 24)).map(Wait)
pays = st.builds(Pay, via=st.sampled_from(["signal", "update"]),
                 share=st.sampled_from(["full", "third", "over"]),
                 txn=st.sampled_from(["new", "new", "again", "foreign"]),
                 flaw=st.sampled_from([None, None, None, "zero", "negative", "usd",
                                       "three_decimals"]))
sends = st.builds(Send, name=st.sampled_from([n for n in SIGNALS if n != "payment_received"
                                              and n != "delivery_failed"]),
                  ref=st.integers(0, 1), approved=st.booleans(),
                  kind=st.sampled_from(["question", "hardship", "complaint", "reinstatement"]),
                  outcome=st.sampled_from(["proceed", "cancel"]))
# Reinstatement comes in pairs often enough to reach a decision.
reinstatements = st.tuples(st.integers(0, 1), st.booleans()).map(
    lambda t: (Send("reinstatement_applied", t[0]),
               Send("reinstatement_decided", t[0], approved=t[1])))
malformed = st.builds(Malformed, name=st.sampled_from([*SIGNALS, UPDATE]),
                      kind=st.sampled_from(MALFORMED))
bounces = st.builds(Bounce, target=st.sampled_from(["own", "own", "stranger", "other_journey",
                                                    "nonsense"]),
                    pick=st.integers(0, 40), channel=st.sampled_from([c.value for c in Channel]),
                    permanent=st.booleans())
faults = st.builds(lambda f, times: Fault(f[0], f[1], times), st.sampled_from(FAULTS),
                   st.integers(1, 3))
step = st.one_of(waits, waits, pays, sends, reinstatements, malformed, bounces, faults,
                 st.just(Repeat()))


def _flatten(steps: list) -> list:
    out = []
    for s in steps:
        out.extend(s if isinstance(s, tuple) else [s])
    return out


cases = st.tuples(st.sampled_from([LONG, LONG, LONG, SHORT, RESCISSION]),
                  st.lists(step, min_size=1, max_size=12).map(_flatten))


# --- what the sequence justifies -----------------------------------------------------------


@dataclass(frozen=True)
class State:
    stage: str  # at_risk, lapsed, reinstating, closed
    outcome: str | None = None
    paid: Decimal = Decimal("0")
    txns: frozenset[str] = frozenset()
    application: str | None = None


@dataclass
class Oracle:
    """Every state the journey may be in after the inputs so far (a set: where the test's
    clock cannot tell whether the journey had passed a moment yet, both are allowed)."""

    kind: str
    due: Decimal
    lapses_at: datetime | None
    ends_at: datetime  # the last milestone (the rescission notice goes out at once)
    reinstatable: bool
    states: set[State] = field(default_factory=lambda: {State("at_risk")})

    def _passed(self, moment: datetime | None, now: datetime,
                after: timedelta = MARGIN) -> set[bool]:
        if moment is None or now < moment - MARGIN:
            return {False}
        return {True} if now > moment + after else {False, True}

    def _age(self, s: State, now: datetime) -> set[State]:
        out = {s}
        if s.stage == "at_risk" and self.kind != "rescission":
            out = {replace(s, stage="lapsed") if p else s for p in self._passed(self.lapses_at,
                                                                               now)}
        final = {"long_term": "follow_up_ended", "short_term": "not_renewed",
                 "rescission": "rescinded"}[self.kind]
        ending = "at_risk" if self.kind == "rescission" else "lapsed"
        aged = set()
        for x in out:
            if x.stage == ending:
                aged |= {replace(x, stage="closed", outcome=final) if p else x
                         for p in self._passed(self.ends_at, now, ENDING)}
            else:
                aged.add(x)
        return aged

    def apply(self, now: datetime, effect) -> None:
        self.states = {y for s in self.states for x in self._age(s, now) for y in effect(x)}
        self.states = {y for s in self.states for y in self._age(s, now)}

    def pay(self, now: datetime, txn: str, amount: Decimal, counts: bool) -> None:
        def effect(s: State) -> set[State]:
            if not counts or s.stage == "closed" or txn in s.txns:
                return {s}
            s = replace(s, paid=s.paid + amount, txns=s.txns | {txn})
            if s.stage == "at_risk" and self.kind != "rescission" and s.paid >= self.due:
                s = replace(s, stage="closed", outcome="paid")
            return {s}
        self.apply(now, effect)

    def applied(self, now: datetime, application: str) -> None:
        def effect(s: State) -> set[State]:
            if s.stage != "lapsed" or not self.reinstatable:
                return {s}
            return {replace(s, stage="reinstating", application=application)}
        self.apply(now, effect)

    def decided(self, now: datetime, application: str, approved: bool) -> None:
        def effect(s: State) -> set[State]:
            if s.stage != "reinstating" or s.application != application:
                return {s}
            if approved:
                return {replace(s, stage="closed", outcome="reinstated")}
            return {replace(s, stage="lapsed", application=None)}
        self.apply(now, effect)

    def justified(self) -> set[tuple[str, str | None]]:
        return {(s.stage, s.outcome) for s in self.states}


# --- running a sequence ---------------------------------------------------------------------

_numbers = itertools.count(1)
_other_journeys: list[str] = []  # record ids of earlier examples' journeys


class Rig:
    """What the examples share: the database, the freeze watch, and a time-skipping server
    with the sandbox and a worker. A journey that froze stops that server's clock for good
    (hostile_helpers.FreezeWatch), so after one the next example gets a new server."""

    def __init__(self, pool, watch, products: list[str]):
        self.pool, self.watch, self.products = pool, watch, products
        self._open = contextlib.AsyncExitStack()

    async def open(self) -> None:
        # As conftest's time_skipping_env does, in a form that can be opened again.
        self.env = await WorkflowEnvironment.start_time_skipping(
            data_converter=DATA_CONVERTER,
            test_server_existing_path=str(BIN_DIR / "temporal-test-server"))
        self._open.push_async_callback(self.env.shutdown)
        await ensure_search_attributes(self.env.client, self.env.client.namespace)
        self.journeys, self.stack = await self._open.enter_async_context(
            journeys_with_sandbox(self.env, self.pool))

    async def close(self) -> None:
        await self._open.aclose()

    async def renew(self) -> None:
        await self.close()
        await self.open()

    def __repr__(self) -> str:  # what Hypothesis prints with a failing example
        return "Rig(time-skipping server, PostgreSQL, sandbox, worker)"


@pytest.fixture
async def rig(pool):
    await load_sample(pool)
    await pool.execute("INSERT INTO payments (transaction_id, policy_number, amount, currency, "
                       "paid_at) VALUES ($1, $2, 2400.00, 'CNY', now())", OTHER_TXN,
                       OTHER_POLICY)
    products = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines()
                if '"record": "product"' in line]
    with freeze_watch() as watch:
        shared = Rig(pool, watch, products)
        await shared.open()
        try:
            yield shared
        finally:
            await shared.close()


@dataclass
class Run:
    """One example in progress: its journey, its oracle, what it sent last."""

    rig: Rig
    template: Template
    number: str
    person: Person
    handle: object
    oracle: Oracle
    start: datetime
    t0: datetime
    last_call: tuple | None = None
    last_txn: str | None = None
    txns: itertools.count = field(default_factory=lambda: itertools.count(1))
    answered_updates: int = 0
    frozen: bool = False

    async def now(self) -> datetime:
        return self.start + (await self.rig.env.get_current_time() - self.t0)

    async def guard(self, awaitable):
        result = await self.rig.watch.guard(self.handle, awaitable)
        if result is FROZEN:
            self.frozen = True
        return result

    async def journey_id(self) -> str:
        found = await self.rig.pool.fetchval(
            "SELECT journey_id FROM journeys WHERE policy_number = $1", self.number)
        return found or f"{self.handle.id}@00000000"

    async def call(self, name: str, args: list, effect=None) -> None:
        """Send a signal or the update, then tell the oracle what a well-formed one means."""
        self.last_call = (name, args, effect)
        now = await self.now()
        if name == UPDATE:
            try:
                answer = await self.guard(self.handle.execute_update(name, args=args))
                if answer is not FROZEN:
                    self.answered_updates += 1
            except WorkflowUpdateFailedError:
                pass  # rejected (or failed: the history shows which)
            except RPCError:
                pass  # the journey has closed
        else:
            try:
                await self.handle.signal(name, args=args)
            except RPCError:
                pass  # the journey has closed: a late signal
        if effect is not None:
            effect(now)

    async def do(self, s) -> None:
        o = self.oracle
        if isinstance(s, Wait):
            await self.guard(self.rig.env.sleep(timedelta(hours=s.hours)))
            await self.rig.stack.sandbox.settle()  # delivery callbacks reach the journey
        elif isinstance(s, Pay):
            if s.txn == "foreign":
                txn = OTHER_TXN
            elif s.txn == "again" and self.last_txn:
                txn = self.last_txn
            else:
                txn = f"T{self.number}-{next(self.txns)}"
            self.last_txn = txn
            amount = {"full": o.due, "third": (o.due / 3).quantize(Decimal("0.01")),
                      "over": o.due + 50}[s.share]
            payload = valid_payload(UPDATE, await self.now(), ref=txn, amount=f"{amount:.2f}")
            if s.flaw == "zero":
                payload["amount"] = "0.00"
            elif s.flaw == "negative":
                payload["amount"] = f"{-amount:.2f}"
            elif s.flaw == "usd":
                payload["currency"] = "USD"
            elif s.flaw == "three_decimals":
                payload["amount"] = f"{amount:.2f}1"
            counts = s.flaw is None and txn != OTHER_TXN
            await self.call("payment_received" if s.via == "signal" else UPDATE, [payload],
                            lambda now: o.pay(now, txn, amount, counts))
        elif isinstance(s, Send):
            ref = {"inquiry_received": f"Q-{s.ref}", "inquiry_handled": f"Q-{s.ref}",
                   "reinstatement_applied": f"R-{s.ref}",
                   "reinstatement_decided": f"R-{s.ref}"}.get(s.name, "X")
            payload = valid_payload(s.name, await self.now(), ref=ref, approved=s.approved)
            if s.name == "inquiry_received":
                payload["kind"] = s.kind
            if s.name == "data_verified":
                payload["outcome"] = s.outcome
            effect = None
            if s.name == "reinstatement_applied":
                def effect(now):
                    return o.applied(now, ref)
            elif s.name == "reinstatement_decided":
                def effect(now):
                    return o.decided(now, ref, s.approved)
            await self.call(s.name, [payload], effect)
        elif isinstance(s, Malformed):
            good = valid_payload(s.name, await self.now(), ref=f"T{self.number}-bad")
            await self.call(s.name, malformed_args(s.kind, good))
        elif isinstance(s, Bounce):
            await self.call("delivery_failed", [{
                "notification_id": await self._bounce_target(s), "channel": s.channel,
                "error_code": "30003", "permanent": s.permanent}])
        elif isinstance(s, Fault):
            address = getattr(self.person, APIS[s.api])
            self.rig.stack.sandbox.faults.add([sb.Fault(
                fault=s.fault, api=s.api, match=address, times=s.times, retry_after=1,
                delay=6)])  # a timeout outlasts the senders' 5-second client timeout
        elif isinstance(s, Repeat) and self.last_call:
            await self.call(*self.last_call)

    async def _bounce_target(self, s: Bounce) -> str:
        journey = await self.journey_id()
        if s.target == "own":
            ids = [r["notification_id"] for r in await self.rig.pool.fetch(
                "SELECT notification_id FROM notifications WHERE policy_number = $1 "
                "ORDER BY created_at, notification_id", self.number)]
            if ids:
                return ids[s.pick % len(ids)]
            return f"{journey}/first_reminder/sms/{self.person.customer_id}"
        if s.target == "stranger":  # this journey's milestone, another policy's customer
            return f"{journey}/first_reminder/{s.channel}/{OTHER_HOLDER}"
        if s.target == "other_journey":
            if _other_journeys:
                return _other_journeys[s.pick % len(_other_journeys)]
            return f"lapse-{OTHER_POLICY}@0a1b2c3d/first_reminder/sms/{OTHER_HOLDER}"
        return ["nonsense", "a/b/c/d", "/" * 5, journey][s.pick % 4]


async def _plan(pool, number: str, start: datetime):
    async with pool.acquire() as conn:
        bundle = await store.load_policy(conn, number, with_members=False)
        calendar = BusinessCalendar(await store.load_calendar_years(conn))
    trigger = detect_trigger(bundle.policy, bundle.product, start.date())
    segments = segments_for(bundle.policy, bundle.product, bundle.policyholder, start.date())
    plan = plan_journey(trigger, bundle.product, segments, calendar, starts_at=start)
    return trigger, bundle.product, plan


async def run_case(rig: Rig, template: Template, steps: list) -> tuple[list[str], bool]:
    """Drive one journey through `steps`, then to its end: every violation found, and
    whether the journey froze."""
    n = next(_numbers)
    lines, number, person = fresh_policy(template.policy, n)
    async with rig.pool.acquire() as conn:
        await store.save_policy_file(conn, parse_policy_file([*rig.products, *lines]))
    start = at(template.start)
    trigger, product, plan = await _plan(rig.pool, number, start)
    oracle = Oracle(kind=template.kind, due=trigger.amount_due, lapses_at=plan.lapses_at,
                    ends_at=max(plan.milestones[-1].at, start),
                    reinstatable=product.rules.reinstatable)
    outbox_from = len(rig.stack.sandbox.outbox.entries)
    t0 = await rig.env.get_current_time()
    handle = await start_journey(rig.journeys, rig.pool, number, start)
    run = Run(rig, template, number, person, handle, oracle, start, t0)
    for s in steps:
        await run.do(s)
        if run.frozen:
            break
    # Then let the journey run to its end (or stand where it waits, e.g. underwriting).
    if not run.frozen:
        left = oracle.ends_at + ENDING + MARGIN - await run.now()
        if left > timedelta(0):
            await run.guard(rig.env.sleep(left))
        await rig.stack.sandbox.settle()
        if not run.frozen:
            await run.guard(rig.env.sleep(timedelta(days=1)))  # fallbacks of late callbacks
    oracle.apply(await run.now(), lambda s: {s})
    return await _verdict(run, outbox_from), run.frozen


async def _verdict(run: Run, outbox_from: int) -> list[str]:
    rig, handle, pool = run.rig, run.handle, run.rig.pool
    await rig.stack.sandbox.settle()
    violations = []
    failures = await task_failures(handle) + rig.watch.reasons.get(handle.id, [])
    if failures:
        violations.append(f"the journey froze: workflow tasks failed with {sorted(set(failures))}")
    closed = await closed_as(handle)
    observed, paid = (closed or "running", None), None
    if closed == "completed":
        result = await handle.result()
        observed, paid = (result.stage.value, result.outcome and result.outcome.value), \
            result.amount_paid
    elif closed is None and not run.frozen:
        status = await run.guard(handle.query(PolicyLapseWorkflow.status))
        if status is not FROZEN:
            observed, paid = (status.stage.value, status.outcome and status.outcome.value), \
                status.amount_paid
    await terminate(handle, "property example done")
    justified = run.oracle.justified()
    if run.frozen:
        pass  # it never got to an end: the failures above say why
    elif observed not in justified:
        violations.append(f"ended as {observed}; the sequence justifies "
                          f"{sorted(justified, key=str)}")
    elif paid is not None:
        amounts = {s.paid for s in run.oracle.states if (s.stage, s.outcome) == observed}
        if paid not in amounts:
            violations.append(f"amount_paid {paid}; the valid payments make {sorted(amounts)}")
    accepted = await accepted_updates(handle)
    if accepted != run.answered_updates and not run.frozen:  # frozen: one may be in flight
        violations.append(f"{accepted} updates accepted into history, {run.answered_updates} "
                          f"answered: a rejected update entered history")
    twice = await sent_twice(pool, run.number)
    if twice:
        violations.append(f"sent twice: {twice}")
    entries = await outbox_of(pool, run.number, rig.stack.sandbox.outbox.entries[outbox_from:])
    doubled = accepted_twice(entries)
    if doubled:
        violations.append(f"a provider got the same message twice: {doubled}")
    strange = [e.api for e in entries if e.to not in run.person.addresses]
    others = await strangers(pool, run.number, run.person)
    if others or strange:
        violations.append(f"messages of this journey for other customers: {others} "
                          f"({len(strange)} outbox entries to addresses not theirs)")
    _other_journeys.extend(r["notification_id"] for r in await pool.fetch(
        "SELECT notification_id FROM notifications WHERE policy_number = $1 LIMIT 3",
        run.number))
    return violations


DAY = 24
# Sequences tried on every run, one per rule the issue names, each its own test.
KNOWN = {
    # Point 5: the mobile never takes an SMS and the e-mail bounces, through the follow-ups.
    "follow-up-bounces": (LONG, [Fault("undelivered", "sms", 50), Fault("bounce", "email", 50),
                                 Wait(100 * DAY), Pay("update", "full", "new")]),
    # Point 6: two payloads in one signal.
    "two-payloads": (LONG, [Malformed("payment_received", "two_payloads"),
                            Pay("signal", "full", "new")]),
    # Point 8: another policy's transaction id pays nothing here.
    "foreign-transaction": (LONG, [Wait(3 * DAY), Pay("signal", "full", "foreign")]),
    # Point 9: a failure report naming another customer reaches nobody else.
    "stranger-in-a-failure-report": (LONG, [Wait(3 * DAY), Bounce("stranger", 0, "sms", True),
                                            Wait(DAY)]),
    # Applied after the lapse and approved: reinstated.
    "reinstated": (LONG, [Wait(62 * DAY), Send("reinstatement_applied", 1),
                          Send("reinstatement_decided", 1, approved=True)]),
    # Three thirds of 298.00 leave a cent: not renewed; then a late payment.
    "a-cent-short": (SHORT, [Pay("update", "third", "new"), Repeat(),
                             Pay("signal", "third", "new"), Pay("update", "third", "new"),
                             Wait(40 * DAY), Pay("signal", "over", "new")]),
}


@pytest.mark.parametrize("case", KNOWN.values(), ids=KNOWN.keys())
async def test_known_sequence(rig, case):
    template, steps = case
    violations, _ = await run_case(rig, template, steps)
    assert not violations, "\n".join(violations)


@given(case=cases)
@PROFILE
async def test_no_sequence_of_inputs_freezes_fakes_or_repeats(rig, case):
    template, steps = case
    violations, frozen = await run_case(rig, template, steps)
    if frozen:
        await rig.renew()
    assert not violations, "\n".join(violations)
