"""`lapse plan`: the dated timeline a journey would follow for a policy, before it starts."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, time
from pathlib import Path

from activities.content import payment_token
from commands.common import UserError, command, database
from commands.messages_view import messages_preview
from commands.plan_view import plan_json, plan_table
from domain.calendar import BusinessCalendar
from domain.content import MessageContext, Role, build_context
from domain.models import Customer, Policy, Product, ProductKind, Trigger, TriggerKind
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
    p.add_argument("--messages", action="store_true",
                   help="add the exact text of every message, for compliance review")
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


def message_contexts(policy: Policy, product: Product, holder: Customer,
                     members: list[Customer], plan: JourneyPlan) -> list[MessageContext]:
    """Who reads the journey's messages: the policyholder (or employer), each group
    member, and the emergency contact (one message, only if the holder is unreachable)."""
    trigger, _ = trigger_for(policy, product, plan.due_date)
    common = {"policy": policy, "product": product, "trigger": trigger, "plan": plan,
              "issued_on": plan.due_date, "policyholder": holder,
              "payment_token": payment_token(policy.policy_number, "preview")}
    contexts = [build_context(recipient=holder, role=Role.GROUP_EMPLOYER if policy.is_group
                              else Role.POLICYHOLDER, **common)]
    contexts += [build_context(recipient=m, role=Role.GROUP_MEMBER, **common) for m in members]
    if holder.emergency_contact is not None:
        contexts.append(build_context(recipient=holder.emergency_contact,
                                      role=Role.EMERGENCY_CONTACT, **common))
    return contexts


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
    previews: list[str] = []
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
                product = parsed.products[policy.product_code]
                holder = parsed.customers[policy.policyholder_id]
                plans.append(make_plan(policy, product, holder, calendar, starts_at))
                if args.messages:
                    members = [parsed.customers[i] for i in policy.member_ids]
                    previews.append(messages_preview(plans[-1], message_contexts(
                        policy, product, holder, members, plans[-1])))
        else:
            bundle = await store.load_policy(conn, args.policy_number,
                                             with_members=args.messages)
            plans.append(make_plan(bundle.policy, bundle.product, bundle.policyholder,
                                   calendar, starts_at))
            if args.messages:
                members = bundle.insured if bundle.policy.is_group else []
                previews.append(messages_preview(plans[-1], message_contexts(
                    bundle.policy, bundle.product, bundle.policyholder, members, plans[-1])))
    if args.json:
        out = [json.loads(plan_json(p)) for p in plans]
        for item, preview in zip(out, previews, strict=False):
            item["messages_preview"] = preview
        print(json.dumps(out, ensure_ascii=False, indent=2))
    elif previews:
        print("\n\n".join(f"{plan_table(p)}\n\n{m}" for p, m in zip(plans, previews,
                                                                    strict=True)))
    else:
        print("\n\n".join(plan_table(p) for p in plans))
    return 0
