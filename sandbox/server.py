"""The sandbox server: the provider APIs (one module each, sharing one outbox and one set
of failure rules), the control endpoints and the outbox pages a person opens."""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote, unquote

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from sandbox.callees import Callee, Callees
from sandbox.core import SandboxCore
from sandbox.faults import DEFAULT_FAULTS, Fault, Faults
from sandbox.outbox import Describe, index_page, messages_page
from sandbox.sendgrid_api import SendGridApi
from sandbox.twilio_api import TWILIO_ACCOUNT_SID, TwilioApi
from sandbox.wechat_api import WeChatApi
from sandbox.wecom_api import WeComApi

_FAULT_LIST = TypeAdapter(list[Fault])
_CALLEE_LIST = TypeAdapter(list[Callee])


class Sandbox:
    """Every sandbox provider on one server. Mount it on an app with `add_routes`."""

    def __init__(self, *, faults: list[Fault] | None = None, seed: int = 0,
                 event_webhook_url: str | None = None, callback_delay: float = 0.0,
                 token_ttl: int = 7200, describe: Describe | None = None,
                 callees: list[Callee] | None = None):
        self.core = SandboxCore(Faults(DEFAULT_FAULTS if faults is None else faults, seed),
                                callback_delay=callback_delay)
        self.callees = Callees(callees)
        self.twilio = TwilioApi(self.core, self.callees)
        self.sendgrid = SendGridApi(self.core, event_webhook_url)
        self.wechat = WeChatApi(self.core, token_ttl)
        self.wecom = WeComApi(self.core, token_ttl)
        self.describe = describe

    # What tests, the demo and the commands read and set.

    @property
    def outbox(self):
        return self.core.outbox

    @property
    def faults(self) -> Faults:
        return self.core.faults

    @property
    def requests(self) -> Counter[str]:
        return self.core.requests

    @property
    def public_key(self) -> str:
        return self.sendgrid.public_key

    @property
    def event_webhook_url(self) -> str | None:
        return self.sendgrid.event_webhook_url

    @event_webhook_url.setter
    def event_webhook_url(self, url: str | None) -> None:
        self.sendgrid.event_webhook_url = url

    @property
    def wechat_server_url(self) -> str | None:
        return self.wechat.server_url

    @wechat_server_url.setter
    def wechat_server_url(self, url: str | None) -> None:
        self.wechat.server_url = url

    def sign_events(self, body: str, timestamp: str | None = None) -> dict[str, str]:
        return self.sendgrid.sign_events(body, timestamp)

    async def post_signed_events(self, url: str, events: list[dict], entry=None) -> int:
        return await self.sendgrid.post_signed_events(url, events, entry)

    def pause_callbacks(self) -> None:
        """Hold delivery callbacks back (they queue) until `resume_callbacks`."""
        self.core.pause_callbacks()

    def resume_callbacks(self) -> None:
        self.core.resume_callbacks()

    async def settle(self) -> None:
        """Wait until every request in flight is answered and every callback delivered."""
        await self.core.settle()

    async def close(self) -> None:
        await self.core.close()

    # --- wiring -------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        for provider in (self.twilio, self.sendgrid, self.wechat, self.wecom):
            provider.add_routes(app)
        app.router.add_get("/sandbox/faults", self._faults_get)
        app.router.add_post("/sandbox/faults", self._faults_add)
        app.router.add_delete("/sandbox/faults", self._faults_clear)
        app.router.add_get("/sandbox/callees", self._callees_get)
        app.router.add_post("/sandbox/callees", self._callees_add)
        app.router.add_delete("/sandbox/callees", self._callees_clear)
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

    # --- control and outbox pages ---------------------------------------------------------

    async def _faults_get(self, request: web.Request) -> web.Response:
        return web.json_response([f.model_dump() for f in self.faults.rules])

    async def _faults_add(self, request: web.Request) -> web.Response:
        return await _add_rules(request, _FAULT_LIST, self.faults.rules)

    async def _faults_clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.Response(status=204)

    async def _callees_get(self, request: web.Request) -> web.Response:
        return web.json_response([c.model_dump() for c in self.callees.rules])

    async def _callees_add(self, request: web.Request) -> web.Response:
        return await _add_rules(request, _CALLEE_LIST, self.callees.rules)

    async def _callees_clear(self, request: web.Request) -> web.Response:
        self.callees.rules.clear()
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


async def _add_rules(request: web.Request, adapter: TypeAdapter, rules: list) -> web.Response:
    """POST one rule or a list: validated, appended to `rules`, all of them answered."""
    try:
        data = await request.json()
        new = adapter.validate_python(data if isinstance(data, list) else [data])
    except (ValueError, ValidationError) as err:
        return web.json_response({"error": str(err)}, status=400)
    rules.extend(new)
    return web.json_response([r.model_dump() for r in rules], status=201)
