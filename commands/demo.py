"""`lapse demo`: the whole product on one laptop: embedded servers, a worker, the sample
policies' journeys in compressed time, and the customers' side played along."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
from rich.console import Console, Group
from rich.live import Live

from activities.scan import scan_policies
from activities.senders import build_senders, close_senders
from commands.codec_server import codec_lines, embedded_codec_server
from commands.common import UserError, command, on_stop_signals
from commands.console import DEMO_AGENT, DEMO_PASSWORD, local_console
from commands.demo_personas import CAST, Player, play
from commands.demo_table import address_grid, journeys_table, summary_table
from commands.providers import local_providers
from domain.plan import TZ
from domain.policy_file import parse_policy_file
from infra import logging as log_lines
from infra import store
from infra.db import connect_pool
from infra.demo_queries import demo_records
from infra.embedded import Stack, read_stack_file
from infra.journeys import Journeys, PaymentSystem
from infra.temporal import connect_client
from worker import build_worker

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample-policies.jsonl"
# About eight months of journey (grace, lapse, six monthly follow-ups) in this long.
TARGET_SECONDS = 120
JOURNEY_SPAN = timedelta(days=245)


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
    console = Console()
    with on_stop_signals(asyncio.current_task().cancel):
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
            head = address_grid(addresses)
            if not console.is_terminal:
                # No live view when piped: the addresses now (the journeys are running, so
                # other terminals find them), the table once they have closed.
                console.print(head)
            with Live(Group(head, journeys_table(players)), console=console, refresh_per_second=4,
                      transient=not console.is_terminal) as live:
                async def refresh() -> None:
                    while True:
                        live.update(Group(head, journeys_table(players)))
                        await asyncio.sleep(0.25)

                ticker = asyncio.create_task(refresh())
                try:
                    await asyncio.gather(*(play(p, journeys, payments, pool, now,
                                                settings.time_scale) for p in players))
                finally:
                    ticker.cancel()
                live.update(Group(head, journeys_table(players)))
            if not console.is_terminal:  # the live view was not drawn: show its last state
                console.print(journeys_table(players))
            records = await demo_records(pool, [p.policy_number for p in players])
            console.print(summary_table(players, summary, records))
            if not args.exit_when_done:
                # The addresses again, at the bottom where they stay in sight.
                console.print("All journeys closed. These stay up until Ctrl-C:")
                console.print(address_grid([a for a in addresses if a[0] in STAY_UP]))
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
