"""The sandbox Twilio: the Messages and Calls resources the twilio client creates, with
Twilio's JSON and error codes, and status callbacks signed with X-Twilio-Signature."""

from __future__ import annotations

import re
import secrets
import uuid
from email.utils import format_datetime
from html import unescape
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from sandbox.callees import Callees
from sandbox.core import SandboxCore
from sandbox.faults import Fault
from sandbox.outbox import OutboxEntry

# The sandbox's own credentials: the real client authenticates with these.
TWILIO_ACCOUNT_SID = "AC" + "5a" * 16
TWILIO_AUTH_TOKEN = "sandbox-twilio-auth-token"
TWILIO_FROM_NUMBER = "+8610100000000"

_SAY = re.compile(r"<Say[^>]*>(.*?)</Say>", re.S)
_GATHER_ACTION = re.compile(r"<Gather\b[^>]*\baction=\"([^\"]*)\"")
_DIAL = re.compile(r"<Dial[^>]*>(.*?)</Dial>", re.S)


def _error(status: int, code: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"},
                             status=status, headers=headers)


def _refusal(fault: Fault) -> web.Response:
    if fault.fault == "rate_limited":
        return _error(429, 20429, "Too Many Requests", {"Retry-After": f"{fault.retry_after:g}"})
    if fault.fault == "server_error":
        return _error(500, 20500, "Internal Server Error")
    if fault.fault == "unavailable":
        return _error(503, 20503, "Service Unavailable")
    if fault.fault == "unsubscribed":
        return _error(400, 21610, "Attempt to send to unsubscribed recipient")
    return _error(400, 21211, "The 'To' number is not a valid phone number.")


def _ref_of(callback_url: str | None) -> str | None:
    if not callback_url:
        return None
    return parse_qs(urlsplit(callback_url).query).get("ref", [None])[0]


class TwilioApi:
    def __init__(self, core: SandboxCore, callees: Callees | None = None):
        self.core = core
        self.callees = callees or Callees()
        self._events: dict[str, list[dict]] = {}  # per call: the requests made for it

    def add_routes(self, app: web.Application) -> None:
        tracked = self.core.tracked
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", tracked(self._message))
        app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", tracked(self._call))
        app.router.add_get(r"/2010-04-01/Accounts/{sid}/{kind:Messages|Calls}.json",
                           tracked(self._list))
        app.router.add_get("/2010-04-01/Accounts/{sid}/Calls/{call}/Events.json",
                           tracked(self._call_events))

    def _authorised(self, request: web.Request) -> bool:
        try:
            auth = aiohttp.BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return False
        return (auth.login == TWILIO_ACCOUNT_SID == request.match_info["sid"]
                and secrets.compare_digest(auth.password, TWILIO_AUTH_TOKEN))

    @staticmethod
    def _resource(entry: OutboxEntry) -> dict:
        kind = "Messages" if entry.api == "sms" else "Calls"
        created = format_datetime(entry.at)
        updated = format_datetime(entry.history[-1][0] if entry.history else entry.at)
        base = {"sid": entry.id, "account_sid": TWILIO_ACCOUNT_SID, "api_version": "2010-04-01",
                "to": entry.to, "from": entry.sender, "status": entry.status,
                "direction": "outbound-api", "date_created": created, "date_updated": updated,
                "price": None, "price_unit": "USD",
                "uri": f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/{kind}/{entry.id}.json"}
        if kind == "Messages":
            sent = entry.status in ("sent", "delivered", "undelivered")
            base.update({"body": entry.body, "num_segments": "1", "num_media": "0",
                         "error_code": entry.error_code, "error_message": None,
                         "date_sent": updated if sent else None,
                         "messaging_service_sid": None})
        else:
            base.update({"start_time": None, "end_time": None, "duration": None,
                         "parent_call_sid": None, "answered_by": None})
        return base

    @staticmethod
    def _page(key: str, path: str, items: list[dict], page_size: int) -> dict:
        """One page of a list, as Twilio's v2010 API pages them (one page here)."""
        uri = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/{path}"
        return {key: items[:page_size], "start": 0, "end": max(0, min(len(items), page_size) - 1),
                "page": 0, "page_size": page_size, "uri": uri, "first_page_uri": uri,
                "next_page_uri": None, "previous_page_uri": None}

    async def _list(self, request: web.Request) -> web.Response:
        """Messages.json or Calls.json read back, newest first, filtered by To and From."""
        if not self._authorised(request):
            return _error(401, 20003, "Authenticate")
        kind = request.match_info["kind"]
        api = "sms" if kind == "Messages" else "voice"
        q = request.query
        to, sender = q.get("To"), q.get("From")
        refusal, _ = await self.core.fault_now(api, to or "*", "lookup")
        if refusal is not None:
            return _refusal(refusal)
        try:
            page_size = min(1000, max(1, int(q.get("PageSize", "50"))))
        except ValueError:
            return _error(400, 20001, "Invalid PageSize")
        found = [self._resource(e) for e in reversed(self.core.outbox.entries)
                 if e.api == api and (to is None or e.to == to)
                 and (sender is None or e.sender == sender)]
        return web.json_response(self._page(kind.lower(), f"{kind}.json", found, page_size))

    async def _call_events(self, request: web.Request) -> web.Response:
        """The requests Twilio made for a call (its status callbacks), as Call Events."""
        if not self._authorised(request):
            return _error(401, 20003, "Authenticate")
        sid = request.match_info["call"]
        entry = self.core.outbox.get(sid)
        if entry is None or entry.api != "voice":
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        refusal, _ = await self.core.fault_now("voice", entry.to, "lookup")
        if refusal is not None:
            return _refusal(refusal)
        return web.json_response(self._page("events", f"Calls/{sid}/Events.json",
                                            self._events.get(sid, []), 1000))

    async def _message(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, 20003, "Authenticate")
        form = await request.post()
        to, body = form.get("To"), form.get("Body")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        self.core.count("sms")
        refusal, later = await self.core.fault_now("sms", to)
        if refusal is not None:
            return _refusal(refusal)
        sid = "SM" + uuid.uuid4().hex
        callback = form.get("StatusCallback")
        entry = self.core.outbox.add(OutboxEntry(
            id=sid, api="sms", to=to, sender=form.get("From", ""), body=body,
            callback_url=callback, ref=_ref_of(callback)))
        entry.set_status("queued")
        final = ("undelivered", "30003") if later and later.fault == "undelivered" \
            else ("delivered", None)
        self.core.later(self._progress(entry, "MessageStatus", [("sent", None), final],
                                       {"MessageSid": sid, "SmsSid": sid}))
        return web.json_response(self._resource(entry), status=201)

    async def _call(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, 20003, "Authenticate")
        form = await request.post()
        to, twiml = form.get("To"), form.get("Twiml")
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not twiml and not form.get("Url"):
            return _error(400, 21205, "Url or Twiml parameter is required.")
        self.core.count("voice")
        refusal, later = await self.core.fault_now("voice", to)
        if refusal is not None:
            return _refusal(refusal)
        sid = "CA" + uuid.uuid4().hex
        callback = form.get("StatusCallback")
        said = [unescape(s) for s in _SAY.findall(twiml or "")]
        entry = self.core.outbox.add(OutboxEntry(
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
        self.core.later(self._progress(entry, "CallStatus", steps, {"CallSid": sid}))
        return web.json_response(self._resource(entry), status=201)

    async def _progress(self, entry: OutboxEntry, field: str,
                        steps: list[tuple[str, str | None]], ids: dict) -> None:
        for number, (status, error) in enumerate(steps):
            await self.core.pause()
            entry.set_status(status, error)
            if status == "in-progress":
                await self._press_keys(entry)
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
            await self._request(entry, entry.callback_url, params)

    async def _request(self, entry: OutboxEntry, url: str, params: dict) -> tuple[int, str]:
        """A signed request Twilio makes for a message or call, kept as a Call Event."""
        signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, params)
        answer, body = await self.core.post(entry, url, data=params,
                                            headers={"X-Twilio-Signature": signature})
        if entry.api == "voice":
            self._events.setdefault(entry.id, []).append({
                "request": {"method": "POST", "url": url, "parameters": params},
                "response": {"response_code": answer, "content_type": None,
                             "request_duration": 0}})
        return answer, body

    async def _press_keys(self, entry: OutboxEntry) -> None:
        """The callee presses their keys, one per menu heard; each answer is TwiML that
        may offer the menu again (what was said, or the number dialled, is kept)."""
        twiml = entry.twiml or ""
        for key in self.callees.keys_for(entry.to):
            action = _GATHER_ACTION.search(twiml)
            if action is None:
                return
            params = {"CallSid": entry.id, "AccountSid": TWILIO_ACCOUNT_SID, "To": entry.to,
                      "From": entry.sender, "CallStatus": "in-progress", "Digits": key,
                      "Direction": "outbound-api", "ApiVersion": "2010-04-01"}
            answer, twiml = await self._request(entry, unescape(action.group(1)), params)
            said = "".join(unescape(s) for s in _SAY.findall(twiml))
            dialled = _DIAL.search(twiml)
            entry.keys.append((key, said + (f" (dialled {unescape(dialled.group(1))})"
                                            if dialled else "")))
            if answer != 200:
                return
