"""The exact text of one recipient's message, from a send request and the stored policy."""

from __future__ import annotations

import base64
import hashlib

from domain.content.context import Role, build_context
from domain.content.render import RenderedMessage, render_message
from domain.journey import SendRequest
from domain.models import Customer
from domain.plan import JourneyPlan
from infra.store import PolicyBundle


def payment_token(policy_number: str, journey_id: str) -> str:
    """An opaque token for the payment link: it identifies the journey, not the person.

    Base32 (letters and 2-7), not hex: a hex token has a run of 13 digits in about one
    journey in fifty, which the content rules rightly refuse as a possible card number.
    """
    digest = hashlib.sha256(f"{journey_id}:{policy_number}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:20]


def render_for(req: SendRequest, bundle: PolicyBundle, customer: Customer,
               role: str) -> RenderedMessage:
    # The dates come from the journey's own plan (in the request), never re-planned here.
    plan = JourneyPlan(
        policy_number=req.policy_number, trigger=req.trigger.kind, segments=req.segments,
        due_date=req.trigger.due_date, grace_ends_on=req.grace_ends_on,
        lapses_on=req.lapses_on, lapses_at=None,
        reinstatement_deadline=req.reinstatement_deadline, milestones=[])
    recipient = customer.emergency_contact if role == "emergency_contact" else customer
    ctx = build_context(
        policy=bundle.policy, product=bundle.product, trigger=req.trigger, plan=plan,
        recipient=recipient, issued_on=req.journey_date, role=Role(role),
        policyholder=bundle.policyholder, amount_due=req.outstanding,
        payment_token=payment_token(req.policy_number, req.journey_id),
        reinstatement_quote=req.quote,
        follow_up_month=req.follow_up_month)
    ctx = ctx.model_copy(update={
        "paid_amount": req.paid_amount, "paid_on": req.paid_on,
        "reinstated_on": req.journey_date if req.message == "reinstatement_approved" else None})
    return render_message(req.message, req.channel, ctx)
