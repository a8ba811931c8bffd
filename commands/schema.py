"""`lapse schema`: the JSON Schema of one line of the policy file."""

from __future__ import annotations

import argparse
import json

from domain.policy_file import json_schema


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of a policy file line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), ensure_ascii=False, indent=2))
    return 0
