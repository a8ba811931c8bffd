"""`lapse verify [POLICY | --all]`: recompute the evidence chains and name every break.

Exit code 0: clean; 1: breaks found; 2: bad input (or nothing to verify with).
"""

from __future__ import annotations

import argparse
from contextlib import AsyncExitStack

from commands.common import UserError, command, database, temporal
from domain.evidence import Verification
from infra.evidence import verify
from infra.store import policy_exists


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify", help="check that no record of a journey changed behind its back",
        description="Recompute the hash chains over the notification records, their "
        "statuses, payments, debit failures, inquiries and stage changes, and compare them "
        "with the records and with the chain heads in the journeys' Temporal histories. "
        "Exit code 0: clean, 1: breaks found (each named), 2: bad input.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("policy_number", nargs="?", help="one policy's journeys")
    which.add_argument("--all", action="store_true", help="every policy")
    p.add_argument("--no-history", action="store_true",
                   help="compare within PostgreSQL only, without the Temporal histories")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=command(run))


async def run(args: argparse.Namespace, settings) -> int:
    policy = None if args.all else args.policy_number
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(database(settings))
        if policy is not None and not await policy_exists(pool, policy):
            raise UserError(f"unknown policy {policy}")
        client = (None if args.no_history
                  else await stack.enter_async_context(temporal(settings)))
        found = await verify(pool, policy, client)
    print(found.model_dump_json(indent=2) if args.json else report(found))
    return 0 if found.clean else 1


def report(found: Verification) -> str:
    scope = f"policy {found.policy_number}" if found.policy_number else "every policy"
    compared = ("not compared with Temporal" if found.histories is None else
                f"{found.histories} workflow run(s) compared with Temporal")
    if found.histories_unavailable:
        compared += f", {found.histories_unavailable} no longer on the server"
    lines = [f"{scope}: {found.chains} chain(s), {found.entries} entries, {found.records} "
             f"records; {compared}",
             "clean" if found.clean else f"{len(found.breaks)} break(s):"]
    lines += [f"  {b.line()}" for b in found.breaks]
    return "\n".join(lines)
