"""Delivery callbacks: Twilio status callbacks and SendGrid Event Webhook events, their
signatures verified, each event recorded once, and a permanent non-delivery signalled to
the journey as `delivery_failed` so that it falls back to the next channel.

Refused requests (no or a bad signature) get 403 and are logged without their body, which
holds phone numbers and e-mail addresses.
"""

from __future__ import annotations

import binascii
import json
import logging
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

from activities.sendgrid_sender import REFERENCE_ARG
from activities.twilio_sender import STATUS_CALLBACK_PATH
from domain.journey import DeliveryFailed
from domain.models import Channel
from infra.deliveries import Applied, apply_provider_event
from infra.signals import JourneySignals

log = logging.getLogger("lapse.callbacks")

SENDGRID_EVENTS_PATH = "/callbacks/sendgrid/events"
SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

# Twilio message and call statuses as ours; None: history only.
TWILIO_STATUS = {
    "sent": "sent", "delivered": "delivered", "undelivered": "failed", "failed": "failed",
    "in-progress": "delivered", "completed": "delivered", "busy": "failed",
    "no-answer": "failed", "canceled": "failed",
}
# Delivery errors that say nothing about the recipient (Twilio's queue overflowed).
TWILIO_TRANSIENT_ERRORS = frozenset({"30001"})
SENDGRID_STATUS = {"processed": "sent", "delivered": "delivered", "bounce": "bounced",
                   "dropped": "failed"}


class DeliveryCallbacks:
    """The callback endpoint. `public_url` is the base URL providers were given (behind a
    proxy the request's own URL differs from what Twilio signed)."""

    def __init__(self, pool: asyncpg.Pool, signals: JourneySignals, *,
                 twilio_auth_token: str | None, sendgrid_public_key: str | None,
                 public_url: str | None = None):
        self._pool = pool
        self._signals = signals
        self._twilio = RequestValidator(twilio_auth_token) if twilio_auth_token else None
        self._sendgrid = EventWebhook(sendgrid_public_key) if sendgrid_public_key else None
        self._public_url = public_url.rstrip("/") if public_url else None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(STATUS_CALLBACK_PATH, self.twilio_status)
        app.router.add_post(SENDGRID_EVENTS_PATH, self.sendgrid_events)

    @staticmethod
    def _refuse(provider: str, why: str) -> web.Response:
        log.warning("%s callback refused: %s signature", provider, why)
        return web.Response(status=403, text="signature required")

    async def twilio_status(self, request: web.Request) -> web.Response:
        signature = request.headers.get("X-Twilio-Signature")
        if not signature:
            return self._refuse("twilio", "no")
        form = await request.post()
        url = (self._public_url + request.path_qs) if self._public_url else str(request.url)
        if self._twilio is None or not self._twilio.validate(url, form, signature):
            return self._refuse("twilio", "a bad")
        sid = form.get("MessageSid") or form.get("CallSid") or ""
        raw = form.get("MessageStatus") or form.get("CallStatus") or ""
        status = TWILIO_STATUS.get(raw)
        error = form.get("ErrorCode") or (raw if status == "failed" and "CallSid" in form
                                           else None)
        async with self._pool.acquire() as conn, conn.transaction():
            applied = await apply_provider_event(
                conn, ref=request.query.get("ref"), provider="twilio",
                provider_message_id=sid or None, status=status, event=raw, error_code=error,
                provider_event_id=f"twilio:{sid}:{raw}", occurred_at=datetime.now(UTC))
            await self._after(applied, error or raw, error not in TWILIO_TRANSIENT_ERRORS)
        return web.Response(status=200)

    async def sendgrid_events(self, request: web.Request) -> web.Response:
        signature, timestamp = request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP)
        if not signature or not timestamp:
            return self._refuse("sendgrid", "no")
        body = await request.text()
        if self._sendgrid is None or not self._verified(body, signature, timestamp):
            return self._refuse("sendgrid", "a bad")
        try:
            events = json.loads(body)
            if not isinstance(events, list):
                raise ValueError
        except ValueError:
            return web.Response(status=400, text="expected a JSON array of events")
        async with self._pool.acquire() as conn, conn.transaction():
            # One transaction for the batch: SendGrid posts it again on any error, and the
            # events already recorded are then recognised by their sg_event_id.
            for event in events:
                if not isinstance(event, dict) or not event.get("sg_event_id"):
                    continue
                kind = str(event.get("event", ""))
                status = SENDGRID_STATUS.get(kind)
                error = (str(event.get("status") or kind) if status == "bounced"
                         else ("dropped" if kind == "dropped" else None))
                message_id = str(event.get("sg_message_id", "")).split(".")[0] or None
                applied = await apply_provider_event(
                    conn, ref=event.get(REFERENCE_ARG), provider="sendgrid",
                    provider_message_id=message_id, status=status, event=kind,
                    error_code=error, provider_event_id=f"sendgrid:{event['sg_event_id']}",
                    occurred_at=_timestamp(event.get("timestamp")))
                await self._after(applied, error or kind, event.get("type") != "blocked")
        return web.Response(status=200)

    def _verified(self, body: str, signature: str, timestamp: str) -> bool:
        try:
            return self._sendgrid.verify_signature(body, signature, timestamp)
        except (ValueError, TypeError, binascii.Error):
            return False

    async def _after(self, applied: Applied, error: str, permanent: bool) -> None:
        """Tell the journey about a permanent non-delivery, inside the event's transaction:
        if the signal fails, the provider's retry finds the event unrecorded and tries again.
        (A repeated signal re-runs a fallback whose records exist: nothing is sent twice.)"""
        if applied.notification is None:
            log.info("callback for an unknown notification ignored")
            return
        if not applied.became_failed or not permanent:
            return
        n = applied.notification
        await self._signals.send(n.policy_number, "delivery_failed", DeliveryFailed(
            notification_id=n.notification_id, channel=Channel(n.channel),
            error_code=error[:40], permanent=True))


def _timestamp(value) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return datetime.now(UTC)
