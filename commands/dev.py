"""`lapse dev`: the embedded Temporal dev server (with Web UI) and PostgreSQL, kept running."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator

from commands.codec_server import codec_lines, embedded_codec_server
from commands.common import on_stop_signals, with_settings
from commands.console import local_console
from commands.providers import local_providers
from infra.db import connect_pool
from infra.embedded import Stack, StackError
from infra.migrate import MigrationError
from infra.settings import Settings, redact_dsn
from infra.temporal import SearchAttributesError, connect_client
from web.codec_server import RunningCodecServer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dev",
        help="run the embedded Temporal dev server and PostgreSQL until Ctrl-C",
        description="Start the Temporal dev server (with Web UI) and PostgreSQL under "
        "LAPSE_DATA_DIR, print where they are, and keep them running until Ctrl-C. "
        "Other `lapse` commands and `lapse-worker` find them while it runs.",
    )
    p.add_argument("--json", action="store_true", help="print the addresses as one JSON line")
    p.set_defaults(func=with_settings(run_dev))


def run_dev(args: argparse.Namespace, settings: Settings) -> int:
    """Run until Ctrl-C or SIGTERM, then stop both servers; 0 on a clean stop."""
    try:
        return asyncio.run(_dev(settings, args.json))
    except (StackError, MigrationError, SearchAttributesError) as error:
        print(f"lapse dev: {error}", file=sys.stderr)
        return 1


async def _dev(settings: Settings, json_output: bool) -> int:
    stop = asyncio.Event()
    started = False
    main = asyncio.current_task()

    def on_signal() -> None:
        # While starting, give up the start (the Stack stops what it started); once
        # running, stop in order. Later signals are ignored while stopping.
        if not stop.is_set():
            stop.set()
            if not started:
                main.cancel()

    with on_stop_signals(on_signal):
        try:
            async with (
                embedded_codec_server(settings) as codec,
                Stack(settings, ui=True, codec_endpoint=codec and codec.endpoint) as stack,
                _providers(stack) as sandbox_url,
                local_console(stack) as console_url,
            ):
                if codec is not None and stack.ui_url:
                    codec.server.allow_origin(stack.ui_url)
                started = True
                _print_addresses(stack, json_output, sandbox_url, codec, console_url)
                await stop.wait()
                if not json_output:
                    print("stopping...", flush=True)
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
            return 130  # interrupted while starting
    return 0


@contextlib.asynccontextmanager
async def _providers(stack: Stack) -> AsyncIterator[str | None]:
    """The sandbox providers with their outbox, for every provider without credentials."""
    if not stack.settings.providers_sandboxed:
        yield None
        return
    pool = await connect_pool(stack.database_url, min_size=1, max_size=4)
    try:
        client = await connect_client(stack.settings, stack.temporal_address)
        async with local_providers(pool, client) as url:
            stack.publish_sandbox(url)
            yield url
    finally:
        await pool.close()


def _print_addresses(stack: Stack, json_output: bool, sandbox_url: str | None,
                     codec: RunningCodecServer | None, console_url: str) -> None:
    addresses = {
        "temporal_address": stack.temporal_address,
        "namespace": stack.namespace,
        "ui_url": stack.ui_url,
        "database_url": redact_dsn(stack.database_url),
        "data_dir": str(stack.data_dir),
        "sandbox_url": sandbox_url,
        "codec_endpoint": codec.endpoint if codec else None,
        "console_url": console_url,
    }
    if json_output:
        print(json.dumps(addresses), flush=True)
        return
    rows = [
        ("Temporal gRPC", f"{stack.temporal_address}  (namespace {stack.namespace})"),
        ("Temporal Web UI", stack.ui_url or "-  (TEMPORAL_ADDRESS is set)"),
        ("PostgreSQL", f"DATABASE_URL={addresses['database_url']}"),
        ("Temporal CLI", "./run temporal workflow list  (this address and codec server)"),
        ("Sandbox outbox", f"{sandbox_url}/outbox" if sandbox_url
         else "-  (every provider has credentials)"),
        *([("Sandbox faults", f"curl {sandbox_url}/sandbox/faults  (README: The sandbox)")]
          if sandbox_url else []),
        *(codec_lines(codec, stack.settings) if codec else []),
        ("Agent console", f"{console_url}  (accounts: lapse console add-agent NAME)"),
        ("Data folder", addresses["data_dir"]),
    ]
    for label, value in rows:
        print(f"{label:<16} {value}")
    print("Running. Other `lapse` commands in this folder find these. Press Ctrl-C to stop.")
    sys.stdout.flush()
