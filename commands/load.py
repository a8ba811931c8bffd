"""`lapse load FILE`: import products, customers and policies from a JSON-lines file."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from activities.content import insurer_settings
from commands.common import UserError, command, database
from domain.plan import CompanyRules
from domain.policy_file import PolicyFileError, parse_policy_file
from infra import store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("load", help="import policies with their customers and products "
                                    "(JSON lines; all or nothing)")
    p.add_argument("file", type=Path, help="the policy file; `lapse schema` prints its format")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=command(run))


async def load_file(pool, path: Path):
    """Validate the whole file, then store it in one transaction."""
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc.__class__.__name__}") from None
    lines = text.splitlines()
    async with pool.acquire() as conn:
        products, customers = await store.known_codes(conn)
        # Checked against the company settings every message is written with.
        parsed = parse_policy_file(lines, str(path), products, customers,
                                   insurer=insurer_settings(), company=CompanyRules())
        await store.save_policy_file(conn, parsed)
    return parsed


async def run(args: argparse.Namespace, settings) -> int:
    async with database(settings) as pool:
        try:
            parsed = await load_file(pool, args.file)
        except PolicyFileError as exc:
            raise UserError(str(exc)) from None
    counts = {"products": len(parsed.products), "customers": len(parsed.customers),
              "policies": len(parsed.policies)}
    if args.json:
        import json
        print(json.dumps(counts))
    else:
        print(f"loaded {counts['policies']} policies, {counts['customers']} customers and "
              f"{counts['products']} products from {args.file}")
    return 0
