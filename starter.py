"""The `lapse` command line: wires the commands/ modules into one argparse program."""

from __future__ import annotations

import argparse
import os
import sys

from commands import (
    bind_card,
    calendar,
    codec_server,
    console,
    demo,
    dev,
    evidence,
    inquiry,
    journey,
    listing,
    load,
    plan,
    report,
    sandbox,
    scan,
    schema,
    task,
    temporal_cli,
    verify,
)

COMMANDS = (demo, dev, load, schema, calendar, plan, scan, bind_card, journey, listing, inquiry,
            report, task, sandbox, codec_server, console, verify, evidence, temporal_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lapse",
        description="lapse-notifier: durable reminders for policies at risk of lapsing")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `lapse status ... | head`
        code = 0
    sys.stderr.flush()
    # Leave without interpreter finalisation: the Temporal client's native threads can
    # abort it (sdk-python issue 300) after an otherwise clean run.
    os._exit(code)


if __name__ == "__main__":
    main()
