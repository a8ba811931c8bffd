"""The `lapse` command line: wires the commands/ modules into one argparse program."""

from __future__ import annotations

import argparse
import sys

from commands import calendar, dev, journey, load, plan, schema

COMMANDS = (dev, load, schema, calendar, plan, journey)


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
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
