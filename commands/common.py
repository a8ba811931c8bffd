"""What every `lapse` command shares: settings, the database, Temporal, and clear errors."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg
from temporalio.client import Client

from infra import logging as log_lines
from infra.db import connect_pool
from infra.embedded import StackError, resolve_endpoints
from infra.migrate import MigrationError
from infra.settings import Settings, SettingsError
from infra.store import NotFound, ensure_calendar_seeded
from infra.temporal import connect_client


class UserError(Exception):
    """Bad input or state a user can fix: printed as is, exit code 2."""


def command(fn: Callable[[argparse.Namespace, Settings], Awaitable[int]]):
    """Run an async command with validated settings; errors become one line on stderr."""

    def run(args: argparse.Namespace) -> int:
        try:
            # Warnings and errors (the Temporal core's among them) as the worker writes
            # them: readable on a terminal, JSON lines otherwise (LAPSE_LOG_FORMAT).
            log_lines.configure(level=logging.WARNING)
            log_lines.route_core_logs()
            settings = Settings.from_env()
            return asyncio.run(fn(args, settings))
        except NotFound as err:
            # Mostly met on a fresh data folder, before any policy file was loaded.
            print(f"lapse {args.command}: {err}: policies come from a policy file, loaded "
                  "with `lapse load FILE` (the samples: ./run lapse load "
                  "data/sample-policies.jsonl)", file=sys.stderr)
            return 2
        except (SettingsError, UserError, StackError, MigrationError,
                log_lines.LogFormatError) as err:
            print(f"lapse {args.command}: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return run


def with_settings(fn: Callable[[argparse.Namespace, Settings], int]):
    """Run a command that runs its own event loop (or none) with validated settings; a bad
    setting is one line on stderr, exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            settings = Settings.from_env()
        except SettingsError as err:
            print(f"lapse {args.command}: {err}", file=sys.stderr)
            return 2
        return fn(args, settings)

    return run


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the configured, running or embedded database, migrated and seeded."""
    async with resolve_endpoints(settings) as endpoints:
        pool = await connect_pool(endpoints.database_url, min_size=1, max_size=4)
        try:
            async with pool.acquire() as conn:
                await ensure_calendar_seeded(conn)
            yield pool
        finally:
            await pool.close()


@asynccontextmanager
async def temporal(settings: Settings, *, lazy: bool = False) -> AsyncIterator[Client]:
    """A client on the configured or running Temporal; `lazy`: connected on first use."""
    async with resolve_endpoints(settings, database=False) as endpoints:
        try:
            yield await connect_client(settings, endpoints.require_temporal(), lazy=lazy)
        except RuntimeError as err:
            if "connect" in str(err).lower():
                raise UserError(f"cannot reach Temporal: {err}") from None
            raise


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def until_stopped() -> None:
    """Wait for Ctrl-C or SIGTERM (what a server command does once it serves). The handler
    stays: a second Ctrl-C while the server stops does not cut its stopping short."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@contextmanager
def on_stop_signals(handler: Callable[[], object]) -> Iterator[None]:
    """Inside, Ctrl-C and SIGTERM call `handler` on the running loop instead of raising
    KeyboardInterrupt; their usual handling is back on the way out."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, handler)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


