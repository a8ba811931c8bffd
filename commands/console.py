"""`lapse console`: the agents' web console as its own process, and its accounts
(`lapse console add-agent NAME`, `lapse console remove-agent NAME`)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import asyncpg
from temporalio.client import Client

from commands.common import UserError, command, database, temporal, until_stopped
from infra import console_queries as q
from infra.db import connect_pool
from infra.embedded import Stack, read_stack_file
from infra.settings import Settings
from infra.temporal import connect_client
from web import serve
from web.console import AccountError, JourneyPort, SessionRules, build_console, save_agent

PASSWORD_VARIABLE = "LAPSE_CONSOLE_PASSWORD"
# The demo's account, printed when the demo starts (its database is deleted afterwards).
DEMO_AGENT, DEMO_PASSWORD = "demo", "demo-console"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "console", help="serve the agents' web console (or manage its accounts)",
        description="Serve the agents' web console until Ctrl-C: find a policy, its journey, "
        "record what the customer says, work the task queue. Agents sign in with accounts "
        "made by `lapse console add-agent NAME`. Serve it behind HTTPS: its cookies are "
        "Secure, which browsers accept over plain HTTP only on this machine.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8027)
    p.add_argument("--web-ui", metavar="URL", help="the Temporal Web UI, for links to "
                   "journeys (default: the one `lapse dev` runs, if any)")
    p.add_argument("--idle-minutes", type=int, default=30,
                   help="a session ends after this long unused (default 30)")
    p.add_argument("--shift-hours", type=float, default=10,
                   help="and this long after signing in, used or not (default 10)")
    p.set_defaults(func=command(run_console))
    accounts = p.add_subparsers(dest="console_command", metavar="ACTION")
    add = accounts.add_parser(
        "add-agent", help="create an agent's account (or --reset its password)",
        description="The password is asked for without echo; for automation give it in a "
        f"file (--password-file) or in {PASSWORD_VARIABLE}. It is kept only as an argon2 hash.")
    add.add_argument("name", help="2-32 characters: a-z, 0-9, '.', '_' or '-'")
    add.add_argument("--display-name", help="the name shown in the console (default: NAME)")
    add.add_argument("--password-file", type=Path, metavar="FILE",
                     help="read the password from the first line of FILE")
    add.add_argument("--reset", action="store_true",
                     help="give an existing account a new password; its sessions end")
    add.set_defaults(func=command(run_add_agent))
    remove = accounts.add_parser("remove-agent",
                                 help="delete an agent's account; its sessions end")
    remove.add_argument("name")
    remove.set_defaults(func=command(run_remove_agent))


def console_app(pool: asyncpg.Pool, client: Client, settings: Settings, *,
                web_ui_url: str | None, rules: SessionRules | None = None):
    return build_console(pool, JourneyPort(client, settings.temporal_task_queue,
                                           web_ui_url=web_ui_url), rules=rules)


async def run_console(args: argparse.Namespace, settings: Settings) -> int:
    if args.idle_minutes < 1 or args.shift_hours <= 0:
        raise UserError("--idle-minutes and --shift-hours must be greater than 0")
    rules = SessionRules(idle=timedelta(minutes=args.idle_minutes),
                         lasts=timedelta(hours=args.shift_hours))
    running = read_stack_file(settings.data_dir)
    web_ui = args.web_ui or (running.ui_url if running else None)
    async with database(settings) as pool, temporal(settings) as client:
        app = console_app(pool, client, settings, web_ui_url=web_ui, rules=rules)
        async with serve(app, args.host, args.port) as base:
            print(f"agents' console on {base}; accounts: lapse console add-agent NAME. "
                  "Ctrl-C stops it.", flush=True)
            await until_stopped()
    return 0


def ask_password(args: argparse.Namespace) -> str:
    """From --password-file, LAPSE_CONSOLE_PASSWORD, or asked twice without echo."""
    if args.password_file:
        try:
            return args.password_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, UnicodeDecodeError, IndexError):
            raise UserError(f"{args.password_file}: cannot read a password from its first "
                            "line") from None
    if os.environ.get(PASSWORD_VARIABLE):
        return os.environ[PASSWORD_VARIABLE]
    if not sys.stdin.isatty():
        raise UserError(f"no terminal to ask for the password: use --password-file FILE or "
                        f"{PASSWORD_VARIABLE}")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first


async def run_add_agent(args: argparse.Namespace, settings: Settings) -> int:
    password = ask_password(args)
    async with database(settings) as pool:
        try:
            await save_agent(pool, args.name, password, display_name=args.display_name,
                             reset=args.reset)
        except AccountError as err:
            raise UserError(str(err)) from None
    print(f"agent {args.name}: {'new password set' if args.reset else 'account created'}")
    return 0


async def run_remove_agent(args: argparse.Namespace, settings: Settings) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        if not await q.remove_agent(conn, args.name):
            raise UserError(f"there is no agent {args.name}")
    print(f"agent {args.name}: account removed")
    return 0


@asynccontextmanager
async def local_console(stack: Stack, *, demo_agent: bool = False) -> AsyncIterator[str]:
    """The console on a free local port beside `lapse dev` or the demo; yields its URL.
    With `demo_agent`, the demo's account (DEMO_AGENT) exists with DEMO_PASSWORD."""
    pool = await connect_pool(stack.database_url, min_size=1, max_size=4)
    try:
        if demo_agent:
            try:
                await save_agent(pool, DEMO_AGENT, DEMO_PASSWORD, display_name="演示坐席")
            except AccountError:  # a database kept from before: same account, same password
                await save_agent(pool, DEMO_AGENT, DEMO_PASSWORD, reset=True)
        client = await connect_client(stack.settings, stack.temporal_address)
        app = console_app(pool, client, stack.settings, web_ui_url=stack.ui_url)
        async with serve(app) as url:
            yield url
    finally:
        await pool.close()
