"""The sandbox WeChat official account: access tokens and template messages, with
WeChat's errcodes."""

from __future__ import annotations

import secrets

from aiohttp import web

from sandbox.core import AccessTokens, SandboxCore
from sandbox.outbox import OutboxEntry

WECHAT_APP_ID = "wxsandbox00000000"
WECHAT_APP_SECRET = "sandbox-wechat-secret"


class WeChatApi:
    def __init__(self, core: SandboxCore, token_ttl: int = 7200):
        self.core = core
        self.tokens = AccessTokens(token_ttl)
        self._msgid = 200_000_000

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/cgi-bin/token", self.core.tracked(self._token))
        app.router.add_post("/cgi-bin/message/template/send", self.core.tracked(self._send))

    async def _token(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("appid") != WECHAT_APP_ID:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if not secrets.compare_digest(q.get("secret", ""), WECHAT_APP_SECRET):
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        return web.json_response({"access_token": self.tokens.issue(),
                                  "expires_in": self.tokens.ttl})

    async def _send(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        state = self.tokens.state(token)
        if state == "invalid":
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential, "
                                      "access_token is invalid or not latest"})
        if state == "expired":
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        try:
            msg = await request.json()
            to = msg["touser"]
            fields = {k: v["value"] for k, v in msg.get("data", {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        self.core.count("wechat")
        refusal, _ = await self.core.fault_now("wechat", to)
        if refusal is not None:
            if refusal.fault == "token_expired":
                self.tokens.revoke(token)
                return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
            if refusal.fault in ("server_error", "unavailable"):
                return web.Response(status=500 if refusal.fault == "server_error" else 503)
            errcode, errmsg = {"rate_limited": (45009, "reach max api daily quota limit"),
                               "unsubscribed": (43004, "require subscribe"),
                               }.get(refusal.fault, (40003, "invalid openid"))
            return web.json_response({"errcode": errcode, "errmsg": errmsg})
        self._msgid += 1
        entry = self.core.outbox.add(OutboxEntry(
            id=str(self._msgid), api="wechat", to=to, sender=WECHAT_APP_ID,
            subject=msg.get("template_id"), fields=fields, link=msg.get("url"),
            body="\n".join(fields.values()), ref=msg.get("client_msg_id")))
        entry.set_status("sent")
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": self._msgid})
