"""`lapse temporal ARGS` (`./run temporal ARGS`): Temporal's own CLI, pointed at the stack
this folder runs (`lapse dev` or the demo), or at the configured cluster."""

from __future__ import annotations

import argparse
import os
import sys

from commands.common import with_settings
from infra.codec import codec_token
from infra.embedded import TEMPORAL_BIN, read_stack_file
from infra.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "temporal", help="Temporal's CLI on this stack (address, namespace, codec server)",
        description="Run the temporal CLI that comes with the project, with TEMPORAL_ADDRESS "
        "and TEMPORAL_NAMESPACE of the running `lapse dev` (or the settings), and its codec "
        "server with the local token, so payloads read in clear. Everything after "
        "`temporal` goes to the CLI, e.g. `lapse temporal schedule describe --schedule-id "
        "lapse-daily-scan`.")
    p.add_argument("cli_args", nargs=argparse.REMAINDER, metavar="ARGS")
    p.set_defaults(func=with_settings(run_temporal))


def cli_environment(settings: Settings, environ: dict[str, str]) -> dict[str, str]:
    """The environment for the CLI: what is set wins; the stack fills in the rest."""
    env = dict(environ)
    running = read_stack_file(settings.data_dir)
    address = settings.temporal_address or (running.temporal_address if running else None)
    if address:
        env.setdefault("TEMPORAL_ADDRESS", address)
    env.setdefault("TEMPORAL_NAMESPACE", settings.temporal_namespace)
    if running is not None and running.codec_endpoint and "TEMPORAL_CODEC_ENDPOINT" not in env:
        env["TEMPORAL_CODEC_ENDPOINT"] = running.codec_endpoint
        env.setdefault("TEMPORAL_CODEC_AUTH", f"Bearer {codec_token(settings)}")
    return env


def run_temporal(args: argparse.Namespace, settings: Settings) -> int:
    env = cli_environment(settings, dict(os.environ))
    if "TEMPORAL_ADDRESS" not in env:
        print("lapse temporal: no Temporal server: run `lapse dev` in another terminal or set "
              "TEMPORAL_ADDRESS", file=sys.stderr)
        return 2
    sys.stdout.flush()
    os.execve(str(TEMPORAL_BIN), [str(TEMPORAL_BIN), *args.cli_args], env)
