"""The sandbox providers: the parts of the Twilio, SendGrid and WeChat HTTP APIs that
their clients call, an outbox to read in a browser, failure injection, and delivery
callbacks signed the way the real providers sign them."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from html import unescape
from urllib.parse import parse_qs, quote, unquote, urlsplit

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import TypeAdapter, ValidationError
from twilio.request_validator import RequestValidator

from sandbox.faults import AFTER_ACCEPT, DEFAULT_FAULTS, Fault, Faults
from sandbox.outbox import (
    Describe,
    Outbox,
    OutboxEntry,
    StoredAttachment,
    index_page,
    messages_page,
)

log = logging.getLogger("lapse.sandbox")

# The sandbox's own credentials: the real clients authenticate with these.
TWILIO_ACCOUNT_SID = "AC" + "5a" * 16
TWILIO_AUTH_TOKEN = "sandbox-twilio-auth-token"
TWILIO_FROM_NUMBER = "+8610100000000"
SENDGRID_API_KEY = "SG.sandbox-api-key"
SENDGRID_FROM = "notices@sandbox.example-insurer.cn"
WECHAT_APP_ID = "wxsandbox00000000"
WECHAT_APP_SECRET = "sandbox-wechat-secret"

_SAY = re.compile(r"<Say[^>]*>(.*?)</Say>", re.S)
_FAULT_LIST = TypeAdapter(list[Fault])


def _twilio_error(status: int, code: int, message: str, headers: dict | None = None
                  ) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"},
                             status=status, headers=headers)


def _sendgrid_error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"errors": [{"message": message, "field": None, "help": None}]},
                             status=status, headers=headers)


class Sandbox:
    """One sandbox for all three providers. Mount it on an app with `add_routes`."""

    def __init__(self, *, faults: list[Fault] | None = None, seed: int = 0,
                 event_webhook_url: str | None = None, callback_delay: float = 0.0,
                 token_ttl: int = 7200, describe: Describe | None = None):
        self.outbox = Outbox()
        self.faults = Faults(DEFAULT_FAULTS if faults is None else faults, seed)
        self.event_webhook_url = event_webhook_url
        self.callback_delay = callback_delay
        self.token_ttl = token_ttl
        self.describe = describe
        self._signing_key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = base64.b64encode(self._signing_key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
        self._tokens: dict[str, float] = {}
        self._work: set[asyncio.Task] = set()
        self._http: aiohttp.ClientSession | None = None
        self._msgid = 200_000_000
        self._callbacks_open = asyncio.Event()
        self._callbacks_open.set()
        self.requests: dict[str, int] = {"sms": 0, "voice": 0, "email": 0, "wechat": 0}

    # --- wiring -------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        tracked = self._tracked
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json",
                            tracked(self._twilio_message))
        app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", tracked(self._twilio_call))
        app.router.add_post("/v3/mail/send", tracked(self._sendgrid_send))
        app.router.add_get("/cgi-bin/token", tracked(self._wechat_token))
        app.router.add_post("/cgi-bin/message/template/send", tracked(self._wechat_send))
        app.router.add_get("/sandbox/faults", self._faults_get)
        app.router.add_post("/sandbox/faults", self._faults_add)
        app.router.add_delete("/sandbox/faults", self._faults_clear)
        app.router.add_get("/sandbox/messages", self._messages_json)
        app.router.add_delete("/sandbox/messages", self._messages_clear)
        app.router.add_get("/sandbox/keys", self._keys)
        app.router.add_get("/outbox", self._outbox_index)
        app.router.add_get("/outbox/to/{to}", self._outbox_to)
        app.router.add_get("/outbox/policy/{policy}", self._outbox_policy)
        app.router.add_get("/outbox/attachment/{id}/{index}", self._outbox_attachment)
        app.on_cleanup.append(lambda _app: self.close())

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        self.add_routes(app)
        return app

    def _tracked(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        async def run(request: web.Request) -> web.StreamResponse:
            task = asyncio.current_task()
            self._work.add(task)
            try:
                return await handler(request)
            finally:
                self._work.discard(task)
        return run

    def _later(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    def pause_callbacks(self) -> None:
        """Hold delivery callbacks back (they queue) until `resume_callbacks`."""
        self._callbacks_open.clear()

    def resume_callbacks(self) -> None:
        self._callbacks_open.set()

    async def settle(self) -> None:
        """Wait until every request in flight is answered and every callback delivered."""
        me = asyncio.current_task()
        while pending := [t for t in self._work if t is not me and not t.done()]:
            await asyncio.wait(pending)

    async def close(self) -> None:
        for task in list(self._work):
            task.cancel()
        if self._http is not None:
            await self._http.close()

    # --- failure injection ----------------------------------------------------------------

    async def _fault_now(self, api: str, recipient: str) -> tuple[Fault | None, Fault | None]:
        """The rule hit by this request: one that answers now, or one reported later."""
        fault = self.faults.pick(api, recipient)
        if fault is None:
            return None, None
        if fault.fault in AFTER_ACCEPT:
            return None, fault
        if fault.fault == "timeout":
            await asyncio.sleep(fault.delay)  # then accept, as a slow provider does
            return None, None
        return fault, None

    # --- Twilio -------------------------------------------------------------------------

    def _twilio_authorised(self, request: web.Request) -> bool:
        try:
            auth = aiohttp.BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return False
        return (auth.login == TWILIO_ACCOUNT_SID == request.match_info["sid"]
                and secrets.compare_digest(auth.password, TWILIO_AUTH_TOKEN))

    @staticmethod
    def _twilio_refusal(fault: Fault) -> web.Response:
        if fault.fault == "rate_limited":
            return _twilio_error(429, 20429, "Too Many Requests",
                                 {"Retry-After": f"{fault.retry_after:g}"})
        if fault.fault == "server_error":
            return _twilio_error(500, 20500, "Internal Server Error")
        if fault.fault == "unavailable":
            return _twilio_error(503, 20503, "Service Unavailable")
        if fault.fault == "unsubscribed":
            return _twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        return _twilio_error(400, 21211, "The 'To' number is not a valid phone number.")

    def _twilio_resource(self, kind: str, sid: str, form, status: str) -> dict:
        now = format_datetime(datetime.now(UTC))
        base = {"sid": sid, "account_sid": TWILIO_ACCOUNT_SID, "api_version": "2010-04-01",
                "to": form.get("To"), "from": form.get("From"), "status": status,
                "direction": "outbound-api", "date_created": now, "date_updated": now,
                "price": None, "price_unit": "USD",
                "uri": f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/{kind}/{sid}.json"}
        if kind == "Messages":
            base.update({"body": form.get("Body"), "num_segments": "1", "num_media": "0",
                         "error_code": None, "error_message": None, "date_sent": None,
                         "messaging_service_sid": None})
        else:
            base.update({"start_time": None, "end_time": None, "duration": None,
                         "parent_call_sid": None, "answered_by": None})
        return base

    async def _twilio_message(self, request: web.Request) -> web.Response:
        if not self._twilio_authorised(request):
            return _twilio_error(401, 20003, "Authenticate")
        form = await request.post()
        to, body = form.get("To"), form.get("Body")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        self.requests["sms"] += 1
        refusal, later = await self._fault_now("sms", to)
        if refusal is not None:
            return self._twilio_refusal(refusal)
        sid = "SM" + uuid.uuid4().hex
        callback = form.get("StatusCallback")
        entry = self.outbox.add(OutboxEntry(
            id=sid, api="sms", to=to, sender=form.get("From", ""), body=body,
            callback_url=callback, ref=_ref_of(callback)))
        entry.set_status("queued")
        final = ("undelivered", "30003") if later and later.fault == "undelivered" \
            else ("delivered", None)
        self._later(self._twilio_progress(entry, "MessageStatus", [("sent", None), final],
                                          {"MessageSid": sid, "SmsSid": sid}))
        return web.json_response(self._twilio_resource("Messages", sid, form, "queued"),
                                 status=201)

    async def _twilio_call(self, request: web.Request) -> web.Response:
        if not self._twilio_authorised(request):
            return _twilio_error(401, 20003, "Authenticate")
        form = await request.post()
        to, twiml = form.get("To"), form.get("Twiml")
        if not to:
            return _twilio_error(400, 21201, "No 'To' number is specified")
        if not twiml and not form.get("Url"):
            return _twilio_error(400, 21205, "Url or Twiml parameter is required.")
        self.requests["voice"] += 1
        refusal, later = await self._fault_now("voice", to)
        if refusal is not None:
            return self._twilio_refusal(refusal)
        sid = "CA" + uuid.uuid4().hex
        callback = form.get("StatusCallback")
        said = [unescape(s) for s in _SAY.findall(twiml or "")]
        entry = self.outbox.add(OutboxEntry(
            id=sid, api="voice", to=to, sender=form.get("From", ""),
            body=said[0] if said else "(TwiML from a URL)", twiml=twiml,
            callback_url=callback, ref=_ref_of(callback)))
        entry.set_status("queued")
        wanted = set(form.getall("StatusCallbackEvent", [])) | {"completed"}
        steps = [("initiated", None), ("ringing", None)]
        if later and later.fault in ("busy", "no_answer"):
            steps.append(("busy" if later.fault == "busy" else "no-answer", None))
        else:
            steps += [("in-progress", None), ("completed", None)]
        event_of = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}
        steps = [s for s in steps if event_of.get(s[0], "completed") in wanted]
        self._later(self._twilio_progress(entry, "CallStatus", steps, {"CallSid": sid}))
        return web.json_response(self._twilio_resource("Calls", sid, form, "queued"),
                                 status=201)

    async def _twilio_progress(self, entry: OutboxEntry, field: str,
                               steps: list[tuple[str, str | None]], ids: dict) -> None:
        for number, (status, error) in enumerate(steps):
            if self.callback_delay:
                await asyncio.sleep(self.callback_delay)
            entry.set_status(status, error)
            if not entry.callback_url:
                continue
            params = {**ids, "AccountSid": TWILIO_ACCOUNT_SID, field: status,
                      "To": entry.to, "From": entry.sender, "ApiVersion": "2010-04-01",
                      "SequenceNumber": str(number)}
            if field == "MessageStatus":
                params["SmsStatus"] = status
            if error:
                params["ErrorCode"] = error
            if status == "completed":
                params["CallDuration"] = "42"
            signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(
                entry.callback_url, params)
            await self._post(entry, entry.callback_url, data=params,
                             headers={"X-Twilio-Signature": signature})

    # --- SendGrid -----------------------------------------------------------------------

    async def _sendgrid_send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SENDGRID_API_KEY}":
            return _sendgrid_error(401, "The provided authorization grant is invalid, "
                                        "expired, or revoked")
        try:
            mail = await request.json()
            to = mail["personalizations"][0]["to"][0]["email"]
            subject = mail.get("subject") or mail["personalizations"][0].get("subject")
            contents = {c["type"]: c["value"] for c in mail["content"]}
            sender = mail["from"]["email"]
        except (ValueError, KeyError, IndexError, TypeError):
            return _sendgrid_error(400, "Bad Request: personalizations, from, subject and "
                                        "content are required")
        self.requests["email"] += 1
        fault = self.faults.pick("email", to)
        if fault is not None and fault.fault == "timeout":
            await asyncio.sleep(fault.delay)
        elif fault is not None and fault.fault not in AFTER_ACCEPT | {"unsubscribed"}:
            if fault.fault == "rate_limited":
                return _sendgrid_error(429, "too many requests",
                                       {"Retry-After": f"{fault.retry_after:g}"})
            if fault.fault in ("server_error", "unavailable"):
                status = 500 if fault.fault == "server_error" else 503
                return _sendgrid_error(status, "internal error")
            fault = None  # phone-number faults mean nothing to e-mail
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")[:22]
        args = {**mail.get("custom_args", {}),
                **mail["personalizations"][0].get("custom_args", {})}
        entry = self.outbox.add(OutboxEntry(
            id=message_id, api="email", to=to, sender=sender, subject=subject,
            body=contents.get("text/plain") or contents.get("text/html", ""),
            ref=args.get("ref"),
            attachments=[StoredAttachment(a.get("filename", "attachment"),
                                          base64.b64decode(a["content"]),
                                          a.get("type", "application/octet-stream"))
                         for a in mail.get("attachments", [])]))
        entry.set_status("accepted")
        self._later(self._sendgrid_progress(entry, args, mail.get("categories", []),
                                            fault.fault if fault else None))
        return web.Response(status=202, headers={"X-Message-Id": message_id})

    def _event(self, entry: OutboxEntry, args: dict, categories: list, event: str,
               **extra) -> dict:
        return {"email": entry.to, "timestamp": int(time.time()), "event": event,
                "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22],
                "sg_message_id": f"{entry.id}.filterdrecv-sandbox-1-{uuid.uuid4().hex[:8]}.0",
                "smtp-id": f"<{entry.id}@sandbox.sendgrid.net>", "category": categories,
                **args, **extra}

    async def _sendgrid_progress(self, entry: OutboxEntry, args: dict, categories: list,
                                 fault: str | None) -> None:
        if fault == "unsubscribed":
            batches = [[self._event(entry, args, categories, "dropped",
                                    reason="Unsubscribed Address")]]
        else:
            final = (self._event(entry, args, categories, "bounce", type="bounce",
                                 status="5.1.1", bounce_classification="Invalid Address",
                                 reason="550 5.1.1 The email account does not exist.")
                     if fault == "bounce" else
                     self._event(entry, args, categories, "delivered",
                                 response="250 OK"))
            batches = [[self._event(entry, args, categories, "processed")], [final]]
        for events in batches:
            if self.callback_delay:
                await asyncio.sleep(self.callback_delay)
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
        return await self._post(entry, url, data=body.encode(), headers=self.sign_events(body))

    # --- WeChat -------------------------------------------------------------------------

    async def _wechat_token(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("appid") != WECHAT_APP_ID:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if not secrets.compare_digest(q.get("secret", ""), WECHAT_APP_SECRET):
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        token = secrets.token_urlsafe(24)
        self._tokens[token] = time.monotonic() + self.token_ttl
        return web.json_response({"access_token": token, "expires_in": self.token_ttl})

    async def _wechat_send(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        expires = self._tokens.get(token)
        if expires is None:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential, "
                                      "access_token is invalid or not latest"})
        if time.monotonic() >= expires:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        try:
            msg = await request.json()
            to = msg["touser"]
            fields = {k: v["value"] for k, v in msg.get("data", {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        self.requests["wechat"] += 1
        refusal, _ = await self._fault_now("wechat", to)
        if refusal is not None:
            if refusal.fault == "token_expired":
                self._tokens.pop(token, None)
                return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
            if refusal.fault in ("server_error", "unavailable"):
                return web.Response(status=500 if refusal.fault == "server_error" else 503)
            errcode, errmsg = {"rate_limited": (45009, "reach max api daily quota limit"),
                               "unsubscribed": (43004, "require subscribe"),
                               }.get(refusal.fault, (40003, "invalid openid"))
            return web.json_response({"errcode": errcode, "errmsg": errmsg})
        self._msgid += 1
        entry = self.outbox.add(OutboxEntry(
            id=str(self._msgid), api="wechat", to=to, sender=WECHAT_APP_ID,
            subject=msg.get("template_id"), fields=fields, link=msg.get("url"),
            body="\n".join(fields.values()), ref=msg.get("client_msg_id")))
        entry.set_status("sent")
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": self._msgid})

    # --- callbacks out ------------------------------------------------------------------------

    async def _post(self, entry: OutboxEntry | None, url: str, *, data, headers: dict) -> int:
        await self._callbacks_open.wait()
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with self._http.post(url, data=data, headers=headers) as response:
                status = response.status
        except aiohttp.ClientError as err:
            log.warning("sandbox callback not delivered: %s", type(err).__name__)
            status = 0
        if entry is not None and status != 200:
            entry.history.append((datetime.now(UTC), f"callback answered {status}"))
        return status

    # --- control and outbox pages ---------------------------------------------------------

    async def _faults_get(self, request: web.Request) -> web.Response:
        return web.json_response([f.model_dump() for f in self.faults.rules])

    async def _faults_add(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            rules = _FAULT_LIST.validate_python(data if isinstance(data, list) else [data])
        except (ValueError, ValidationError) as err:
            return web.json_response({"error": str(err)}, status=400)
        self.faults.add(rules)
        return web.json_response([f.model_dump() for f in self.faults.rules], status=201)

    async def _faults_clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.Response(status=204)

    async def _messages_json(self, request: web.Request) -> web.Response:
        to, api = request.query.get("to"), request.query.get("api")
        return web.json_response([e.summary() for e in self.outbox.entries
                                  if (to is None or e.to == to) and (api is None or e.api == api)])

    async def _messages_clear(self, request: web.Request) -> web.Response:
        self.outbox.clear()
        return web.Response(status=204)

    async def _keys(self, request: web.Request) -> web.Response:
        return web.json_response({"sendgrid_event_webhook_public_key": self.public_key,
                                  "twilio_account_sid": TWILIO_ACCOUNT_SID})

    async def _policies(self) -> dict[str, str]:
        refs = [e.ref for e in self.outbox.entries if e.ref]
        if self.describe is None or not refs:
            return {}
        return await self.describe(refs)

    async def _outbox_index(self, request: web.Request) -> web.Response:
        return web.Response(text=index_page(self.outbox, await self._policies()),
                            content_type="text/html")

    async def _outbox_to(self, request: web.Request) -> web.Response:
        to = unquote(request.match_info["to"])
        return web.Response(text=messages_page(f"Messages to {to}", self.outbox.to(to)),
                            content_type="text/html")

    async def _outbox_policy(self, request: web.Request) -> web.Response:
        policy = request.match_info["policy"]
        policies = await self._policies()
        entries = [e for e in self.outbox.entries if e.ref and policies.get(e.ref) == policy]
        return web.Response(text=messages_page(f"Messages for policy {policy}", entries),
                            content_type="text/html")

    async def _outbox_attachment(self, request: web.Request) -> web.Response:
        entry = self.outbox.get(unquote(request.match_info["id"]))
        try:
            attachment = entry.attachments[int(request.match_info["index"])]
        except (AttributeError, IndexError, ValueError):
            raise web.HTTPNotFound() from None
        return web.Response(body=attachment.content, content_type=attachment.mime_type,
                            headers={"Content-Disposition": "attachment; filename*=UTF-8''"
                                     + quote(attachment.filename, safe="")})


def _ref_of(callback_url: str | None) -> str | None:
    if not callback_url:
        return None
    return parse_qs(urlsplit(callback_url).query).get("ref", [None])[0]
