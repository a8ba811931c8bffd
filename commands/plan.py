"""`lapse plan`: the dated timeline a journey would follow for a policy, before it starts,
and with `--messages` the exact texts, rendered by the send activity's own path."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

from activities.content import check_for, insurer_settings
from commands.common import UserError, command, database
from commands.messages_view import EMERGENCY_KEY, Shown, messages_preview
from commands.plan_view import plan_json, plan_table
from domain.calendar import BusinessCalendar
from domain.content import ContentRuleError
from domain.journey import RecipientScope, SendRequest
from domain.models import Channel, Policy, Product, ProductKind, Trigger, TriggerKind
from domain.plan import TZ, ChannelSlot, JourneyPlan, PlannedMilestone
from domain.planner import plan_journey
from domain.policy_file import PolicyFileError, parse_policy_file
from domain.reinstatement import Due, ReinstatementQuote, journey_quote, premium_schedule
from domain.triggers import detect_trigger, elderly_from, segments_for
from infra import store
from infra.store import PolicyBundle

PREVIEW_JOURNEY = "preview"


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


def make_plan(bundle: PolicyBundle, calendar: BusinessCalendar,
              starts_at: datetime) -> tuple[JourneyPlan, Trigger]:
    """The plan and the trigger the journey would start with (a failed debit included)."""
    trigger, note = trigger_for(bundle.policy, bundle.product, starts_at.date())
    segments = segments_for(bundle.policy, bundle.product, bundle.policyholder,
                            starts_at.date())
    plan = plan_journey(trigger, bundle.product, segments, calendar, starts_at=starts_at,
                        elderly_from=elderly_from(bundle.product, bundle.policyholder))
    if note:
        plan = plan.model_copy(update={"warnings": [note, *plan.warnings]})
    return plan, trigger


def preview_quote(bundle: PolicyBundle, plan: JourneyPlan, trigger: Trigger,
                  at: datetime) -> ReinstatementQuote | None:
    """What the journey quotes at `at`: once lapsed, within the reinstatement period."""
    deadline = plan.reinstatement_deadline
    if (deadline is None or plan.lapses_at is None or at < plan.lapses_at
            or at.astimezone(TZ).date() > deadline):
        return None
    return journey_quote(open_dues=[Due(due_date=trigger.due_date, amount=trigger.amount_due)],
                         schedule=premium_schedule(bundle.policy, bundle.product),
                         paid=Decimal("0"), on=at.astimezone(TZ).date(),
                         rate=bundle.product.rules.reinstatement_interest_rate,
                         insurer_fault=trigger.insurer_fault, deadline=deadline)


def preview_request(bundle: PolicyBundle, plan: JourneyPlan, trigger: Trigger,
                    milestone: PlannedMilestone, slot: ChannelSlot,
                    scope: RecipientScope, message: str | None = None) -> SendRequest:
    """The request the journey's workflow makes for one message: the one place the
    preview builds it, so it follows SendRequest wherever the workflow does."""
    return SendRequest(
        journey_id=PREVIEW_JOURNEY, policy_number=plan.policy_number,
        milestone_key=milestone.key, message=message or milestone.kind.value,
        channel=slot.channel, scope=scope, journey_date=slot.at.astimezone(TZ).date(),
        journey_at=slot.at, trigger=trigger, outstanding=trigger.amount_due,
        segments=plan.segments, grace_ends_on=plan.grace_ends_on, lapses_on=plan.lapses_on,
        reinstatement_deadline=plan.reinstatement_deadline, follow_up_month=milestone.index,
        quote=preview_quote(bundle, plan, trigger, slot.at))


def shown_messages(bundle: PolicyBundle, plan: JourneyPlan, trigger: Trigger) -> list[Shown]:
    """Every message of the plan for every reader, rendered by the send activity's path."""
    holder = bundle.policyholder
    readers: list[tuple[RecipientScope, str, object]] = [
        ("policyholder", "group_employer" if holder.is_organisation else "policyholder",
         holder)]
    readers += [("members", "group_member", m) for m in bundle.insured
                if bundle.policy.is_group]
    shown = []
    for scope, role, customer in readers:
        for milestone in plan.milestones:
            for slot in milestone.slots:
                req = preview_request(bundle, plan, trigger, milestone, slot, scope)
                shown.append(_shown(req, bundle, customer, role))
    if holder.emergency_contact is not None and plan.milestones:
        # Sent only when the policyholder cannot be reached: shown for the first milestone.
        first = plan.milestones[0].model_copy(update={"key": EMERGENCY_KEY})
        for channel in (Channel.SMS, Channel.VOICE):
            slot = ChannelSlot(channel=channel, at=first.at)
            req = preview_request(bundle, plan, trigger, first, slot, "emergency_contact",
                                  message="emergency_contact")
            shown.append(_shown(req, bundle, holder, "emergency_contact"))
    return shown


def _shown(req: SendRequest, bundle: PolicyBundle, customer, role: str) -> Shown:
    try:
        message, violations = check_for(req, bundle, customer, role)
    except ContentRuleError as err:
        return Shown(req, role, None, err.violations)
    return Shown(req, role, message, violations)


def _bundles_from_file(path: Path) -> list[PolicyBundle]:
    try:
        parsed = parse_policy_file(path.read_text(encoding="utf-8").splitlines(), str(path),
                                   insurer=insurer_settings())
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except PolicyFileError as exc:
        raise UserError(str(exc)) from None
    return [PolicyBundle(policy=p, product=parsed.products[p.product_code],
                         policyholder=parsed.customers[p.policyholder_id],
                         insured=[parsed.customers[i] for i in p.member_ids or p.insured_ids])
            for p in parsed.policies.values()]


async def run(args: argparse.Namespace, settings) -> int:
    starts_at = (datetime.combine(args.as_of, time(0, 0), TZ) if args.as_of
                 else datetime.now(TZ))
    async with database(settings) as pool, pool.acquire() as conn:
        calendar = BusinessCalendar(await store.load_calendar_years(conn))
        if args.policy_file:
            bundles = _bundles_from_file(args.policy_file)
        else:
            bundles = [await store.load_policy(conn, args.policy_number,
                                               with_members=args.messages)]
    plans: list[JourneyPlan] = []
    previews: list[str] = []
    for bundle in bundles:
        plan, trigger = make_plan(bundle, calendar, starts_at)
        plans.append(plan)
        if args.messages:
            previews.append(messages_preview(plan, shown_messages(bundle, plan, trigger),
                                             bundle.product.rules.sms_segment_budget))
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
