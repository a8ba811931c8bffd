"""`lapse inquiry`: record what a customer told an agent, by signalling the journey."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import datetime

from commands.common import UserError, command, temporal
from domain.journey import (
    InquiryHandled,
    InquiryKind,
    InquiryReceived,
    ReinstatementApplied,
    ReinstatementDecided,
)
from domain.plan import TZ
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
    async with temporal(settings) as client:
        journeys = Journeys(client, settings.temporal_task_queue)
        try:
            if args.handled:
                ref = args.handled
                await journeys.inquiry_handled(args.policy_number, InquiryHandled(
                    inquiry_id=ref, handled_at=now, note=args.note))
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
                    reason=args.note))
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
