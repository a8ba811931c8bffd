"""WeChat official-account template messages over the HTTP API (activities/token_api.py
keeps the access token)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import timedelta

from activities.channels import Outgoing
from activities.token_api import TokenApi

DEFAULT_BASE_URL = "https://api.weixin.qq.com"
STALE_TOKEN = frozenset({40001, 40014, 42001})  # invalid / expired access token
PERMANENT = frozenset({
    40003,  # invalid openid
    43004,  # the user does not follow the account
    43101,  # the user refused template messages
})
TRANSIENT = frozenset({-1, 45009, 45011, 45047})  # busy, rate limits
# WeChat sends one template message per openid and client_msg_id, for 10 minutes.
CLIENT_MSG_ID_VALID = timedelta(minutes=10)
# Where WeChat posts the official account's server events (TEMPLATESENDJOBFINISH: what
# became of a template message), under LAPSE_CALLBACK_URL.
WECHAT_EVENTS_PATH = "/callbacks/wechat/events"


def server_signature(token: str, timestamp: str, nonce: str) -> str:
    """The `signature` WeChat puts in the query of every message to the account's server:
    SHA-1 of the account's token, the timestamp and the nonce, sorted and joined."""
    return hashlib.sha1("".join(sorted((token, timestamp, nonce))).encode()).hexdigest()


class WeChatTemplate(TokenApi):
    provider = "wechat"
    token_path = "/cgi-bin/token"
    stale_token = STALE_TOKEN
    permanent = PERMANENT
    transient = TRANSIENT
    # Template, app id or IP whitelist problems are ours.
    settings_hint = "WECHAT_APP_ID/SECRET"

    def __init__(self, app_id: str, app_secret: str, *, base_url: str = DEFAULT_BASE_URL,
                 template_ids: dict[str, str] | None = None, timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(base_url, timeout=timeout, clock=clock)
        self._app_id = app_id
        self._secret = app_secret
        self._template_ids = template_ids or {}

    @property
    def safe_resend_within(self) -> timedelta:
        """How long after a first attempt the same message may be sent again without a
        second one reaching the customer: WeChat drops a repeat of its client_msg_id."""
        return CLIENT_MSG_ID_VALID

    def token_params(self) -> dict[str, str]:
        return {"grant_type": "client_credential", "appid": self._app_id,
                "secret": self._secret}

    def payload(self, message: Outgoing) -> dict:
        kind = (message.template_id or "").split(".")[0]
        body = {"touser": message.address,
                "template_id": self._template_ids.get(kind, message.template_id or kind),
                "data": {key: {"value": value} for key, value in (message.fields or {}).items()}}
        if message.link:
            body["url"] = message.link
        # client_msg_id: WeChat drops a repeat with the same id, a guard against doubles.
        body["client_msg_id"] = message.reference[:32]
        return body

    async def send(self, message: Outgoing) -> str:
        data = await self.post("/cgi-bin/message/template/send", self.payload(message))
        return str(data["msgid"])
