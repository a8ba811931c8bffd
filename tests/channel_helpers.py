"""Shared set-up for the channel tests: the sandbox and callback endpoint on a free local
port, the real senders pointed at it, send requests built from the sample policies, and
journeys run through all of it."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg
from pydantic import BaseModel
from temporalio.testing import ActivityEnvironment

import sandbox as sb
from activities.channels import Sender
from activities.journey import JourneyActivities
from activities.senders import build_senders, close_senders
from domain.calendar import BusinessCalendar
from domain.journey import SendRequest
from domain.models import Channel
from domain.plan import TZ
from domain.planner import plan_journey
from domain.triggers import detect_trigger, segments_for
from infra import store
from infra.journeys import JourneyNotRunning, Journeys
from infra.settings import Settings
from tests.journey_helpers import eventually  # noqa: F401 (its importers' name)
from web import build_app, serve
from web.callbacks import SENDGRID_EVENTS_PATH
from worker import build_worker

TEN_AM = datetime(2026, 11, 23, 10, 0, tzinfo=TZ)
# A customer nobody can reach: the sandbox refuses the number, the openid is unknown, the
# e-mail bounces after it was accepted, and there is no postal address.
LOST = [
    '{"record": "customer", "customer_id": "C0900", "name": "孙悟", "gender": "M", '
    '"birth_date": "1980-01-01", "mobile": "+8613900000000", "email": "lost@example.com", '
    '"wechat_openid": "oSandboxLost01", "emergency_contact": {"name": "孙红", '
    '"phone": "+8613900000900", "relation": "姐姐"}}',
    '{"record": "policy", "policy_number": "P2026000900", "product_code": "LT-WL01", '
    '"policyholder_id": "C0900", "effective_date": "2020-01-01", "premium": "1800.00", '
    '"due_date": "2026-11-20", "payment_method": {"kind": "manual"}, '
    '"dues": [{"due_date": "2026-11-20", "amount": "1800.00"}]}',
]


def attempt_env(attempt: int = 1, *, at: datetime | None = None,
                first: datetime | None = None) -> ActivityEnvironment:
    """An environment for one attempt of an activity, scheduled `at` (now by default),
    the first attempt `first` (`at` by default), as Temporal tells a worker. (The default
    environment says 1970 with a schedule-to-close of one second: a send would give up at
    once.)"""
    env = ActivityEnvironment()
    at = at or datetime.now(UTC)
    env.info = dataclasses.replace(env.info, attempt=attempt, started_time=at,
                                   current_attempt_scheduled_time=at,
                                   scheduled_time=first or at, schedule_to_close_timeout=None,
                                   start_to_close_timeout=timedelta(minutes=2))
    return env


def fixed_clock(at: datetime = TEN_AM) -> Callable[[], datetime]:
    return lambda: at


@dataclass
class FakeJourneys:
    """Records the signals the callbacks and tasks would send through the journey client
    (infra.journeys.Journeys), where a test has no Temporal server: a stand-in for it."""

    sent: list[tuple[str, str, BaseModel]] = field(default_factory=list)
    sent_to: list[tuple[str, str, BaseModel]] = field(default_factory=list)  # the outbox's
    running: bool = True

    async def signal(self, policy_number: str, name: str, payload: BaseModel) -> None:
        self.sent.append((policy_number, name, payload))
        if not self.running:
            raise JourneyNotRunning(policy_number)

    async def signal_workflow(self, workflow_id: str, name: str, payload: BaseModel) -> bool:
        self.sent_to.append((workflow_id, name, payload))
        return self.running


@dataclass
class Stack:
    sandbox: sb.Sandbox
    url: str
    senders: dict[Channel, Sender]
    pool: asyncpg.Pool

    def activities(self, senders: dict[Channel, Sender] | None = None) -> JourneyActivities:
        return JourneyActivities(self.pool, senders or self.senders)


@asynccontextmanager
async def sandbox_stack(pool: asyncpg.Pool, journeys=None, *, faults: list[sb.Fault] = (),
                        clock: Callable[[], datetime] | None = None, client_timeout: float = 5.0,
                        settings: Settings | None = None) -> AsyncIterator[Stack]:
    """Sandbox, callbacks and public notice on one free port; senders built for them."""
    box = sb.Sandbox(faults=[*sb.DEFAULT_FAULTS, *faults])
    app = build_app(pool, journeys or FakeJourneys(), twilio_auth_token=sb.TWILIO_AUTH_TOKEN,
                    sendgrid_public_key=box.public_key, sandbox=box)
    async with serve(app) as url:
        box.event_webhook_url = url + SENDGRID_EVENTS_PATH
        senders = build_senders(settings or Settings(), url, pool,
                                clock=clock or fixed_clock(), timeout=client_timeout)
        try:
            yield Stack(box, url, senders, pool)
        finally:
            await box.settle()
            await close_senders(senders)


@asynccontextmanager
async def sandbox_alone() -> AsyncIterator[sb.Sandbox]:
    """The sandbox providers on their own on a free port (its `url`), no callback endpoint."""
    box = sb.Sandbox()
    async with serve(box.app()) as url:
        box.url = url
        try:
            yield box
        finally:
            box.resume_callbacks()
            await box.settle()


async def send_request(pool: asyncpg.Pool, policy_number: str, message: str,
                       channel: Channel, on: date, *, journey_id: str | None = None,
                       key: str | None = None, scope: str = "policyholder") -> SendRequest:
    """The request the workflow would make for `message` on `channel`, planned on `on`."""
    async with pool.acquire() as conn:
        bundle = await store.load_policy(conn, policy_number, with_members=False)
        calendar = await store.load_calendar_years(conn)
    trigger = detect_trigger(bundle.policy, bundle.product, on)
    assert trigger is not None, f"{policy_number} is not at risk on {on}"
    segments = segments_for(bundle.policy, bundle.product, bundle.policyholder, on)
    plan = plan_journey(trigger, bundle.product, segments, BusinessCalendar(calendar),
                        starts_at=datetime.combine(on, TEN_AM.timetz()))
    return SendRequest(
        journey_id=journey_id or f"lapse-{policy_number}@{uuid.uuid4().hex[:8]}",
        policy_number=policy_number, milestone_key=key or message, message=message,
        channel=channel, scope=scope, journey_date=plan.lapses_on or on, trigger=trigger,
        outstanding=trigger.amount_due, segments=sorted(segments), grace_ends_on=plan.grace_ends_on,
        lapses_on=plan.lapses_on, reinstatement_deadline=plan.reinstatement_deadline)


async def record(pool: asyncpg.Pool, notification_id: str) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM notifications WHERE notification_id = $1",
                               notification_id)


async def events(pool: asyncpg.Pool, notification_id: str) -> list[str]:
    rows = await pool.fetch("SELECT status FROM notification_events WHERE notification_id = $1 "
                            "ORDER BY event_id", notification_id)
    return [r["status"] for r in rows]


@asynccontextmanager
async def journeys_with_sandbox(env, pool, faults=()):
    """A worker with the real senders against the sandbox, whose callbacks signal journeys."""
    async with sandbox_stack(pool, Journeys(env.client), faults=list(faults)) as stack:
        queue = f"test-{uuid.uuid4().hex[:8]}"
        async with build_worker(env.client, pool, queue, senders=stack.senders):
            yield Journeys(env.client, queue), stack
