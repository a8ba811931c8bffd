"""The demo's customers: which sample policies it runs, the role each plays (what the
customer, or operations, does at which moment of the journey), and playing a role against
its journey."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from commands.console import DEMO_AGENT
from contract import CONTACT_UPDATED, DATA_VERIFIED
from domain.journey import (
    ContactUpdated,
    DataVerified,
    JourneyStatus,
    Payment,
    ReinstatementApplied,
    ReinstatementDecided,
    Stage,
    VerificationOutcome,
)
from infra.demo_queries import correct_birth_date
from infra.journeys import Journeys, PaymentSystem

POLL_SECONDS = 0.25
# A status query may time out while the server is busy: ask again for this long.
PATIENCE = timedelta(seconds=30)

# A step's moment: from the journey's status and what the player saw of it, and the
# journey time now (the demo's own reading of the journey clock).
Check = Callable[["Player", JourneyStatus, datetime], bool]


def sent(milestone: str) -> Check:
    return lambda p, s, now: any(n.milestone.startswith(milestone) and n.status == "sent"
                                 for n in s.notifications)


def due(milestone: str, after: timedelta = timedelta(hours=2)) -> Check:
    """A while after the milestone's planned time, by the journey clock: a customer who
    answers the reminder, even while its send is still under way (compressed time leaves
    a slow send only seconds before the grace ends)."""
    return lambda p, s, now: milestone in p.planned and now >= p.planned[milestone] + after


def stage(value: str) -> Check:
    # By value: `held` is a stage a journey of a newer worker may be in.
    return lambda p, s, now: s.stage.value == value


def paid_back(p: Player, s: JourneyStatus, now: datetime) -> bool:
    """The reinstatement payment is on the journey's books (the update answered)."""
    return s.amount_paid >= s.amount_due


@dataclass(frozen=True)
class Step:
    when: Check
    action: str  # pay, pay_reinstatement, apply, approve, refuse, contact_updated, verify
    label: str  # what the table shows once done


@dataclass(frozen=True)
class Role:
    name: str  # the scenario, short enough for the live table
    steps: tuple[Step, ...] = ()


PAY_IN_GRACE = Role("pays in grace", (Step(sent("first_reminder"), "pay", "paid"),))
PAY_AFTER_SECOND = Role("pays after 2nd", (Step(due("second_reminder"), "pay", "paid"),))
# The customer pays what the lapse notice quotes (back premium and interest), is told that
# a payment alone does not restore cover, applies, and underwriting approves.
REINSTATED = Role("reinstated", (
    Step(sent("lapse_notice"), "pay_reinstatement", "paid back"),
    Step(paid_back, "apply", "applied"),
    Step(stage(Stage.REINSTATING.value), "approve", "approved")))
REFUSED = Role("refused", (
    Step(sent("lapse_notice"), "apply", "applied"),
    Step(stage(Stage.REINSTATING.value), "refuse", "refused")))
NEVER_PAYS = Role("never pays")
RESCINDED = Role("rescinded")
# The provider refuses its only number; no e-mail, WeChat or address: contact repair, the
# emergency contact, the public notice.
UNREACHABLE = Role("unreachable")
ELDERLY = Role("elderly", PAY_AFTER_SECOND.steps)
GROUP = Role("group")
# Its birth date contradicts the ID number: the data check before the first message holds
# the journey; operations correct the record and let it proceed.
DATA_HELD = Role("data held", (Step(stage("held"), "verify", "verified"),))

# The sample policies in the order `--policies N` takes them: the first few finish early
# and still show the main outcomes, which keeps `--policies 3` short for CI.
CAST: tuple[tuple[str, Role], ...] = (
    ("P2026000001", PAY_IN_GRACE),
    ("P2026000005", RESCINDED),
    ("P2026000008", REINSTATED),
    ("P2026000002", PAY_AFTER_SECOND),
    ("P2026000006", ELDERLY),
    ("P2026000007", GROUP),
    ("P2026000009", UNREACHABLE),
    ("P2026000016", REFUSED),
    ("P2026000004", PAY_IN_GRACE),
    ("P2026000010", DATA_HELD),
    ("P2026000011", REINSTATED),
    ("P2026000003", PAY_IN_GRACE),
    ("P2026000014", PAY_AFTER_SECOND),
    ("P2026000015", PAY_IN_GRACE),
    ("P2026000017", REINSTATED),
    ("P2026000018", NEVER_PAYS),
    ("P2026000019", PAY_AFTER_SECOND),
    # Not at risk today: the scan skips them (paid, not yet due).
    ("P2026000012", NEVER_PAYS),
    ("P2026000013", NEVER_PAYS),
    ("P2026000020", NEVER_PAYS),
)


@dataclass
class Player:
    policy_number: str
    role: Role
    status: JourneyStatus | None = None
    done: list[str] = field(default_factory=list)
    application_id: str | None = None
    error: str | None = None
    planned: dict[str, datetime] = field(default_factory=dict)  # milestone -> when, as seen


@dataclass(frozen=True)
class JourneyClock:
    """A journey's time as its workflow reckons it: from its journey start, at the scale,
    since the wall-clock moment it started."""

    start: datetime
    started: datetime
    scale: float

    def now(self) -> datetime:
        return self.start + (datetime.now(UTC) - self.started) * self.scale


async def play(player: Player, journeys: Journeys, payments: PaymentSystem,
               pool: asyncpg.Pool, start: datetime, scale: float) -> None:
    """Follow one journey by its status query and act as its customer at the right stage."""
    steps = list(player.role.steps)
    failing_since: float | None = None
    try:
        described = await journeys.handle(player.policy_number).describe()
        clock = JourneyClock(start, described.start_time, scale)
        while True:
            try:
                player.status = await journeys.status(player.policy_number)
                failing_since = None
            except WorkflowQueryFailedError:
                # Still being planned: ask again (the journey's only failing query; its
                # text is sealed like every failure message, so it reads "Encoded failure").
                pass
            except RPCError:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > PATIENCE.total_seconds():
                    raise
            s = player.status
            if s is not None:
                if s.stage is Stage.CLOSED:
                    return
                if s.next_milestone:
                    player.planned.setdefault(s.next_milestone.name, s.next_milestone.at)
                now = max(clock.now(), s.journey_now)
                if steps and steps[0].when(player, s, now):
                    step = steps.pop(0)
                    await _act(player, step, s, now, journeys, payments, pool)
                    player.done.append(step.label)
                    continue
            await asyncio.sleep(POLL_SECONDS)
    except Exception as err:
        player.error = type(err).__name__


async def _act(player: Player, step: Step, s: JourneyStatus, at: datetime,
               journeys: Journeys, payments: PaymentSystem, pool: asyncpg.Pool) -> None:
    number = player.policy_number
    if step.action in ("pay", "pay_reinstatement"):
        # A reinstatement pays today's quote: every premium unpaid with its interest (the
        # outstanding premium when the journey has no quote, e.g. outside the window).
        quote = s.reinstatement if step.action == "pay_reinstatement" else None
        await payments.payment_received(number, Payment(
            transaction_id=f"T-{number}-{uuid.uuid4().hex[:6]}",
            amount=quote.total if quote else s.outstanding, currency="CNY", paid_at=at))
    elif step.action == "apply":
        player.application_id = f"R-{number}"
        await journeys.reinstatement_applied(number, ReinstatementApplied(
            application_id=player.application_id, applied_at=at))
    elif step.action in ("approve", "refuse"):
        await journeys.reinstatement_decided(number, ReinstatementDecided(
            application_id=player.application_id, approved=step.action == "approve",
            decided_at=at, reason="" if step.action == "approve" else "health declaration"))
    elif step.action == "contact_updated":
        await journeys.signal(number, CONTACT_UPDATED, ContactUpdated(updated_at=at))
    elif step.action == "verify":
        await correct_birth_date(pool, number)
        await journeys.signal(number, DATA_VERIFIED, DataVerified(
            verified_by=DEMO_AGENT, verified_at=at, outcome=VerificationOutcome.PROCEED))
