"""SMS and voice calls on Twilio's own client: the same account, errors and callbacks;
they differ only in the resource they create (a Message, or a Call that speaks TwiML)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit
from xml.sax.saxutils import escape, quoteattr

import asyncpg
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from activities.channels import (
    ClientThreads,
    Outgoing,
    PermanentSendError,
    SendError,
    TransientSendError,
    UncertainSendError,
)
from activities.lookup import CANNOT_TELL, CLOCK_SLACK, NOT_FOUND, Lookup
from domain.plan import TZ, SendWindow
from domain.voice_menu import CallChoice, menu_for, prompt
from infra import send_limits

T = TypeVar("T")

# Twilio's client logs every request URL and response header at INFO: not ours to print.
_QUIET = logging.getLogger("lapse.twilio_http")
_QUIET.setLevel(logging.WARNING)
_QUIET.propagate = False

# Errors about the recipient: the same message can never go this way.
PERMANENT_CODES = frozenset({
    21211,  # invalid 'To' number
    21214,  # 'To' number cannot be reached
    21217,  # phone number does not appear to be valid
    21408,  # no permission to send to the region
    21610,  # the recipient unsubscribed (replied STOP)
    21612,  # cannot route to this number
    21614,  # not a mobile number
    13224,  # invalid number for a call
})

STATUS_CALLBACK_PATH = "/callbacks/twilio/status"
GATHER_PATH = "/callbacks/twilio/gather"  # where a key pressed during a call is posted
# Messages or calls to one number read per look-up: more since the send means we cannot tell.
LOOKUP_LIMIT = 50


def status_callback_url(base: str | None, reference: str) -> str | None:
    """Where Twilio reports delivery: our endpoint and the opaque reference, nothing personal."""
    if not base:
        return None
    return f"{base.rstrip('/')}{STATUS_CALLBACK_PATH}?{urlencode({'ref': reference})}"


def classify_twilio_error(err: TwilioException, retry_after: str | None) -> SendError:
    """A provider error as our error type; only the numeric code travels (the message
    Twilio returns quotes the phone number)."""
    if isinstance(err, TwilioRestException):
        status, code = err.status, err.code
    else:
        # A list page refused: the client raises a bare TwilioException with the response.
        response = err.args[1] if len(err.args) > 1 else None
        status, code = getattr(response, "status_code", None), None
    if not isinstance(status, int):
        return TransientSendError("twilio_error", type(err).__name__)
    label = str(code or status)
    if status == 429 or code == 20429:
        return TransientSendError(label, "rate limited", _seconds(retry_after))
    if status >= 500:
        return TransientSendError(label, "provider error", _seconds(retry_after))
    if code in PERMANENT_CODES:
        return PermanentSendError(label, "refused for this recipient")
    if status in (401, 403):
        # Our credentials, not the customer: retry while someone fixes the settings.
        return TransientSendError(label, "authentication failed: check TWILIO_* settings")
    return PermanentSendError(label, f"request refused ({status})")


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class _HttpClient(TwilioHttpClient):
    """Twilio's HTTP client, keeping the last response's headers (for Retry-After)."""

    last_headers: dict = {}

    def request(self, *args, **kwargs):
        response = super().request(*args, **kwargs)
        self.last_headers = dict(response.headers or {})
        return response


class _TwilioChannel(ClientThreads):
    """What SMS and voice share: a client per thread, the error mapping, the callbacks."""

    provider = "twilio"

    def __init__(self, account_sid: str, auth_token: str, from_number: str, *,
                 base_url: str | None = None, callback_base: str | None = None,
                 timeout: float = 10.0, threads: int = 8):
        self._sid = account_sid
        self._token = auth_token
        self._from = from_number
        self._base_url = base_url
        self._callback_base = callback_base
        self._timeout = timeout
        super().__init__(threads, "twilio")
        self._local = threading.local()

    def _client(self) -> Client:
        # Twilio's client is synchronous and keeps the last response per client: one per
        # thread, so that the Retry-After we read is our own request's.
        client = getattr(self._local, "client", None)
        if client is None:
            http = _HttpClient(timeout=self._timeout, logger=_QUIET)
            client = Client(self._sid, self._token, http_client=http)
            if self._base_url:
                client.api.base_url = self._base_url.rstrip("/")
            self._local.client = client
        return client

    def _create(self, client: Client, message: Outgoing, callback: str | None) -> str:
        raise NotImplementedError

    def _find(self, client: Client, message: Outgoing, since: datetime | None) -> Lookup:
        raise NotImplementedError

    def _calling(self, client: Client, call: Callable[[], T]) -> T:
        """`call` on the client, its failures as our errors."""
        try:
            return call()
        except TwilioException as err:
            retry_after = client.http_client.last_headers.get("Retry-After")
            raise classify_twilio_error(err, retry_after) from None
        except (requests.exceptions.ConnectTimeout, requests.exceptions.ProxyError):
            raise TransientSendError("connect_failed", "provider not reachable") from None
        except requests.exceptions.ReadTimeout:
            raise UncertainSendError("timeout", "no answer after the request went out") from None
        except requests.exceptions.ConnectionError as err:
            # Refused before anything went out is safe to retry; a dropped connection is not.
            if _never_connected(err):
                raise TransientSendError("connect_failed", "provider not reachable") from None
            raise UncertainSendError("connection_lost", "connection dropped") from None

    def _send_blocking(self, message: Outgoing) -> str:
        client = self._client()
        callback = status_callback_url(self._callback_base, message.reference)
        return self._calling(client, lambda: self._create(client, message, callback))

    def _lookup_blocking(self, message: Outgoing, since: datetime | None) -> Lookup:
        """Whether Twilio has `message`: messages from before `since` are not ours; None
        looks through the latest LOOKUP_LIMIT to the number."""
        client = self._client()
        try:
            return self._calling(client, lambda: self._find(client, message, since))
        except UncertainSendError as err:
            # A read sends nothing: asking again is always safe.
            raise TransientSendError(err.code, "no answer to the look-up") from None
        except PermanentSendError:
            return CANNOT_TELL  # refused as a request: says nothing about the message

    def _recent(self, resources, message: Outgoing, since: datetime | None,
                ) -> tuple[list, bool]:
        """The Messages or Calls to the number from our number since `since` - CLOCK_SLACK
        (oldest first), and whether that is all of them. Not filtered by DateSent or
        StartTime: a message still queued or a call not yet answered has neither."""
        listed = resources.list(to=message.address, from_=self._from, limit=LOOKUP_LIMIT,
                                page_size=LOOKUP_LIMIT)
        start = since - CLOCK_SLACK if since else None
        mine = [r for r in listed if start is None or r.date_created >= start]
        complete = len(listed) < LOOKUP_LIMIT or len(mine) < len(listed)
        return sorted(mine, key=lambda r: r.date_created), complete


def _ref_in(request: dict | None) -> str | None:
    """The reference in the URL of a request Twilio made (a Call Event's `request`)."""
    url = (request or {}).get("url") or ""
    return parse_qs(urlsplit(url).query).get("ref", [None])[0]


def _never_connected(err: requests.exceptions.ConnectionError) -> bool:
    cause = err.args[0] if err.args else None
    reason = getattr(cause, "reason", cause)
    return isinstance(reason, NewConnectionError | ConnectionRefusedError)


class TwilioSms(_TwilioChannel):
    """Twilio Messaging: one SMS, delivery reported to the status callback."""

    def _create(self, client: Client, message: Outgoing, callback: str | None) -> str:
        kwargs = {"status_callback": callback} if callback else {}
        return client.messages.create(to=message.address, from_=self._from, body=message.body,
                                      **kwargs).sid

    def _find(self, client: Client, message: Outgoing, since: datetime | None) -> Lookup:
        """Ours is the one with the exact text (which names the policy and the dates)."""
        recent, complete = self._recent(client.messages, message, since)
        same = [m for m in recent if m.body == message.body]
        if same:
            return Lookup(found=True, provider_id=same[0].sid)
        return NOT_FOUND if complete else CANNOT_TELL


def _say(text: str) -> str:
    return f'<Say language="zh-CN">{escape(text)}</Say>'


def _response(verbs: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{verbs}</Response>'


def _gather(verbs: str, action: str) -> str:
    """One key (numDigits 1) pressed while `verbs` play is posted to `action`; no key
    within 5 seconds of the end lets the call go on to what follows (here: hang up)."""
    return (f'<Gather input="dtmf" numDigits="1" timeout="5" method="POST" '
            f'action={quoteattr(action)}>{verbs}</Gather>')


def gather_url(base: str | None, reference: str) -> str | None:
    """Where Twilio posts the key pressed: our endpoint and the opaque reference only."""
    if not base:
        return None
    return f"{base.rstrip('/')}{GATHER_PATH}?{urlencode({'ref': reference})}"


def voice_twiml(script: str, action: str | None = None,
                options: list[CallChoice] | None = None) -> str:
    """The call speaks the script in Mandarin, and once more for who missed the start;
    with an `action`, then offers the menu (`options`), listening for a key throughout."""
    said = f'{_say(script)}<Pause length="1"/>{_say(script)}'
    if not action or not options:
        return _response(said)
    return _response(_gather(said + _say(prompt(options)), action))


def menu_twiml(before: str, action: str, options: list[CallChoice]) -> str:
    """An answer to a key: say `before`, then offer the menu again."""
    return _response(_say(before) + _gather(_say(prompt(options)), action))


def hangup_twiml(before: str) -> str:
    return _response(f"{_say(before)}<Hangup/>")


def dial_twiml(before: str, number: str) -> str:
    """An answer to a key: say `before`, then connect the caller to `number`."""
    return _response(f"{_say(before)}<Dial>{escape(number)}</Dial>")


class DialGuard:
    """The telephone rules, enforced with the records: calls only inside the call window,
    at most `max_per_day` dial attempts a day to one number (counted in dial_attempts)."""

    def __init__(self, pool: asyncpg.Pool, window: SendWindow, max_per_day: int,
                 clock: Callable[[], datetime] = lambda: datetime.now(TZ)):
        self._pool = pool
        self._window = window
        self._max = max_per_day
        self._clock = clock

    def _next_window_start(self, now: datetime) -> datetime:
        start = datetime.combine(now.date(), self._window.start, TZ)
        return start if now < start else start + timedelta(days=1)

    async def admit(self, message: Outgoing) -> None:
        """Record the dial attempt, or raise TransientSendError with when to try again."""
        now = self._clock().astimezone(TZ)
        if not self._window.start <= now.time() < self._window.end:
            wait = (self._next_window_start(now) - now).total_seconds()
            raise TransientSendError("outside_call_hours", "calls only "
                                     f"{self._window.start:%H:%M}-{self._window.end:%H:%M}",
                                     retry_after=wait)
        number = hashlib.sha256(message.address.encode()).hexdigest()
        day_start = datetime.combine(now.date(), datetime.min.time(), TZ)
        async with self._pool.acquire() as conn, conn.transaction():
            # Two workers dialling the same number take turns on the count.
            await send_limits.lock_number(conn, number)
            dialled = await send_limits.dials(conn, number, day_start,
                                              day_start + timedelta(days=1))
            if dialled >= self._max:
                wait = (self._next_window_start(day_start + timedelta(days=1)) - now)
                raise TransientSendError("dial_limit", f"{self._max} dial attempts today",
                                         retry_after=wait.total_seconds())
            await send_limits.record_dial(conn, number, message.notification_id, now)


class TwilioVoice(_TwilioChannel):
    """Twilio Voice: a call that speaks the voice script; answered, busy and no answer come
    back through the status callback."""

    def __init__(self, *args, guard: DialGuard | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._guard = guard

    async def send(self, message: Outgoing) -> str:
        if self._guard is not None:
            await self._guard.admit(message)
        return await super().send(message)

    def _find(self, client: Client, message: Outgoing, since: datetime | None) -> Lookup:
        """A Call does not show its TwiML or status-callback URL, but its Events (the
        requests Twilio made for it) do: ours is the call whose callbacks carry our
        reference. A call that made no request yet cannot be told apart."""
        recent, complete = self._recent(client.calls, message, since)
        undecided = not complete
        for call in recent:
            refs = {_ref_in(event.request) for event in client.calls(call.sid).events.list(
                limit=LOOKUP_LIMIT)} - {None}
            if message.reference in refs:
                return Lookup(found=True, provider_id=call.sid)
            undecided = undecided or not refs
        return CANNOT_TELL if undecided else NOT_FOUND

    def _create(self, client: Client, message: Outgoing, callback: str | None) -> str:
        kwargs = {"status_callback": callback, "status_callback_method": "POST",
                  "status_callback_event": ["initiated", "ringing", "answered", "completed"]
                  } if callback else {}
        twiml = voice_twiml(message.body, gather_url(self._callback_base, message.reference),
                            menu_for(message.template_id))
        return client.calls.create(to=message.address, from_=self._from, twiml=twiml,
                                   timeout=30, **kwargs).sid
