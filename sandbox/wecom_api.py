"""The sandbox WeCom (企业微信): `gettoken` and application messages (`message/send`, text
and textcard) with WeCom's errcodes and its duplicate check."""

from __future__ import annotations

import json
import secrets
import time

from aiohttp import web

from sandbox.core import AccessTokens, SandboxCore
from sandbox.outbox import OutboxEntry

WECOM_CORP_ID = "wwsandbox000000001"
WECOM_AGENT_ID = 1000002
WECOM_SECRET = "sandbox-wecom-secret"
MAX_DUPLICATE_CHECK = 4 * 3600  # seconds: WeCom's upper bound for duplicate_check_interval


def _answer(errcode: int, errmsg: str, **extra) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg, **extra})


class WeComApi:
    def __init__(self, core: SandboxCore, token_ttl: int = 7200):
        self.core = core
        self.tokens = AccessTokens(token_ttl)
        self._msgid = 0
        # The requests seen, as WeCom compares them for its duplicate check.
        self._recent: dict[str, tuple[float, str]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/cgi-bin/gettoken", self.core.tracked(self._token))
        app.router.add_post("/cgi-bin/message/send", self.core.tracked(self._send))

    async def _token(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("corpid") != WECOM_CORP_ID:
            return _answer(40013, "invalid corpid")
        if not secrets.compare_digest(q.get("corpsecret", ""), WECOM_SECRET):
            return _answer(40001, "invalid credential")
        return _answer(0, "ok", access_token=self.tokens.issue(), expires_in=self.tokens.ttl)

    async def _send(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        state = self.tokens.state(token)
        if state != "valid":
            return (_answer(40014, "invalid access_token") if state == "invalid"
                    else _answer(42001, "access_token expired"))
        try:
            msg = await request.json()
            to, kind = str(msg["touser"]), msg["msgtype"]
            if kind == "text":
                title, body, link = None, msg["text"]["content"], None
            elif kind == "textcard":
                card = msg["textcard"]
                title, body, link = card["title"], card["description"], card["url"]
            else:
                return _answer(40008, "invalid message type")
        except (ValueError, KeyError, TypeError):
            return _answer(40035, "invalid parameter, Warning: wrong json format.")
        if msg.get("agentid") != WECOM_AGENT_ID:
            return _answer(40056, "invalid agentid")
        self.core.count("wecom")
        refusal, _ = await self.core.fault_now("wecom", to)
        if refusal is not None:
            if refusal.fault == "token_expired":
                self.tokens.revoke(token)
                return _answer(42001, "access_token expired")
            if refusal.fault in ("server_error", "unavailable"):
                return web.Response(status=500 if refusal.fault == "server_error" else 503)
            if refusal.fault == "rate_limited":
                return _answer(45009, "api freq out of limit")
            return _answer(81013, "user & party & tag all invalid")
        repeat = self._duplicate_of(msg)
        if repeat is not None:
            return _answer(0, "ok", invaliduser="", invalidparty="", invalidtag="",
                           unlicenseduser="", msgid=repeat)
        self._msgid += 1
        msgid = f"sandbox-wecom-{self._msgid:08d}"
        entry = self.core.outbox.add(OutboxEntry(
            id=msgid, api="wecom", to=to, sender=f"{WECOM_CORP_ID}/{WECOM_AGENT_ID}",
            subject=title, body=body, link=link))
        entry.set_status("sent")
        self._remember(msg, msgid)
        return _answer(0, "ok", invaliduser="", invalidparty="", invalidtag="",
                       unlicenseduser="", msgid=msgid)

    @staticmethod
    def _key(msg: dict) -> str:
        return json.dumps(msg, sort_keys=True, ensure_ascii=False)

    def _duplicate_of(self, msg: dict) -> str | None:
        """The msgid of an identical request within its interval, when it asked for the
        check (`enable_duplicate_check`): WeCom then drops the repeat."""
        if msg.get("enable_duplicate_check") != 1:
            return None
        seen = self._recent.get(self._key(msg))
        return seen[1] if seen and time.monotonic() < seen[0] else None

    def _remember(self, msg: dict, msgid: str) -> None:
        try:
            interval = int(msg.get("duplicate_check_interval", 1800))
        except (TypeError, ValueError):
            interval = 1800
        interval = max(0, min(interval, MAX_DUPLICATE_CHECK))
        self._recent[self._key(msg)] = (time.monotonic() + interval, msgid)
