"""The sandbox WeChat official account: access tokens and template messages, with
WeChat's errcodes, the client_msg_id that drops repeats, and the TEMPLATESENDJOBFINISH
event pushed to the account's server, signed as WeChat signs it."""

from __future__ import annotations

import secrets
import time
from xml.sax.saxutils import escape

from aiohttp import web

from activities.wechat_sender import CLIENT_MSG_ID_VALID, server_signature
from sandbox.core import AccessTokens, SandboxCore
from sandbox.outbox import OutboxEntry

WECHAT_APP_ID = "wxsandbox00000000"
WECHAT_APP_SECRET = "sandbox-wechat-secret"
WECHAT_TOKEN = "sandboxWechatToken"  # the server configuration's token: signs events
WECHAT_ACCOUNT = "gh_5a5a5a5a5a5a"  # the official account's original id (ToUserName)
# The job's outcome by fault: a template message is accepted first, reported later.
_JOB_STATUS = {"undelivered": "failed:user block"}


def job_finished(msgid: int, openid: str, status: str, at: int) -> str:
    """The XML of a TEMPLATESENDJOBFINISH event (plaintext mode)."""
    return (f"<xml><ToUserName><![CDATA[{WECHAT_ACCOUNT}]]></ToUserName>"
            f"<FromUserName><![CDATA[{escape(openid)}]]></FromUserName>"
            f"<CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{msgid}</MsgID>"
            f"<Status><![CDATA[{status}]]></Status></xml>")


class WeChatApi:
    def __init__(self, core: SandboxCore, token_ttl: int = 7200):
        self.core = core
        self.tokens = AccessTokens(token_ttl)
        self._msgid = 200_000_000
        # Where events go: the account's server URL ({callback base}/callbacks/wechat/events).
        self.server_url: str | None = None
        self._client_msg_ids: dict[tuple[str, str], tuple[float, int]] = {}

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
        repeat = self._repeat_of(to, msg.get("client_msg_id"))
        if repeat is not None:
            return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": repeat})
        refusal, later = await self.core.fault_now("wechat", to)
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
        if msg.get("client_msg_id"):
            self._client_msg_ids[to, str(msg["client_msg_id"])] = (
                time.monotonic() + CLIENT_MSG_ID_VALID.total_seconds(), self._msgid)
        status = _JOB_STATUS.get(later.fault, "success") if later else "success"
        self.core.later(self._job_finished(entry, self._msgid, status))
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": self._msgid})

    def _repeat_of(self, openid: str, client_msg_id) -> int | None:
        """The msgid of the message sent with this openid and client_msg_id within 10
        minutes: WeChat sends it only once."""
        if not client_msg_id:
            return None
        seen = self._client_msg_ids.get((openid, str(client_msg_id)))
        return seen[1] if seen and time.monotonic() < seen[0] else None

    async def _job_finished(self, entry: OutboxEntry, msgid: int, status: str) -> None:
        await self.core.pause()
        entry.set_status("delivered" if status == "success" else "failed",
                         None if status == "success" else status)
        if not self.server_url:
            return
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        await self.core.post(
            entry, self.server_url, data=job_finished(msgid, entry.to, status, int(timestamp)),
            headers={"Content-Type": "text/xml"},
            params={"signature": server_signature(WECHAT_TOKEN, timestamp, nonce),
                    "timestamp": timestamp, "nonce": nonce, "openid": entry.to})
