"""`lapse start | pay | status`: drive one policy's journey by its policy number."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import get_args

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from temporalio.client import WorkflowQueryFailedError

from commands.common import UserError, command, database, temporal
from domain.journey import JourneyStatus, Outcome, Payment, Stage
from domain.models import TriggerKind
from domain.plan import TZ
from domain.provider_codes import explain
from domain.triggers import detect_trigger
from infra import store
from infra.deliveries import Delivery
from infra.journeys import (
    JourneyNotRunning,
    Journeys,
    PaymentRefused,
    PaymentSystem,
    deliveries,
)
from infra.settings import Provider, Settings


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


# How far ahead of today `--as-of` may go: tomorrow, for an operator a time zone behind.
AS_OF_MARGIN = timedelta(days=1)


def check_as_of(day: date, today: date, settings: Settings) -> None:
    """A journey starts today or as of a past day (to catch up on one that should have
    started). A later day would send that day's messages now, lapse notices included, so
    it is refused unless the journey's clock is compressed and no real provider is set."""
    if day <= today + AS_OF_MARGIN:
        return
    if settings.time_scale != 1 and len(settings.providers_sandboxed) == len(get_args(Provider)):
        return
    raise UserError(f"--as-of must be no later than {today + AS_OF_MARGIN} (tomorrow): a "
                    "journey started as of a later day sends that day's messages at once; "
                    "later days are only for the sandbox providers with LAPSE_TIME_SCALE set")


async def run_start(args: argparse.Namespace, settings) -> int:
    now = datetime.now(TZ)
    if args.as_of:
        check_as_of(args.as_of, now.date(), settings)
    start_at = datetime.combine(args.as_of, now.timetz()) if args.as_of else now
    async with database(settings) as pool, pool.acquire() as conn:
        bundle = await store.load_policy(conn, args.policy_number, with_members=False)
    async with temporal(settings) as client:
        journeys = Journeys(client, settings.temporal_task_queue)
        if await journeys.is_running(args.policy_number):
            # One journey per policy: show the running one, whatever it has done since.
            return await _show_running(journeys, args)
        trigger = detect_trigger(bundle.policy, bundle.product, start_at.date())
        if trigger is None:
            raise UserError(f"policy {args.policy_number} is not at risk on {start_at.date()} "
                            "(paid, not yet due, or not in force)")
        if trigger.kind.value != args.trigger:
            raise UserError(f"policy {args.policy_number} is at risk as {trigger.kind.value}, "
                            f"not {args.trigger}, on {start_at.date()}")
        if args.insurer_fault:
            trigger = trigger.model_copy(update={"insurer_fault": True})
        handle = await journeys.start(
            trigger, bundle.product.kind.value, time_scale=settings.time_scale,
            journey_start=start_at if args.as_of else None)
    info = {"workflow_id": handle.id, "run_id": handle.result_run_id,
            "trigger": trigger.kind.value, "time_scale": settings.time_scale,
            "already_running": False}
    print(json.dumps(info) if args.json else
          f"journey {handle.id} running ({trigger.kind.value}, time scale "
          f"{settings.time_scale:g})")
    return 0


async def _show_running(journeys: Journeys, args: argparse.Namespace) -> int:
    handle = journeys.handle(args.policy_number)
    described = await handle.describe()
    try:
        s: JourneyStatus | None = await journeys.status(args.policy_number)
    except WorkflowQueryFailedError:  # still being planned
        s = None
    info = {"workflow_id": handle.id, "run_id": described.run_id,
            "trigger": s.trigger if s else None, "stage": s.stage.value if s else None,
            "journey_now": s.journey_now.isoformat() if s else None, "already_running": True}
    if args.json:
        print(json.dumps(info))
    else:
        where = (f"{s.trigger}, stage {s.stage.value}, journey time {_at(s.journey_now)}"
                 if s else "being planned")
        print(f"journey {handle.id} is already running ({where}); nothing started. "
              f"`lapse status {args.policy_number}` shows it")
    return 0


async def run_pay(args: argparse.Namespace, settings) -> int:
    try:
        amount = Decimal(args.amount)
    except InvalidOperation:
        raise UserError("--amount must be a decimal number such as 1234.50") from None
    paid_at = args.paid_at or datetime.now(TZ)
    if paid_at.tzinfo is None:
        paid_at = paid_at.replace(tzinfo=TZ)
    try:
        payment = Payment(transaction_id=args.txn, amount=amount, currency=args.currency,
                          paid_at=paid_at)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        raise UserError(f"{first['loc'][0]}: {first['msg']}") from None
    async with database(settings) as pool, temporal(settings) as client:
        payments = PaymentSystem(Journeys(client, settings.temporal_task_queue), pool,
                                 time_scale=settings.time_scale)
        try:
            result = await payments.payment_received(args.policy_number, payment)
        except PaymentRefused as err:
            raise UserError(f"payment refused: {err}") from None
    if args.json:
        print(result.model_dump_json())
    elif result.journey_running:
        print(f"payment {args.txn}: {result.outcome}; outstanding ¥{result.outstanding:,.2f}")
    else:
        print(f"payment {args.txn}: no journey running for {args.policy_number}; "
              f"{'recorded' if result.outcome != 'duplicate' else 'already recorded'}, "
              f"outstanding ¥{result.outstanding:,.2f}")
    return 0


def _at(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return value.astimezone(TZ).strftime(fmt) if value else "-"


def money_text(s: JourneyStatus) -> str:
    """Due, paid and outstanding. After a lapse a customer pays the back premium with its
    interest (the reinstatement amount): what was paid beyond the premium due is that
    interest, and the line says so."""
    paid = f"paid ¥{s.amount_paid:,.2f}"
    after_lapse = (s.outcome is Outcome.REINSTATED
                   or s.stage in (Stage.LAPSED, Stage.REINSTATING))
    if after_lapse and s.amount_paid > s.amount_due:
        paid += (f" (back premium ¥{s.amount_due:,.2f} + interest "
                 f"¥{s.amount_paid - s.amount_due:,.2f})")
    return f"due ¥{s.amount_due:,.2f}   {paid}   outstanding ¥{s.outstanding:,.2f}"


def status_card(s: JourneyStatus, sent: list[Delivery]) -> Table:
    """The agent's card: where the policy stands, what was sent, what comes next."""
    card = Table.grid(padding=(0, 2))
    card.add_column(style="bold")
    card.add_column()
    stage = s.stage.value + (f" ({s.outcome.value})" if s.outcome else "")
    card.add_row("Policy", f"{s.policy_number}   trigger {s.trigger}   segments "
                 f"{', '.join(x.value for x in s.segments) or 'standard'}")
    card.add_row("Stage", stage)
    card.add_row("Journey time", _at(s.journey_now))
    card.add_row("Key dates", f"due {s.due_date}   grace ends {s.grace_ends_at or '-'}   "
                 f"lapses {_at(s.lapses_at)}")
    card.add_row("Money", money_text(s))
    for d in s.debit_failures:
        card.add_row("Debit failed", f"{_at(d.failed_at)}  ¥{d.amount:,.2f}  "
                     f"{d.reason_code.value}")
    if s.reinstatement:
        r = s.reinstatement
        card.add_row("Reinstatement", f"¥{r.total:,.2f} today (back premium "
                     f"¥{r.back_premium:,.2f} + interest ¥{r.interest:,.2f}), "
                     f"apply by {r.deadline}")
    if s.next_milestone:
        n = s.next_milestone
        card.add_row("Next", f"{n.name} on {_at(n.at)} by "
                     f"{', '.join(c.value for c in n.channels)}")
    else:
        card.add_row("Next", "-")
    if s.open_inquiries:
        for i in s.open_inquiries:
            card.add_row("Open inquiry", f"{i.inquiry_id} ({i.kind.value}) answer by "
                         f"{_at(i.respond_by)}" + ("  ESCALATED" if i.escalated else ""))
    else:
        card.add_row("Open inquiries", "none")
    messages = Table(title=f"Messages ({len(sent)} records)", title_justify="left",
                     show_edge=False)
    # Dated by the journey moment each message belongs to, like "Journey time" above (not
    # when its record last changed, which under compressed time is months apart).
    for col in ("journey time", "milestone", "channel", "to", "status", "error"):
        # On a narrow terminal a value wraps inside its column; none is cut short.
        messages.add_column(col, overflow="fold")
    for d in sent:
        messages.add_row(_at(d.created_at or d.updated_at), d.milestone, d.channel,
                         d.recipient_role, d.status, explain(d.error_code, d.channel))
    if not sent:
        # No records (another database?): fall back to what the workflow noted.
        for n in s.notifications:
            messages.add_row(_at(n.at), n.milestone, n.channel.value,
                             f"{n.recipients} recipient(s)", n.status, "")
    outer = Table.grid()
    outer.add_row(card)
    outer.add_row("")
    outer.add_row(messages)
    return outer


async def run_status(args: argparse.Namespace, settings) -> int:
    async with database(settings) as pool, temporal(settings) as client:
        journeys = Journeys(client, settings.temporal_task_queue)
        try:
            s = await journeys.status(args.policy_number)
        except JourneyNotRunning:
            raise UserError(f"no journey for policy {args.policy_number}") from None
        sent = await deliveries(pool, await journeys.journey_key(args.policy_number))
    if args.json:
        print(json.dumps({**s.model_dump(mode="json"),
                          "deliveries": [d.model_dump(mode="json") for d in sent]}, indent=2,
                         ensure_ascii=False))
    else:
        card = status_card(s, sent)
        console = Console()
        # Piped or redirected: as wide as the card needs, so no line of it wraps; on a
        # terminal its width (values wrap inside their columns).
        if console.is_terminal:
            console.print(card)
        else:
            Console(width=Console(width=10_000).measure(card).maximum).print(card)
    return 0
