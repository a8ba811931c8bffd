"""The sandbox SendGrid: v3 mail send (202 with X-Message-Id) and the signed Event
Webhook (ECDSA with the sandbox's key pair) that reports what became of each e-mail."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sandbox.core import SandboxCore
from sandbox.faults import AFTER_ACCEPT
from sandbox.outbox import OutboxEntry, StoredAttachment

SENDGRID_API_KEY = "SG.sandbox-api-key"
SENDGRID_FROM = "notices@sandbox.example-insurer.cn"
_ARG_QUERY = re.compile(r"""\(?unique_args\['([A-Za-z0-9_-]+)'\]\s*=\s*"([^"]*)"\)?""")


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"errors": [{"message": message, "field": None, "help": None}]},
                             status=status, headers=headers)


class SendGridApi:
    def __init__(self, core: SandboxCore, event_webhook_url: str | None = None):
        self.core = core
        # Where the Event Webhook posts (SendGrid's Mail Settings); None: no events sent.
        self.event_webhook_url = event_webhook_url
        self._signing_key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = base64.b64encode(self._signing_key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo)).decode()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/mail/send", self.core.tracked(self._send))
        app.router.add_get("/v3/messages", self.core.tracked(self._activity))

    async def _activity(self, request: web.Request) -> web.Response:
        """The Email Activity API, for the one query we ask: a custom argument's value
        (`unique_args['ref']="..."`)."""
        if request.headers.get("Authorization") != f"Bearer {SENDGRID_API_KEY}":
            return _error(401, "authorization required")
        match = _ARG_QUERY.fullmatch(request.query.get("query", "").strip())
        if match is None:
            return _error(400, "invalid query: the sandbox answers unique_args['name']=\"value\"")
        name, value = match.groups()
        found = [e for e in reversed(self.core.outbox.entries)
                 if e.api == "email" and e.args.get(name) == value]
        fault = self.core.faults.pick("email", found[0].to if found else "*", "lookup")
        if fault is not None and fault.fault in ("rate_limited", "server_error", "unavailable"):
            if fault.fault == "rate_limited":
                return _error(429, "too many requests", {"Retry-After": f"{fault.retry_after:g}"})
            return _error(500 if fault.fault == "server_error" else 503, "internal error")
        try:
            limit = min(1000, max(1, int(request.query.get("limit", "10"))))
        except ValueError:
            return _error(400, "limit must be a number")
        return web.json_response({"messages": [{
            "from_email": e.sender, "msg_id": f"{e.id}.filterdrecv-sandbox-1.0",
            "subject": e.subject, "to_email": e.to,
            "status": {"bounce": "not_delivered", "dropped": "not_delivered"}.get(
                e.status, "delivered" if e.status == "delivered" else "processing"),
            "opens_count": 0, "clicks_count": 0,
            "last_event_time": (e.history[-1][0] if e.history else e.at).isoformat()}
            for e in found[:limit]]})

    async def _send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SENDGRID_API_KEY}":
            return _error(401, "The provided authorization grant is invalid, expired, or "
                               "revoked")
        try:
            mail = await request.json()
            to = mail["personalizations"][0]["to"][0]["email"]
            subject = mail.get("subject") or mail["personalizations"][0].get("subject")
            contents = {c["type"]: c["value"] for c in mail["content"]}
            sender = mail["from"]["email"]
        except (ValueError, KeyError, IndexError, TypeError):
            return _error(400, "Bad Request: personalizations, from, subject and content are "
                               "required")
        self.core.count("email")
        fault = self.core.faults.pick("email", to)
        if fault is not None and fault.fault == "timeout":
            await asyncio.sleep(fault.delay)
        elif fault is not None and fault.fault not in AFTER_ACCEPT | {"unsubscribed"}:
            if fault.fault == "rate_limited":
                return _error(429, "too many requests", {"Retry-After": f"{fault.retry_after:g}"})
            if fault.fault in ("server_error", "unavailable"):
                return _error(500 if fault.fault == "server_error" else 503, "internal error")
            fault = None  # phone-number faults mean nothing to e-mail
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")[:22]
        args = {**mail.get("custom_args", {}),
                **mail["personalizations"][0].get("custom_args", {})}
        entry = self.core.outbox.add(OutboxEntry(
            id=message_id, api="email", to=to, sender=sender, subject=subject,
            body=contents.get("text/plain") or contents.get("text/html", ""),
            ref=args.get("ref"), args=args,
            attachments=[StoredAttachment(a.get("filename", "attachment"),
                                          base64.b64decode(a["content"]),
                                          a.get("type", "application/octet-stream"))
                         for a in mail.get("attachments", [])]))
        entry.set_status("accepted")
        self.core.later(self._progress(entry, args, mail.get("categories", []),
                                       fault.fault if fault else None))
        return web.Response(status=202, headers={"X-Message-Id": message_id})

    @staticmethod
    def _event(entry: OutboxEntry, args: dict, categories: list, event: str, **extra) -> dict:
        return {"email": entry.to, "timestamp": int(time.time()), "event": event,
                "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22],
                "sg_message_id": f"{entry.id}.filterdrecv-sandbox-1-{uuid.uuid4().hex[:8]}.0",
                "smtp-id": f"<{entry.id}@sandbox.sendgrid.net>", "category": categories,
                **args, **extra}

    async def _progress(self, entry: OutboxEntry, args: dict, categories: list,
                        fault: str | None) -> None:
        if fault == "unsubscribed":
            batches = [[self._event(entry, args, categories, "dropped",
                                    reason="Unsubscribed Address")]]
        else:
            final = (self._event(entry, args, categories, "bounce", type="bounce",
                                 status="5.1.1", bounce_classification="Invalid Address",
                                 reason="550 5.1.1 The email account does not exist.")
                     if fault == "bounce" else
                     self._event(entry, args, categories, "delivered", response="250 OK"))
            batches = [[self._event(entry, args, categories, "processed")], [final]]
        for events in batches:
            await self.core.pause()
            entry.set_status(events[-1]["event"],
                             events[-1].get("status") if fault == "bounce" else None)
            if self.event_webhook_url:
                await self.post_signed_events(self.event_webhook_url, events, entry)

    def sign_events(self, body: str, timestamp: str | None = None) -> dict[str, str]:
        """The headers SendGrid's signed Event Webhook sends with `body`."""
        timestamp = timestamp or str(int(time.time()))
        signature = self._signing_key.sign((timestamp + body).encode(),
                                           ec.ECDSA(hashes.SHA256()))
        return {"Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}

    async def post_signed_events(self, url: str, events: list[dict],
                                 entry: OutboxEntry | None = None) -> int:
        body = json.dumps(events, ensure_ascii=False)
        status, _ = await self.core.post(entry, url, data=body.encode(),
                                         headers=self.sign_events(body))
        return status
