"""The exact text of one recipient's message, from a send request and the stored policy,
and the insurer's settings every message is written with."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from domain.content.config import PAYMENT_TOKEN_LENGTH, InsurerContact
from domain.content.context import MessageContext, Role, build_context
from domain.content.render import RenderedMessage, check_message
from domain.content.rules import ContentRuleError, Violation
from domain.journey import SendRequest
from domain.models import Customer
from domain.plan import JourneyPlan
from infra.settings import SettingsError
from infra.store import PolicyBundle

INSURER_FILE = "LAPSE_INSURER_FILE"


def load_insurer(path: Path) -> InsurerContact:
    """The insurer's settings from a JSON file (the fields of InsurerContact); the logo and
    seal paths are relative to the file. One line naming the problem when it is bad."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        insurer = InsurerContact.model_validate(data)
    except OSError as exc:
        raise SettingsError(INSURER_FILE, f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SettingsError(INSURER_FILE, f"{path} is not JSON ({exc.msg} at line "
                                          f"{exc.lineno})") from None
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        raise SettingsError(INSURER_FILE, f"{path} field {'.'.join(map(str, err['loc']))}: "
                                          f"{err['msg']}") from None
    images = {}
    for field in ("logo", "seal"):
        image = getattr(insurer, field)
        if image is not None:
            image = image if image.is_absolute() else path.parent / image
            if not image.is_file():
                raise SettingsError(INSURER_FILE, f"{path} field {field}: no such image file")
            images[field] = image
    return insurer.model_copy(update=images)


@cache
def insurer_settings() -> InsurerContact:
    """The insurer of every message: `LAPSE_INSURER_FILE`, or the sample insurer."""
    path = os.environ.get(INSURER_FILE)
    return load_insurer(Path(path)) if path else InsurerContact()


def payment_token(policy_number: str, journey_id: str) -> str:
    """An opaque token for the payment link: it identifies the journey, not the person.

    Base32 (letters and 2-7), not hex: a hex token has a run of 13 digits in about one
    journey in fifty, which the content rules rightly refuse as a possible card number.
    """
    digest = hashlib.sha256(f"{journey_id}:{policy_number}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:PAYMENT_TOKEN_LENGTH]


def message_context(req: SendRequest, bundle: PolicyBundle, customer: Customer,
                    role: str) -> MessageContext:
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
        reinstatement_quote=req.quote, follow_up_month=req.follow_up_month,
        insurer=insurer_settings())
    return ctx.model_copy(update={
        "paid_amount": req.paid_amount, "paid_on": req.paid_on,
        "reinstated_on": req.journey_date if req.message == "reinstatement_approved" else None})


def check_for(req: SendRequest, bundle: PolicyBundle, customer: Customer, role: str
              ) -> tuple[RenderedMessage, list[Violation]]:
    """The message and the rules it breaks: what `lapse plan --messages` shows."""
    return check_message(req.message, req.channel, message_context(req, bundle, customer, role))


def render_for(req: SendRequest, bundle: PolicyBundle, customer: Customer,
               role: str) -> RenderedMessage:
    """The message to send, or ContentRuleError: what the send activity uses."""
    message, violations = check_for(req, bundle, customer, role)
    if violations:
        raise ContentRuleError(message.template_id, violations)
    return message
