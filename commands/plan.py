"""`lapse plan`: the dated timeline a journey would follow for a policy, before it starts."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, time
from pathlib import Path

from commands.common import UserError, command, database
from commands.plan_view import plan_json, plan_table
from domain.calendar import BusinessCalendar
from domain.models import Policy, Product, ProductKind, Trigger, TriggerKind
from domain.plan import TZ, JourneyPlan
from domain.planner import plan_journey
from domain.policy_file import PolicyFileError, parse_policy_file
from domain.triggers import detect_trigger, segments_for
from infra import store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="show the dated timeline a journey would follow")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("policy_number", nargs="?", help="a policy in the database")
    target.add_argument("--policy-file", type=Path,
                        help="plan every policy of a policy file (nothing is stored)")
    p.add_argument("--as-of", type=date.fromisoformat, metavar="YYYY-MM-DD",
                   help="plan as if the journey started on this day (default: now)")
    p.add_argument("--json", action="store_true", help="print the plans as JSON")
    p.set_defaults(func=command(run))


def trigger_for(policy: Policy, product: Product, as_of: date) -> tuple[Trigger, str | None]:
    """The policy's trigger on `as_of`; a policy not at risk gets the unpaid-premium one."""
    trigger = detect_trigger(policy, product, as_of)
    if trigger is not None:
        return trigger, None
    kind = (TriggerKind.RENEWAL_UNPAID if product.kind is ProductKind.SHORT_TERM
            else TriggerKind.PREMIUM_OVERDUE)
    note = (f"policy {policy.policy_number} is not at risk on {as_of}: this is the timeline "
            "if its premium stays unpaid")
    return Trigger(kind=kind, policy_number=policy.policy_number, due_date=policy.due_date,
                   amount_due=policy.outstanding or policy.premium), note


def make_plan(policy: Policy, product: Product, holder, calendar: BusinessCalendar,
              starts_at: datetime) -> JourneyPlan:
    trigger, note = trigger_for(policy, product, starts_at.date())
    segments = segments_for(policy, product, holder, starts_at.date())
    plan = plan_journey(trigger, product, segments, calendar, starts_at=starts_at)
    if note:
        plan = plan.model_copy(update={"warnings": [note, *plan.warnings]})
    return plan


async def run(args: argparse.Namespace, settings) -> int:
    starts_at = (datetime.combine(args.as_of, time(0, 0), TZ) if args.as_of
                 else datetime.now(TZ))
    plans: list[JourneyPlan] = []
    async with database(settings) as pool, pool.acquire() as conn:
        calendar = BusinessCalendar(await store.load_calendar_years(conn))
        if args.policy_file:
            try:
                parsed = parse_policy_file(args.policy_file.read_text(encoding="utf-8")
                                           .splitlines(), str(args.policy_file))
            except OSError as exc:
                raise UserError(f"cannot read {args.policy_file}: {exc.strerror}") from None
            except PolicyFileError as exc:
                raise UserError(str(exc)) from None
            for policy in parsed.policies.values():
                plans.append(make_plan(policy, parsed.products[policy.product_code],
                                       parsed.customers[policy.policyholder_id], calendar,
                                       starts_at))
        else:
            bundle = await store.load_policy(conn, args.policy_number, with_members=False)
            plans.append(make_plan(bundle.policy, bundle.product, bundle.policyholder,
                                   calendar, starts_at))
    if args.json:
        print(json.dumps([json.loads(plan_json(p)) for p in plans], ensure_ascii=False,
                         indent=2))
    else:
        print("\n\n".join(plan_table(p) for p in plans))
    return 0
