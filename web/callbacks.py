"""Delivery callbacks: Twilio status callbacks and SendGrid Event Webhook events, checked at
the door, their signatures verified, each event recorded once, and a permanent
non-delivery put in the signal outbox as `delivery_failed` so that the journey falls back
to the next channel, even when Temporal is down while the provider calls.

Every request is hostile until proven otherwise, in this order: only the content type the
provider sends (415), UTF-8 only (400), a bounded body (413, before it is read), the
signature (403; SendGrid's signed timestamp within a tolerance), and only then the fields,
each checked for its type and format. A malformed Twilio callback gets 400 and nothing is
stored; a malformed event in a SendGrid batch is skipped and the others are stored. Every
refusal is one log line naming the rule, never the body, which holds phone numbers and
e-mail addresses.
"""

from __future__ import annotations

import binascii
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp import web
from multidict import MultiDict
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

from activities.sendgrid_sender import REFERENCE_ARG
from activities.twilio_sender import STATUS_CALLBACK_PATH
from contract import DELIVERY_FAILED, workflow_id
from domain.journey import DeliveryFailed
from domain.models import Channel
from infra.deliveries import Applied, apply_provider_event
from infra.journeys import Journeys
from infra.outbox import OutboxDrainer, enqueue

log = logging.getLogger("lapse.callbacks")

SENDGRID_EVENTS_PATH = "/callbacks/sendgrid/events"
SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

# A status callback is about 1 KB; SendGrid posts a batch when it reaches 768 KB.
TWILIO_MAX_BODY = 64 * 1024
SENDGRID_MAX_BODY = 1024 * 1024
# How old (or how far ahead) SendGrid's signed timestamp may be: a replayed batch is older.
SENDGRID_TOLERANCE = timedelta(minutes=10)

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

# The formats of what we read from a callback (what our senders give the providers, and
# what the providers document).
REFERENCE = r"^[A-Za-z0-9_-]{1,64}$"
STATUS_WORD = r"^[a-z][a-z_-]{0,31}$"
_FORM_FIELDS = 200  # a status callback has about 20


class _Refused(Exception):
    """A request refused at the door: its HTTP status and the rule it broke (no value)."""

    def __init__(self, status: int, rule: str):
        super().__init__(rule)
        self.status = status
        self.rule = rule


class TwilioStatus(BaseModel):
    """The fields of a status callback that we use: a message's or a call's."""

    model_config = ConfigDict(extra="ignore", strict=True)

    ref: str | None = Field(None, pattern=REFERENCE)
    MessageSid: str | None = Field(None, pattern=r"^(SM|MM)[0-9a-fA-F]{32}$")
    MessageStatus: str | None = Field(None, pattern=STATUS_WORD)
    CallSid: str | None = Field(None, pattern=r"^CA[0-9a-fA-F]{32}$")
    CallStatus: str | None = Field(None, pattern=STATUS_WORD)
    ErrorCode: str | None = Field(None, pattern=r"^[0-9]{0,6}$")


class SendGridEvent(BaseModel):
    """One Event Webhook event, as far as we use it."""

    model_config = ConfigDict(extra="ignore", strict=True)

    sg_event_id: str = Field(pattern=r"^[A-Za-z0-9_=+/.-]{1,100}$")
    event: str = Field(pattern=STATUS_WORD)
    timestamp: int = Field(ge=946684800, le=4102444800)  # 2000 to 2100
    sg_message_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_=+/.-]{1,200}$")
    ref: str | None = Field(None, pattern=REFERENCE, alias=REFERENCE_ARG)
    type: str | None = Field(None, pattern=STATUS_WORD)
    status: str | None = Field(None, pattern=r"^[2-5]\.[0-9]{1,3}\.[0-9]{1,3}$")


def _rule(err: ValidationError) -> str:
    """The first broken field and rule, without the value that broke it."""
    first = err.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'event'}: {first['type']}"


class DeliveryCallbacks:
    """The callback endpoint and its outbox drainer. `public_url` is the base URL providers
    were given (behind a proxy the request's own URL differs from what Twilio signed)."""

    def __init__(self, pool: asyncpg.Pool, journeys: Journeys, *,
                 twilio_auth_token: str | None, sendgrid_public_key: str | None,
                 public_url: str | None = None,
                 sendgrid_tolerance: timedelta = SENDGRID_TOLERANCE):
        self._pool = pool
        self._outbox = OutboxDrainer(pool, journeys)
        self._twilio = RequestValidator(twilio_auth_token) if twilio_auth_token else None
        self._sendgrid = EventWebhook(sendgrid_public_key) if sendgrid_public_key else None
        self._public_url = public_url.rstrip("/") if public_url else None
        self._tolerance = sendgrid_tolerance.total_seconds()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(STATUS_CALLBACK_PATH, self.twilio_status)
        app.router.add_post(SENDGRID_EVENTS_PATH, self.sendgrid_events)
        # The callback process delivers the outbox too, for as long as it serves.
        app.cleanup_ctx.append(self._drain_outbox)

    async def _drain_outbox(self, app: web.Application) -> AsyncIterator[None]:
        async with self._outbox.running():
            yield

    async def twilio_status(self, request: web.Request) -> web.Response:
        try:
            return await self._twilio_status(request)
        except _Refused as refusal:
            return _refusal("twilio", refusal)

    async def sendgrid_events(self, request: web.Request) -> web.Response:
        try:
            return await self._sendgrid_events(request)
        except _Refused as refusal:
            return _refusal("sendgrid", refusal)

    async def _twilio_status(self, request: web.Request) -> web.Response:
        _content_type(request, "application/x-www-form-urlencoded")
        signature = request.headers.get("X-Twilio-Signature")
        if not signature:
            raise _Refused(403, "no signature")
        text = await _text(request, TWILIO_MAX_BODY)
        form = _form(text)
        url = (self._public_url + request.path_qs) if self._public_url else str(request.url)
        if self._twilio is None or not self._twilio.validate(url, form, signature):
            raise _Refused(403, "a bad signature")
        fields = {key: _single(form, key) for key in TwilioStatus.model_fields if key in form}
        if len(request.query.getall("ref", [])) > 1:
            raise _Refused(400, "ref: one value only")
        try:
            callback = TwilioStatus.model_validate({**fields, "ref": request.query.get("ref")})
        except ValidationError as err:
            raise _Refused(400, _rule(err)) from None
        if (callback.MessageSid is None) == (callback.CallSid is None):
            raise _Refused(400, "MessageSid or CallSid: exactly one is required")
        sid = callback.MessageSid or callback.CallSid
        raw = (callback.MessageStatus if callback.MessageSid else callback.CallStatus)
        if raw is None:
            raise _Refused(400, "MessageStatus or CallStatus: required with its sid")
        status = TWILIO_STATUS.get(raw)
        error = callback.ErrorCode or (raw if status == "failed" and callback.CallSid
                                       else None)
        async with self._pool.acquire() as conn, conn.transaction():
            applied = await apply_provider_event(
                conn, ref=callback.ref, provider="twilio", provider_message_id=sid,
                status=status, event=raw, error_code=error,
                provider_event_id=f"twilio:{sid}:{raw}", occurred_at=datetime.now(UTC))
            signalled = await self._after(conn, applied, error or raw,
                                          error not in TWILIO_TRANSIENT_ERRORS)
        if signalled:
            self._outbox.nudge()
        return web.Response(status=200)

    async def _sendgrid_events(self, request: web.Request) -> web.Response:
        _content_type(request, "application/json")
        signature, timestamp = request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP)
        if not signature or not timestamp:
            raise _Refused(403, "no signature")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise _Refused(403, "a malformed signed timestamp")
        if abs(time.time() - int(timestamp)) > self._tolerance:
            raise _Refused(403, "a signed timestamp outside the tolerance")
        text = await _text(request, SENDGRID_MAX_BODY)
        if self._sendgrid is None or not self._verified(text, signature, timestamp):
            raise _Refused(403, "a bad signature")
        try:
            events = json.loads(text)
        except (ValueError, RecursionError):
            raise _Refused(400, "body: not JSON") from None
        if not isinstance(events, list):
            raise _Refused(400, "body: expected a JSON array of events")
        stored = signalled = 0
        async with self._pool.acquire() as conn, conn.transaction():
            # One transaction for the batch, a savepoint per event: SendGrid posts the batch
            # again on any error, and the events already recorded are then recognised by
            # their sg_event_id; one bad event is skipped, not the batch.
            for number, item in enumerate(events, 1):
                try:
                    event = SendGridEvent.model_validate(item)
                except ValidationError as err:
                    log.warning("sendgrid event %d of %d skipped: %s", number, len(events),
                                _rule(err))
                    continue
                try:
                    async with conn.transaction():
                        signalled += await self._record_sendgrid(conn, event)
                except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as err:
                    log.warning("sendgrid event %d of %d skipped: the database refused it "
                                "(%s)", number, len(events), type(err).__name__)
                    continue
                stored += 1
        if signalled:
            self._outbox.nudge()
        return web.Response(status=200, text=f"{stored} of {len(events)} events taken")

    async def _record_sendgrid(self, conn: asyncpg.Connection, event: SendGridEvent) -> bool:
        status = SENDGRID_STATUS.get(event.event)
        error = ((event.status or event.event) if status == "bounced"
                 else ("dropped" if event.event == "dropped" else None))
        message_id = event.sg_message_id.split(".")[0] if event.sg_message_id else None
        applied = await apply_provider_event(
            conn, ref=event.ref, provider="sendgrid", provider_message_id=message_id,
            status=status, event=event.event, error_code=error,
            provider_event_id=f"sendgrid:{event.sg_event_id}",
            occurred_at=datetime.fromtimestamp(event.timestamp, UTC))
        return await self._after(conn, applied, error or event.event, event.type != "blocked")

    def _verified(self, body: str, signature: str, timestamp: str) -> bool:
        try:
            return self._sendgrid.verify_signature(body, signature, timestamp)
        except (ValueError, TypeError, binascii.Error):
            return False

    async def _after(self, conn: asyncpg.Connection, applied: Applied, error: str,
                     permanent: bool) -> bool:
        """Put a permanent non-delivery in the outbox, in the event's transaction: the event
        and its signal are stored together or not at all, and the drainers deliver the
        signal once Temporal answers. True when a signal was enqueued.
        (A repeated signal re-runs a fallback whose records exist: nothing is sent twice.)"""
        if applied.notification is None:
            log.info("callback for an unknown notification ignored")
            return False
        if not applied.became_failed or not permanent:
            return False
        n = applied.notification
        await enqueue(conn, workflow_id(n.policy_number), DELIVERY_FAILED, DeliveryFailed(
            notification_id=n.notification_id, channel=Channel(n.channel),
            error_code=error[:40], permanent=True))
        return True


def _refusal(provider: str, refusal: _Refused) -> web.Response:
    log.warning("%s callback refused (%d): %s", provider, refusal.status, refusal.rule)
    text = ("signature required" if refusal.status == 403
            else f"refused: {refusal.rule}")
    return web.Response(status=refusal.status, text=text)


def _content_type(request: web.Request, expected: str) -> None:
    """Only the media type the provider sends, in UTF-8 (or no charset, which means it)."""
    if request.content_type != expected:
        raise _Refused(415, f"Content-Type: expected {expected}")
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise _Refused(400, "Content-Type: the charset must be utf-8")


async def _text(request: web.Request, limit: int) -> str:
    """The body as text, refused (413) once it is longer than `limit` bytes: by its
    Content-Length before reading, else while it streams in."""
    if request.content_length is not None and request.content_length > limit:
        raise _Refused(413, f"body: more than {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise _Refused(413, f"body: more than {limit} bytes")
    if b"\x00" in body:
        raise _Refused(400, "body: NUL character")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "body: not UTF-8") from None


def _form(text: str) -> MultiDict[str]:
    """A form-encoded body, every value UTF-8 once percent-decoded."""
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8",
                                       errors="strict", max_num_fields=_FORM_FIELDS)
    except UnicodeDecodeError:
        raise _Refused(400, "body: a value is not UTF-8") from None
    except ValueError:
        raise _Refused(400, f"body: more than {_FORM_FIELDS} fields") from None
    return MultiDict(pairs)


def _single(form: MultiDict[str], key: str) -> str:
    values = form.getall(key)
    if len(values) > 1:
        raise _Refused(400, f"{key}: one value only")
    return values[0]
