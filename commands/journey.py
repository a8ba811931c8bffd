"""`lapse start | pay | status`: drive one policy's journey by its policy number."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from pydantic import ValidationError

from commands.common import UserError, command, database, temporal
from domain.journey import JourneyStatus, Payment
from domain.models import TriggerKind
from domain.plan import TZ
from domain.triggers import detect_trigger
from infra import store
from infra.journeys import JourneyNotRunning, Journeys, PaymentRefused


def register(sub: argparse._SubParsersAction) -> None:
    start = sub.add_parser("start", help="start one policy's journey (or show the running one)")
    start.add_argument("policy_number")
    start.add_argument("--trigger", required=True, choices=[t.value for t in TriggerKind])
    start.add_argument("--as-of", type=date.fromisoformat, metavar="YYYY-MM-DD",
                       help="the journey's start day (default: now)")
    start.add_argument("--insurer-fault", action="store_true",
                       help="the lapse is the insurer's fault: reinstatement without interest")
    start.add_argument("--json", action="store_true")
    start.set_defaults(func=command(run_start))

    pay = sub.add_parser("pay", help="report a payment, as the payment system does")
    pay.add_argument("policy_number")
    pay.add_argument("--amount", required=True)
    pay.add_argument("--txn", required=True, help="the payment system's transaction id")
    pay.add_argument("--paid-at", type=datetime.fromisoformat, metavar="ISO-TIME")
    pay.add_argument("--currency", default="CNY")
    pay.add_argument("--json", action="store_true")
    pay.set_defaults(func=command(run_pay))

    status = sub.add_parser("status", help="where a policy's journey stands")
    status.add_argument("policy_number")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=command(run_status))


async def run_start(args: argparse.Namespace, settings) -> int:
    now = datetime.now(TZ)
    start_at = datetime.combine(args.as_of, now.timetz()) if args.as_of else now
    async with database(settings) as pool, pool.acquire() as conn:
        bundle = await store.load_policy(conn, args.policy_number, with_members=False)
    trigger = detect_trigger(bundle.policy, bundle.product, start_at.date())
    if trigger is None:
        raise UserError(f"policy {args.policy_number} is not at risk on {start_at.date()} "
                        "(paid, not yet due, or not in force)")
    if trigger.kind.value != args.trigger:
        raise UserError(f"policy {args.policy_number} is at risk as {trigger.kind.value}, "
                        f"not {args.trigger}, on {start_at.date()}")
    if args.insurer_fault:
        trigger = trigger.model_copy(update={"insurer_fault": True})
    async with temporal(settings) as client:
        handle = await Journeys(client, settings.temporal_task_queue).start(
            trigger, bundle.product.kind.value, time_scale=settings.time_scale,
            journey_start=start_at if args.as_of else None)
    info = {"workflow_id": handle.id, "run_id": handle.result_run_id,
            "trigger": trigger.kind.value, "time_scale": settings.time_scale}
    print(json.dumps(info) if args.json else
          f"journey {handle.id} running ({trigger.kind.value}, time scale "
          f"{settings.time_scale:g})")
    return 0


async def run_pay(args: argparse.Namespace, settings) -> int:
    try:
        amount = Decimal(args.amount)
    except InvalidOperation:
        raise UserError(f"--amount must be a decimal number such as 1234.50, got "
                        f"{args.amount!r}") from None
    paid_at = args.paid_at or datetime.now(TZ)
    if paid_at.tzinfo is None:
        paid_at = paid_at.replace(tzinfo=TZ)
    try:
        payment = Payment(transaction_id=args.txn, amount=amount, currency=args.currency,
                          paid_at=paid_at)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        raise UserError(f"{first['loc'][0]}: {first['msg']}") from None
    if payment.amount <= 0:
        raise UserError(f"--amount must be positive, got {payment.amount}")
    async with temporal(settings) as client:
        try:
            answer = await Journeys(client, settings.temporal_task_queue).pay(
                args.policy_number, payment)
        except JourneyNotRunning as err:
            raise UserError(str(err)) from None
        except PaymentRefused as err:
            raise UserError(f"payment refused: {err}") from None
    print(answer.model_dump_json() if args.json else
          f"payment {args.txn}: {answer.outcome}; outstanding ¥{answer.outstanding:,.2f}")
    return 0


def status_card(s: JourneyStatus) -> str:
    lines = [f"policy {s.policy_number}   stage {s.stage.value}"
             + (f" ({s.outcome.value})" if s.outcome else "")
             + f"   trigger {s.trigger}",
             f"due {s.due_date}   grace ends {s.grace_ends_at or '-'}   "
             f"lapses {s.lapses_at.astimezone(TZ):%Y-%m-%d %H:%M}" if s.lapses_at else
             f"due {s.due_date}",
             f"amount due ¥{s.amount_due:,.2f}   paid ¥{s.amount_paid:,.2f}   "
             f"outstanding ¥{s.outstanding:,.2f}"]
    if s.next_milestone:
        n = s.next_milestone
        lines.append(f"next {n.name} at {n.at.astimezone(TZ):%Y-%m-%d %H:%M} "
                     f"({', '.join(c.value for c in n.channels)})")
    if s.reinstatement:
        r = s.reinstatement
        lines.append(f"reinstatement today ¥{r.total:,.2f} (back premium ¥{r.back_premium:,.2f}"
                     f" + interest ¥{r.interest:,.2f}), deadline {r.deadline}")
    for i in s.open_inquiries:
        lines.append(f"inquiry {i.inquiry_id} ({i.kind.value}) answer by "
                     f"{i.respond_by.astimezone(TZ):%Y-%m-%d %H:%M}"
                     + ("  ESCALATED" if i.escalated else ""))
    lines.append("messages:")
    for n in s.notifications:
        lines.append(f"  {n.at.astimezone(TZ):%Y-%m-%d %H:%M}  {n.milestone:<22} "
                     f"{n.channel.value:<10} {n.status}"
                     + (f" x{n.recipients}" if n.recipients > 1 else ""))
    return "\n".join(lines)


async def run_status(args: argparse.Namespace, settings) -> int:
    async with temporal(settings) as client:
        try:
            s = await Journeys(client, settings.temporal_task_queue).status(args.policy_number)
        except JourneyNotRunning as err:
            raise UserError(str(err)) from None
    print(s.model_dump_json(indent=2) if args.json else status_card(s))
    return 0



