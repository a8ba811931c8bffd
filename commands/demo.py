"""`lapse demo`: the whole product on one laptop: embedded servers, a worker, the sample
policies' journeys in compressed time, and the customers' side played along."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from rich.console import Console
from rich.live import Live
from rich.table import Table
from temporalio.client import WorkflowQueryFailedError

from activities.scan import scan_policies
from activities.senders import build_senders, close_senders
from commands.codec_server import codec_lines, embedded_codec_server
from commands.common import UserError, command
from commands.providers import local_providers
from domain.journey import (
    ContactUpdated,
    JourneyStatus,
    Payment,
    ReinstatementApplied,
    ReinstatementDecided,
    Stage,
)
from domain.plan import TZ
from domain.policy_file import parse_policy_file
from infra import store
from infra.db import connect_pool
from infra.embedded import Stack, read_stack_file
from infra.journeys import Journeys, PaymentSystem
from infra.temporal import connect_client
from worker import build_worker

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample-policies.jsonl"
# About eight months of journey (grace, lapse, six monthly follow-ups) in this long.
TARGET_SECONDS = 120
JOURNEY_SPAN = timedelta(days=245)
POLL_SECONDS = 0.25

Check = Callable[[JourneyStatus], bool]


def sent(milestone: str) -> Check:
    return lambda s: any(n.milestone.startswith(milestone) and n.status == "sent"
                         for n in s.notifications)


def stage(value: Stage) -> Check:
    return lambda s: s.stage is value


@dataclass(frozen=True)
class Step:
    when: Check
    action: str  # pay, apply, approve, refuse, contact_updated
    label: str


@dataclass(frozen=True)
class Role:
    name: str
    steps: tuple[Step, ...] = ()


PAY_IN_GRACE = Role("pays in grace", (Step(sent("first_reminder"), "pay", "paid in grace"),))
PAY_AFTER_SECOND = Role("pays after 2nd reminder",
                        (Step(sent("second_reminder"), "pay", "paid after 2nd reminder"),))
REINSTATED = Role("lapses, reinstated", (
    Step(sent("lapse_notice"), "apply", "applied for reinstatement"),
    Step(stage(Stage.REINSTATING), "approve", "underwriting approved")))
REFUSED = Role("lapses, refused", (
    Step(sent("lapse_notice"), "apply", "applied for reinstatement"),
    Step(stage(Stage.REINSTATING), "refuse", "underwriting refused")))
NEVER_PAYS = Role("never pays")
RESCINDED = Role("rescinded")
UNREACHABLE = Role("unreachable")
ELDERLY = Role("elderly, pays after 2nd reminder", PAY_AFTER_SECOND.steps)
GROUP = Role("group, not renewed")

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
    ("P2026000010", NEVER_PAYS),
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

    @property
    def finished(self) -> bool:
        return self.error is not None or (self.status is not None
                                          and self.status.stage is Stage.CLOSED)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="everything embedded: sample journeys in compressed time",
                       description="Start the Temporal dev server (Web UI), PostgreSQL, the "
                       "sandbox providers (outbox) and a worker; run the sample policies' "
                       "journeys with time compressed (LAPSE_TIME_SCALE, or ~8 months in ~2 "
                       "minutes) while playing the customers; Ctrl-C stops everything.")
    p.add_argument("--policies", type=int, default=len(CAST), metavar="N",
                   help=f"how many sample policies (default all {len(CAST)})")
    p.add_argument("--exit-when-done", action="store_true",
                   help="stop when every journey has closed, instead of waiting for Ctrl-C")
    p.set_defaults(func=command(run_demo))


def demo_time_scale(configured: float) -> float:
    """LAPSE_TIME_SCALE when set, else eight months of journey in about two minutes."""
    if configured != 1:
        return configured
    return round(JOURNEY_SPAN.total_seconds() / TARGET_SECONDS)


async def run_demo(args: argparse.Namespace, settings) -> int:
    if args.policies < 1:
        raise UserError("--policies must be at least 1")
    data_dir = settings.data_dir / "demo"
    if read_stack_file(data_dir) is not None:
        raise UserError(f"a demo is already running on {data_dir}: stop it first")
    shutil.rmtree(data_dir, ignore_errors=True)  # every demo starts from a clean slate
    scale = demo_time_scale(settings.time_scale)
    settings = settings.model_copy(update={"data_dir": data_dir, "time_scale": scale})
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    console = Console()
    try:
        async with (
            embedded_codec_server(settings) as codec,
            Stack(settings, ui=True, postgres_cleanup="delete",
                  codec_endpoint=codec and codec.endpoint) as stack,
        ):
            if codec is not None and stack.ui_url:
                codec.server.allow_origin(stack.ui_url)
            client = await connect_client(settings, stack.temporal_address)
            pool = await connect_pool(stack.database_url, min_size=2, max_size=20)
            try:
                return await _demo(args, settings, stack, client, pool, console, codec)
            finally:
                await pool.close()
    except asyncio.CancelledError:
        console.print("\nstopped: the worker, Temporal and PostgreSQL are shut down.")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        shutil.rmtree(data_dir, ignore_errors=True)


async def _demo(args, settings, stack: Stack, client, pool: asyncpg.Pool,
                console: Console, codec) -> int:
    queue = f"lapse-demo-{uuid.uuid4().hex[:6]}"
    async with pool.acquire() as conn:
        await store.save_policy_file(
            conn, parse_policy_file(SAMPLE.read_text(encoding="utf-8").splitlines()))
        await store.ensure_calendar_seeded(conn)
    console.print(f"[bold]lapse demo[/]: time x{settings.time_scale:,.0f} "
                  f"(a journey month in {30 * 86400 / settings.time_scale:.0f} s)")
    console.print(f"  Temporal Web UI  {stack.ui_url or stack.temporal_address}"
                  + (f"/namespaces/{stack.namespace}/workflows" if stack.ui_url else ""))
    for label, value in codec_lines(codec, settings) if codec else []:
        console.print(f"  {label:<16} {value}", highlight=False)
    async with _senders(settings, pool, client) as (senders, outbox_url):
        if outbox_url:
            console.print(f"  Outbox           {outbox_url}/outbox")
        console.print(f"  Other terminals  LAPSE_DATA_DIR={settings.data_dir} lapse status "
                      f"P2026000001 | lapse list\n")
        worker = build_worker(client, pool, queue, senders=senders,
                              time_scale=settings.time_scale,
                              graceful_shutdown_timeout=timedelta(seconds=2))
        async with worker:
            cast = CAST[:args.policies]
            journeys = Journeys(client, queue)
            now = datetime.now(TZ)
            summary = await scan_policies(pool, journeys, now.date(),
                                          time_scale=settings.time_scale, journey_start=now,
                                          policy_numbers=[n for n, _ in cast])
            started = await _running(journeys, [n for n, _ in cast])
            players = [Player(n, role) for n, role in cast if n in started]
            payments = PaymentSystem(client, pool, queue, time_scale=settings.time_scale)
            with Live(_table(players), console=console, refresh_per_second=4,
                      transient=not console.is_terminal) as live:
                async def refresh() -> None:
                    while True:
                        live.update(_table(players))
                        await asyncio.sleep(0.25)

                ticker = asyncio.create_task(refresh())
                try:
                    await asyncio.gather(*(_play(p, journeys, payments) for p in players))
                finally:
                    ticker.cancel()
                live.update(_table(players))
            if not console.is_terminal:  # the live view was not drawn: show its last state
                console.print(_table(players))
            console.print(await _summary(players, summary, pool))
            if not args.exit_when_done:
                console.print("All journeys closed. The Web UI and outbox stay up: "
                              "press Ctrl-C to stop everything.")
                await asyncio.Event().wait()
    return 1 if any(p.error for p in players) else 0


async def _running(journeys: Journeys, numbers: list[str]) -> set[str]:
    flags = await asyncio.gather(*(journeys.is_running(n) for n in numbers))
    return {n for n, running in zip(numbers, flags, strict=True) if running}


@contextlib.asynccontextmanager
async def _senders(settings, pool: asyncpg.Pool, client) -> AsyncIterator[tuple[dict, str]]:
    """The sandbox providers with their outbox, and senders that talk to them. Journey
    time is compressed, so the wall-clock call window and dial limit stay off."""
    async with local_providers(pool, client) as url:
        senders = build_senders(settings, url, pool, clock=None)
        try:
            yield senders, url
        finally:
            await close_senders(senders)


async def _play(player: Player, journeys: Journeys, payments: PaymentSystem) -> None:
    """Follow one journey by its status query and act as its customer at the right stage."""
    steps = list(player.role.steps)
    try:
        while True:
            try:
                player.status = await journeys.status(player.policy_number)
            except WorkflowQueryFailedError:
                # Still being planned: ask again (the journey's only failing query; its
                # text is sealed like every failure message, so it reads "Encoded failure").
                pass
            s = player.status
            if s is not None:
                if s.stage is Stage.CLOSED:
                    return
                if steps and steps[0].when(s):
                    step = steps.pop(0)
                    await _act(player, step, s, journeys, payments)
                    player.done.append(step.label)
                    continue
            await asyncio.sleep(POLL_SECONDS)
    except Exception as err:
        player.error = type(err).__name__


async def _act(player: Player, step: Step, s: JourneyStatus, journeys: Journeys,
               payments: PaymentSystem) -> None:
    at = s.journey_now
    number = player.policy_number
    if step.action == "pay":
        await payments.payment_received(number, Payment(
            transaction_id=f"T-{number}-{uuid.uuid4().hex[:6]}", amount=s.outstanding,
            currency="CNY", paid_at=at))
    elif step.action == "apply":
        player.application_id = f"R-{number}"
        await journeys.reinstatement_applied(number, ReinstatementApplied(
            application_id=player.application_id, applied_at=at))
    elif step.action in ("approve", "refuse"):
        await journeys.reinstatement_decided(number, ReinstatementDecided(
            application_id=player.application_id, approved=step.action == "approve",
            decided_at=at, reason="" if step.action == "approve" else "health declaration"))
    elif step.action == "contact_updated":
        await journeys.signal(number, "contact_updated", ContactUpdated(updated_at=at))


def _table(players: list[Player]) -> Table:
    table = Table(title="journeys", expand=False)
    for col in ("policy", "customer", "stage", "journey day", "messages", "next",
                "customer did"):
        table.add_column(col)
    for p in players:
        s = p.status
        if s is None:
            table.add_row(p.policy_number, p.role.name, p.error or "starting", "", "", "", "")
            continue
        stage_text = s.stage.value + (f" ({s.outcome.value})" if s.outcome else "")
        sent_n = sum(1 for n in s.notifications if n.status == "sent")
        failed_n = sum(1 for n in s.notifications if n.status == "failed")
        nxt = s.next_milestone
        table.add_row(
            p.policy_number, p.role.name,
            f"[red]{p.error}[/]" if p.error else stage_text,
            f"{s.journey_now.astimezone(TZ):%Y-%m-%d}",
            f"{sent_n} sent" + (f", {failed_n} failed" if failed_n else ""),
            f"{nxt.name} {nxt.at.astimezone(TZ):%m-%d}" if nxt else "-",
            "; ".join(p.done) or "-")
    return table


async def _summary(players: list[Player], scan, pool: asyncpg.Pool) -> Table:
    rows = await pool.fetch(
        "SELECT channel, status, count(*) AS n FROM notifications "
        "WHERE policy_number = ANY($1::text[]) GROUP BY channel, status ORDER BY channel",
        [p.policy_number for p in players])
    table = Table(title="demo summary", show_lines=False)
    table.add_column("")
    table.add_column("")
    outcomes: dict[str, int] = {}
    for p in players:
        key = p.error or (p.status.outcome.value if p.status and p.status.outcome else "open")
        outcomes[key] = outcomes.get(key, 0) + 1
    table.add_row("journeys", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    table.add_row("scan skipped", ", ".join(f"{k} {v}" for k, v in scan.skipped.items()) or "-")
    by_channel: dict[str, list[str]] = {}
    for r in rows:
        by_channel.setdefault(r["channel"], []).append(f"{r['status']} {r['n']}")
    for channel, parts in by_channel.items():
        table.add_row(f"messages {channel}", ", ".join(parts))
    paid = sum((p.status.amount_paid for p in players if p.status), Decimal("0"))
    table.add_row("premium collected", f"¥{paid:,.2f}")
    return table

