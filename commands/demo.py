"""`lapse demo`: the whole product on one laptop: embedded servers, a worker, the sample
policies' journeys in compressed time, and the customers' side played along."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from activities.scan import scan_policies
from activities.senders import build_senders, close_senders
from commands.codec_server import codec_lines, embedded_codec_server
from commands.common import UserError, command
from commands.console import DEMO_AGENT, DEMO_PASSWORD, local_console
from commands.providers import local_providers
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
from domain.plan import TZ
from domain.policy_file import parse_policy_file
from domain.provider_codes import explain
from infra import logging as log_lines
from infra import store
from infra.db import connect_pool
from infra.embedded import Stack, read_stack_file
from infra.journeys import Journeys, PaymentSystem
from infra.temporal import connect_client
from worker import build_worker

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample-policies.jsonl"
# About eight months of journey (grace, lapse, six monthly follow-ups) in this long.
TARGET_SECONDS = 120
JOURNEY_SPAN = timedelta(days=245)
POLL_SECONDS = 0.25

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
    # The worker's lines (a line a send, the Temporal core's warnings) go to a file beside
    # the demo's folder, kept after it stops: on the terminal they would push the live
    # view away. JSON lines unless LAPSE_LOG_FORMAT=text.
    log_path = settings.data_dir / DEMO_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("w", encoding="utf-8")
    log_lines.configure(stream=log_file)  # the core's logs come too (`command` routes them)
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
        log_file.flush()


async def _demo(args, settings, stack: Stack, client, pool: asyncpg.Pool,
                console: Console, codec) -> int:
    queue = f"lapse-demo-{uuid.uuid4().hex[:6]}"
    async with pool.acquire() as conn:
        await store.save_policy_file(
            conn, parse_policy_file(SAMPLE.read_text(encoding="utf-8").splitlines()))
        await store.ensure_calendar_seeded(conn)
    console.print(f"[bold]lapse demo[/]: time x{settings.time_scale:,.0f} "
                  f"(a journey month in {30 * 86400 / settings.time_scale:.0f} s)")
    async with (local_console(stack, demo_agent=True) as console_url,
                _senders(settings, pool, client) as (senders, outbox_url)):
        addresses = _addresses(settings, stack, codec, console_url, outbox_url)
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
            players = sorted((Player(n, role) for n, role in cast if n in started),
                             key=lambda p: p.policy_number)
            payments = PaymentSystem(journeys, pool, time_scale=settings.time_scale)
            head = _grid(addresses)
            if not console.is_terminal:
                # No live view when piped: the addresses now (the journeys are running, so
                # other terminals find them), the table once they have closed.
                console.print(head)
            with Live(Group(head, _table(players)), console=console, refresh_per_second=4,
                      transient=not console.is_terminal) as live:
                async def refresh() -> None:
                    while True:
                        live.update(Group(head, _table(players)))
                        await asyncio.sleep(0.25)

                ticker = asyncio.create_task(refresh())
                try:
                    await asyncio.gather(*(_play(p, journeys, payments, pool, now,
                                                 settings.time_scale) for p in players))
                finally:
                    ticker.cancel()
                live.update(Group(head, _table(players)))
            if not console.is_terminal:  # the live view was not drawn: show its last state
                console.print(_table(players))
            console.print(await _summary(players, summary, pool))
            if not args.exit_when_done:
                # The addresses again, at the bottom where they stay in sight.
                console.print("All journeys closed. These stay up until Ctrl-C:")
                console.print(_grid([a for a in addresses if a[0] in STAY_UP]))
                await asyncio.Event().wait()
    return 1 if any(p.error for p in players) else 0


STAY_UP = ("Temporal Web UI", "Outbox", "Agent console")
DEMO_LOG = "demo-worker.log"  # in LAPSE_DATA_DIR, beside the demo's own folder


def _addresses(settings, stack: Stack, codec, console_url: str,
               outbox_url: str | None) -> list[tuple[str, str]]:
    """Where to follow the demo: the Web UI, the codec server, the console, the outbox,
    and how another terminal reaches the same journeys."""
    rows = [("Temporal Web UI", (stack.ui_url or stack.temporal_address)
             + (f"/namespaces/{stack.namespace}/workflows" if stack.ui_url else ""))]
    rows += codec_lines(codec, settings) if codec else []
    rows.append(("Agent console", f"{console_url}  (sign in as {DEMO_AGENT} / {DEMO_PASSWORD})"))
    if outbox_url:
        rows.append(("Outbox", f"{outbox_url}/outbox"))
    rows.append(("Other terminals", f"LAPSE_DATA_DIR={_shown_path(settings.data_dir)} "
                 f"{lapse_command()} list   (or: status P2026000001)"))
    rows.append(("Worker log", _shown_path(settings.data_dir.parent / DEMO_LOG)))
    return rows


def lapse_command() -> str:
    """How a reader in this folder runs `lapse`: `./run lapse` in the project folder (the
    README's way; a bare `lapse` is not on the PATH), else the run script's full path."""
    run = ROOT / "run"
    return "./run lapse" if Path.cwd().resolve() == ROOT else f"{run} lapse"


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _grid(rows: list[tuple[str, str]]) -> Table:
    # A value wraps under itself, never under its label, on a narrow terminal.
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(f"  {label}", value)
    return grid


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


@dataclass(frozen=True)
class JourneyClock:
    """A journey's time as its workflow reckons it: from its journey start, at the scale,
    since the wall-clock moment it started."""

    start: datetime
    started: datetime
    scale: float

    def now(self) -> datetime:
        return self.start + (datetime.now(UTC) - self.started) * self.scale


# A status query may time out while the server is busy: ask again for this long.
PATIENCE = timedelta(seconds=30)


async def _play(player: Player, journeys: Journeys, payments: PaymentSystem,
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


# What operations do for a held journey: set the birth date the ID number carries (its
# digits 7-14), as they would after checking with the customer.
_CORRECT_BIRTH_DATE = """
UPDATE customers SET birth_date = to_date(substr(id_number, 7, 8), 'YYYYMMDD')
WHERE customer_id = (SELECT policyholder_id FROM policies WHERE policy_number = $1)
  AND id_number IS NOT NULL
"""


async def _act(player: Player, step: Step, s: JourneyStatus, at: datetime,
               journeys: Journeys, payments: PaymentSystem, pool: asyncpg.Pool) -> None:
    number = player.policy_number
    if step.action == "pay":
        await payments.payment_received(number, Payment(
            transaction_id=f"T-{number}-{uuid.uuid4().hex[:6]}", amount=s.outstanding,
            currency="CNY", paid_at=at))
    elif step.action == "pay_reinstatement":
        # Today's quote: every premium unpaid with its interest (the outstanding premium
        # when the journey has no quote, e.g. outside the reinstatement window).
        amount = s.reinstatement.total if s.reinstatement else s.outstanding
        await payments.payment_received(number, Payment(
            transaction_id=f"T-{number}-{uuid.uuid4().hex[:6]}", amount=amount,
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
        await journeys.signal(number, CONTACT_UPDATED, ContactUpdated(updated_at=at))
    elif step.action == "verify":
        await pool.execute(_CORRECT_BIRTH_DATE, number)
        await journeys.signal(number, DATA_VERIFIED, DataVerified(
            verified_by=DEMO_AGENT, verified_at=at, outcome=VerificationOutcome.PROCEED))


def _table(players: list[Player]) -> Table:
    """One line a journey, within 100 columns: the scenario the demo plays, where the
    journey stands (a closed one by its outcome), its messages, its next milestone and
    what the customer (or operations) did last."""
    clock = max((p.status.journey_now for p in players if p.status), default=None)
    title = "journeys" + (f", journey time {clock.astimezone(TZ):%Y-%m-%d}" if clock else "")
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  show_edge=False)
    for col in ("policy", "scenario", "stage", "sent", "failed", "next", "did"):
        table.add_column(col, no_wrap=True,
                         justify="right" if col in ("sent", "failed") else "left")
    for p in players:
        s = p.status
        if s is None:
            table.add_row(p.policy_number, p.role.name, p.error or "starting", "", "", "", "")
            continue
        stage_text = f"closed: {s.outcome.value}" if s.outcome else s.stage.value
        nxt = s.next_milestone
        table.add_row(
            p.policy_number, p.role.name,
            f"[red]{p.error}[/]" if p.error else stage_text,
            str(sum(1 for n in s.notifications if n.status == "sent")),
            str(sum(1 for n in s.notifications if n.status == "failed")),
            f"{nxt.name} {nxt.at.astimezone(TZ):%m-%d}" if nxt else "-",
            p.done[-1] if p.done else "-")
    return table


_BY_CHANNEL = """
SELECT channel, status, count(*) AS n FROM notifications
WHERE policy_number = ANY($1::text[]) GROUP BY channel, status ORDER BY channel, status
"""
_FAILED_BECAUSE = """
SELECT channel, error_code, count(*) AS n FROM notifications
WHERE policy_number = ANY($1::text[]) AND status IN ('failed', 'bounced')
  AND error_code IS NOT NULL
GROUP BY channel, error_code ORDER BY n DESC, channel, error_code LIMIT 4
"""
_TASKS = """
SELECT kind, count(*) AS n FROM agent_tasks WHERE policy_number = ANY($1::text[])
GROUP BY kind ORDER BY kind
"""
_LISTED = """
SELECT count(*) FROM public_notices WHERE policy_number = ANY($1::text[])
"""


async def _summary(players: list[Player], scan, pool: asyncpg.Pool) -> Table:
    numbers = [p.policy_number for p in players]
    by_channel, failed, tasks = [await pool.fetch(q, numbers)
                                 for q in (_BY_CHANNEL, _FAILED_BECAUSE, _TASKS)]
    listed = await pool.fetchval(_LISTED, numbers)
    outcomes: dict[str, int] = {}
    for p in players:
        key = p.error or (p.status.outcome.value if p.status and p.status.outcome else "open")
        outcomes[key] = outcomes.get(key, 0) + 1
    rows = [("journeys", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))),
            ("scan skipped", ", ".join(f"{k} {v}" for k, v in scan.skipped.items()) or "-")]
    channels: dict[str, list[str]] = {}
    for r in by_channel:
        channels.setdefault(r["channel"], []).append(f"{r['status']} {r['n']}")
    rows += [(f"messages {c}", ", ".join(parts)) for c, parts in channels.items()]
    if failed:
        rows.append(("failed because", "; ".join(
            f"{r['channel']} {explain(r['error_code'], r['channel'])} ×{r['n']}"
            for r in failed)))
    rows.append(("agent tasks", ", ".join(f"{r['kind']} {r['n']}" for r in tasks) or "-"))
    rows.append(("public notice", f"{listed} {'policy' if listed == 1 else 'policies'} "
                 "listed (holder unreachable)"))
    paid = sum((p.status.amount_paid for p in players if p.status), Decimal("0"))
    rows.append(("premium collected", f"¥{paid:,.2f}"))
    table = Table.grid(padding=(0, 2))
    table.title, table.title_justify = "demo summary", "left"
    table.add_column(no_wrap=True, style="bold")
    table.add_column(overflow="fold")
    for label, value in rows:
        table.add_row(label, value)
    return table
