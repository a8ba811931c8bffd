"""`lapse inquiry`: record what a customer told an agent, by signalling the journey."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import datetime

from commands.common import UserError, command, database, temporal
from domain.ids import IdError, check_reference
from domain.journey import (
    InquiryHandled,
    InquiryKind,
    InquiryReceived,
    ReinstatementApplied,
    ReinstatementDecided,
)
from domain.plan import TZ
from infra import notes
from infra.journeys import JourneyNotRunning, Journeys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inquiry", help="record a customer inquiry or a reinstatement application",
        description="Open an inquiry (1-business-day response clock), close one with "
        "--handled, record a reinstatement application with --apply-reinstatement, or "
        "underwriting's decision with --decide ID --approve/--refuse.")
    p.add_argument("policy_number")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--kind", choices=[k.value for k in InquiryKind],
                        help="open an inquiry of this kind (default: question)")
    action.add_argument("--handled", metavar="ID", help="close the inquiry with this id")
    action.add_argument("--apply-reinstatement", action="store_true",
                        help="the customer applies for reinstatement")
    action.add_argument("--decide", metavar="APPLICATION_ID",
                        help="underwriting's decision on a reinstatement application")
    verdict = p.add_mutually_exclusive_group()
    verdict.add_argument("--approve", action="store_true")
    verdict.add_argument("--refuse", action="store_true")
    p.add_argument("--id", help="the inquiry or application id (default: a new one)")
    p.add_argument("--note", default="", help="what was answered, or why refused (no personal "
                   "data)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=command(run_inquiry))


async def run_inquiry(args: argparse.Namespace, settings) -> int:
    now = datetime.now(TZ)
    if (args.approve or args.refuse) and not args.decide:
        raise UserError("--approve/--refuse go with --decide APPLICATION_ID")
    if args.decide and not (args.approve or args.refuse):
        raise UserError("--decide needs --approve or --refuse")
    for option, value in (("--handled", args.handled), ("--decide", args.decide),
                          ("--id", args.id)):
        try:
            if value is not None:
                check_reference(value)
        except IdError as err:
            raise UserError(f"{option}: {err}") from None
    if len(args.note) > 500:
        raise UserError("--note: at most 500 characters")
    note_id = None
    if args.note and (args.handled or args.decide):
        # The note goes to PostgreSQL; the journey gets its id, never the text.
        async with database(settings) as pool, pool.acquire() as conn:
            note_id = await notes.keep_note(
                conn, args.policy_number,
                "inquiry_handled" if args.handled else "reinstatement_decided",
                args.handled or args.decide, args.note, written_by="cli")
    async with temporal(settings) as client:
        journeys = Journeys(client, settings.temporal_task_queue)
        try:
            if args.handled:
                ref = args.handled
                await journeys.inquiry_handled(args.policy_number, InquiryHandled(
                    inquiry_id=ref, handled_at=now, note_id=note_id))
                done = f"inquiry {ref} handled"
            elif args.apply_reinstatement:
                ref = args.id or f"R-{uuid.uuid4().hex[:10]}"
                await journeys.reinstatement_applied(args.policy_number, ReinstatementApplied(
                    application_id=ref, applied_at=now))
                done = f"reinstatement application {ref} recorded"
            elif args.decide:
                ref = args.decide
                await journeys.reinstatement_decided(args.policy_number, ReinstatementDecided(
                    application_id=ref, approved=args.approve, decided_at=now,
                    note_id=note_id))
                done = f"application {ref} {'approved' if args.approve else 'refused'}"
            else:
                ref = args.id or f"Q-{uuid.uuid4().hex[:10]}"
                kind = InquiryKind(args.kind or InquiryKind.QUESTION.value)
                await journeys.inquiry_received(args.policy_number, InquiryReceived(
                    inquiry_id=ref, kind=kind, received_at=now))
                done = f"inquiry {ref} ({kind.value}) opened: answer within 1 business day"
        except JourneyNotRunning as err:
            raise UserError(str(err)) from None
    print(json.dumps({"policy_number": args.policy_number, "id": ref, "result": done})
          if args.json else f"{args.policy_number}: {done}")
    return 0
