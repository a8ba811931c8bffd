"""`lapse evidence POLICY --out DIR --requested-by WHO --reason WHY`: one journey's evidence
pack for a dispute, as a PDF and a JSON with the same content, and its letters."""

from __future__ import annotations

import argparse
import asyncio
import re
from datetime import datetime
from pathlib import Path

from commands.common import UserError, command, database, temporal
from domain.plan import TZ
from infra.evidence_pack import Gathered, NoJourney, gather, log_request, log_result, new_reference
from infra.store import policy_exists

# Names and reasons go into the request log: one line of plain text, no markup.
_LINE = re.compile(r"^[^\x00-\x1f\x7f]+$")


def _text(minimum: int, maximum: int):
    def check(value: str) -> str:
        value = value.strip()
        if not (minimum <= len(value) <= maximum) or not _LINE.match(value):
            raise argparse.ArgumentTypeError(
                f"one line of {minimum} to {maximum} characters")
        return value
    return check


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evidence", help="an evidence pack for a dispute: every notice of a journey, proven",
        description="Write one PDF and one JSON with the same content: the policy and trigger, "
        "the timeline as planned, every message with its exact text, masked address, provider "
        "id and statuses, payments, inquiries, the hash chain and its verification, and on the "
        "first page whether the formal demand was delivered. Who asks and why is logged.")
    p.add_argument("policy_number")
    p.add_argument("--journey", metavar="ID", help="the journey (default: the latest)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--requested-by", type=_text(2, 100), required=True, metavar="WHO",
                   help="who asks for it (e.g. the complaints officer's name and desk)")
    p.add_argument("--reason", type=_text(4, 300), required=True, metavar="WHY",
                   help="why (e.g. the complaint or case reference)")
    p.add_argument("--json", action="store_true", help="print the pack's JSON")
    p.set_defaults(func=command(run))


def write_pack(gathered: Gathered, out: Path) -> tuple[Path, Path, bytes]:
    """The PDF, the JSON and the letters into `out`; returns the PDF and JSON paths."""
    from commands.evidence_pdf import render_pack_pdf  # reportlab and pypdf load slowly

    pack = gathered.pack
    out.mkdir(parents=True, exist_ok=True)
    pdf = render_pack_pdf(pack, gathered.letters)
    pdf_path, json_path = out / f"{pack.reference}.pdf", out / f"{pack.reference}.json"
    pdf_path.write_bytes(pdf)
    json_path.write_text(pack.model_dump_json(indent=2), encoding="utf-8")
    for letter in gathered.letters:
        (out / letter.file.filename).write_bytes(letter.content)
    return pdf_path, json_path, pdf


async def run(args: argparse.Namespace, settings) -> int:
    now = datetime.now(TZ)
    reference = new_reference(now)
    async with database(settings) as pool, temporal(settings) as client:
        if not await policy_exists(pool, args.policy_number):
            raise UserError(f"unknown policy {args.policy_number}")
        await log_request(pool, reference, args.policy_number, args.journey,
                          args.requested_by, args.reason)
        try:
            gathered = await gather(pool, client, args.policy_number, args.journey,
                                    reference=reference, requested_by=args.requested_by,
                                    reason=args.reason, now=now)
        except NoJourney as err:
            raise UserError(str(err)) from None
        try:
            pdf_path, json_path, pdf = await asyncio.to_thread(write_pack, gathered, args.out)
        except OSError as err:
            raise UserError(f"cannot write {err.filename}: {err.strerror}") from None
        await log_result(pool, gathered.pack, pdf)
    if args.json:
        print(gathered.pack.model_dump_json(indent=2))
    else:
        print(f"{reference}: wrote {pdf_path} and {json_path}"
              + (f" and {len(gathered.letters)} letter(s)" if gathered.letters else ""))
    return 0
