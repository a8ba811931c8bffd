"""Keys pressed during an automated call (Twilio <Gather>): the signature verified, the
choice recorded, and the TwiML that answers it (an agent, or the amount said again)."""

from __future__ import annotations

import logging
import re
from datetime import datetime

import asyncpg
from aiohttp import web
from twilio.request_validator import RequestValidator

from activities.twilio_sender import (
    GATHER_PATH,
    dial_twiml,
    gather_url,
    hangup_twiml,
    menu_twiml,
)
from domain.branches import nearest_branch
from domain.content.config import InsurerContact
from domain.plan import TZ
from domain.voice_menu import (
    CONNECTING,
    GOODBYE,
    NOT_OFFERED,
    CallChoice,
    amount_sentence,
    choice_for,
    menu_for,
)
from infra import store
from infra.agent_tasks import open_home_visit
from infra.branches import load_branches
from infra.deliveries import called_notification
from infra.outreach import record_call_choice

log = logging.getLogger("lapse.gather")

_REF = re.compile(r"^[0-9a-f]{8,64}$")
_DIGITS = re.compile(r"^[0-9*#]{0,8}$")
_CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")


def hotline_number(insurer: InsurerContact | None = None) -> str:
    """The insurer's hotline as a number to dial (400-800-1234 -> +864008001234)."""
    return "+86" + "".join(ch for ch in (insurer or InsurerContact()).hotline if ch.isdigit())


def _twiml(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/xml")


class CallChoices:
    """The Gather endpoint. `public_url` is the base URL Twilio was given (behind a proxy
    the request's own URL differs from what Twilio signed); `agent_number` is where a
    caller who presses 1 is connected (the hotline or an agent queue, E.164)."""

    def __init__(self, pool: asyncpg.Pool, *, twilio_auth_token: str | None, agent_number: str,
                 public_url: str | None = None):
        self._pool = pool
        self._twilio = RequestValidator(twilio_auth_token) if twilio_auth_token else None
        self._agent = agent_number
        self._branches = None  # loaded on the first elderly caller who asks for help
        self._public_url = public_url.rstrip("/") if public_url else None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(GATHER_PATH, self.gathered)

    async def _visit_if_elderly(self, conn, called) -> None:
        """An elderly policyholder who asks for an agent gets a home-visit task for the
        branch nearest the postal address, besides being connected."""
        if called.recipient_role != "policyholder":
            return
        bundle = await store.load_policy(conn, called.policy_number, with_members=False)
        holder = bundle.policyholder
        if holder.is_organisation or holder.age_on(datetime.now(TZ).date()) < \
                bundle.product.rules.elderly_age:
            return
        if self._branches is None:
            self._branches = load_branches()
        branch = nearest_branch(holder.postal_address, self._branches)
        await open_home_visit(conn, called.journey_id, called.policy_number,
                              called.notification_id, branch.code)

    async def gathered(self, request: web.Request) -> web.Response:
        signature = request.headers.get("X-Twilio-Signature")
        form = await request.post()
        url = (self._public_url + request.path_qs) if self._public_url else str(request.url)
        if not signature or self._twilio is None or not self._twilio.validate(
                url, form, signature):
            log.warning("gather refused: %s signature", "a bad" if signature else "no")
            return web.Response(status=403, text="signature required")
        ref, digits, sid = (request.query.get("ref", ""), form.get("Digits", ""),
                            form.get("CallSid", ""))
        if not (isinstance(digits, str) and isinstance(sid, str) and _REF.match(ref)
                and _DIGITS.match(digits) and _CALL_SID.match(sid)):
            log.warning("gather refused: malformed reference, digits or call sid")
            return web.Response(status=400, text="expected ref, Digits and CallSid")
        async with self._pool.acquire() as conn:
            called = await called_notification(conn, ref)
            if called is None:
                log.info("gather for an unknown notification: goodbye")
                return _twiml(hangup_twiml(GOODBYE))
            options = menu_for(called.template_id)
            choice = choice_for(digits, options)
            await record_call_choice(conn, called.notification_id, sid, digits, choice.value)
            action = gather_url(self._public_url or str(request.url.origin()), ref)
            if choice is CallChoice.AGENT:
                await self._visit_if_elderly(conn, called)
                return _twiml(dial_twiml(CONNECTING, self._agent))
            if choice is CallChoice.REPEAT_AMOUNT:
                bundle = await store.load_policy(conn, called.policy_number, with_members=False)
                return _twiml(menu_twiml(amount_sentence(bundle.policy.outstanding), action,
                                         options))
            return _twiml(menu_twiml(NOT_OFFERED, action, options))
