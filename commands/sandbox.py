"""`lapse sandbox` and `lapse callbacks`: the HTTP side, as one process beside the worker.

`lapse sandbox` serves the sandbox providers (Twilio, SendGrid, WeChat and WeCom APIs, the
outbox, failure injection), the delivery callbacks and the public notice on one port, for
local work. `lapse callbacks` serves only the callbacks and the public notice, for production
behind the public URL given to the providers (LAPSE_CALLBACK_URL).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

import sandbox as sb
from activities.wechat_sender import WECHAT_EVENTS_PATH
from commands.common import UserError, command, database, temporal, until_stopped
from infra.deliveries import policies_for_refs
from infra.journeys import Journeys
from web import build_app, serve
from web.callbacks import SENDGRID_EVENTS_PATH


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sandbox", help="run the sandbox providers, outbox and callbacks",
                       description="Serve the sandbox Twilio, SendGrid, WeChat and WeCom APIs, the "
                       "outbox (/outbox), failure injection (/sandbox/faults), the delivery "
                       "callbacks and the public notice on one port until Ctrl-C. Needs "
                       "`lapse dev` (or TEMPORAL_ADDRESS) for the journeys' signals.")
    p.add_argument("--port", type=int, help="default: the port of LAPSE_SANDBOX_URL (8025)")
    p.add_argument("--faults", type=Path, metavar="FILE",
                   help="JSON list of failure rules to start with (see README)")
    p.add_argument("--callees", type=Path, metavar="FILE",
                   help='JSON list of keys callees press, e.g. [{"match": "+86...", "keys": "1"}]')
    p.add_argument("--no-default-faults", action="store_true",
                   help="do not refuse the sample data's invalid number +8613900000000")
    p.add_argument("--callback-delay", type=float, default=1.0, metavar="SECONDS",
                   help="pause before each delivery callback, to watch statuses change")
    p.set_defaults(func=command(run_sandbox))
    c = sub.add_parser("callbacks", help="run the delivery callback endpoint and public notice",
                       description="Serve the Twilio status callbacks, the SendGrid Event "
                       "Webhook and the public unreachable notice until Ctrl-C.")
    c.add_argument("--host", default="0.0.0.0")
    c.add_argument("--port", type=int, default=8026)
    c.set_defaults(func=command(run_callbacks))


def _rules(path: Path | None, model, what: str) -> list:
    if path is None:
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [model.model_validate(r) for r in (data if isinstance(data, list) else [data])]
    except (OSError, ValueError, ValidationError) as err:
        raise UserError(f"{path}: not a JSON list of {what} ({type(err).__name__})") from None


def _faults(args: argparse.Namespace) -> list[sb.Fault]:
    rules = [] if args.no_default_faults else list(sb.DEFAULT_FAULTS)
    return rules + _rules(args.faults, sb.Fault, "failure rules")


async def run_sandbox(args: argparse.Namespace, settings) -> int:
    url = urlsplit(settings.sandbox_url)
    port = args.port or url.port or 8025
    async with database(settings) as pool, temporal(settings, lazy=True) as client:
        async def describe(refs: list[str]) -> dict[str, str]:
            async with pool.acquire() as conn:
                return await policies_for_refs(conn, refs)

        box = sb.Sandbox(faults=_faults(args), callback_delay=args.callback_delay,
                         describe=describe,
                         callees=_rules(args.callees, sb.Callee, "callee rules"))
        twilio = settings.twilio
        grid = settings.sendgrid
        app = build_app(
            pool, Journeys(client, settings.temporal_task_queue),
            twilio_auth_token=twilio.auth_token.get_secret_value() if twilio
            else sb.TWILIO_AUTH_TOKEN,
            sendgrid_public_key=grid.webhook_public_key if grid else box.public_key,
            public_url=settings.callback_url, sandbox=box, agent_number=settings.agent_number)
        async with serve(app, url.hostname or "127.0.0.1", port) as base:
            box.event_webhook_url = (settings.callback_url or base) + SENDGRID_EVENTS_PATH
            box.wechat_server_url = (settings.callback_url or base) + WECHAT_EVENTS_PATH
            print(f"sandbox providers on {base} ({', '.join(settings.providers_sandboxed)} "
                  f"sandboxed)\n  outbox          {base}/outbox\n"
                  f"  failure rules   {base}/sandbox/faults\n"
                  f"  callee keys     {base}/sandbox/callees\n"
                  f"  public notice   {base}/public/unreachable\n"
                  "Ctrl-C stops it.", flush=True)
            await until_stopped()
    return 0


async def run_callbacks(args: argparse.Namespace, settings) -> int:
    twilio, grid = settings.twilio, settings.sendgrid
    if twilio is None and grid is None:
        raise UserError("no provider credentials set: for local work use `lapse sandbox`")
    # Temporal connected lazily: the callbacks are stored and answered while it is down (or
    # not up yet), and the outbox delivers their signals once it answers.
    async with database(settings) as pool, temporal(settings, lazy=True) as client:
        app = build_app(pool, Journeys(client, settings.temporal_task_queue),
                        twilio_auth_token=twilio.auth_token.get_secret_value() if twilio
                        else None,
                        sendgrid_public_key=grid.webhook_public_key if grid else None,
                        public_url=settings.callback_url, agent_number=settings.agent_number)
        async with serve(app, args.host, args.port) as base:
            print(f"callbacks on {base}; providers call "
                  f"{settings.callback_url or base}. Ctrl-C stops it.", flush=True)
            await until_stopped()
    return 0
