"""WeCom (企业微信) application messages to a member's userid over the HTTP API
(activities/token_api.py keeps the access token)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from activities.channels import Outgoing, PermanentSendError
from activities.token_api import TokenApi
from domain.content.rules import wecom_text

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
STALE_TOKEN = frozenset({40014, 41001, 42001})  # invalid, missing, expired access token
PERMANENT = frozenset({
    40003,  # invalid userid
    60111,  # userid not found
    81013,  # no recipient left: not a member, or outside the application's visible range
})
TRANSIENT = frozenset({-1, 45009, 45033})  # busy, rate limit, too many calls at once
# WeCom drops a request identical to one within this interval when asked to (at most 4 h).
DUPLICATE_CHECK = timedelta(hours=4)
# A textcard's limits (bytes, UTF-8); longer messages go as text (2,048 bytes, a content
# rule: domain/content/rules.py).
TITLE_BYTES, DESCRIPTION_BYTES = 128, 512


class WeComMessage(TokenApi):
    provider = "wecom"
    token_path = "/cgi-bin/gettoken"
    stale_token = STALE_TOKEN
    permanent = PERMANENT
    transient = TRANSIENT
    # Corp id, secret, agent id, IP allow-list or licence problems are ours.
    settings_hint = "WECOM_CORP_ID/WECOM_AGENT_ID/WECOM_SECRET"

    def __init__(self, corp_id: str, agent_id: int, secret: str, *,
                 base_url: str = DEFAULT_BASE_URL, timeout: float = 10.0,
                 duplicate_check: timedelta = DUPLICATE_CHECK,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(base_url, timeout=timeout, clock=clock)
        self._corp_id = corp_id
        self._agent_id = agent_id
        self._secret = secret
        self._duplicate_check = duplicate_check

    @property
    def safe_resend_within(self) -> timedelta:
        """How long after a first attempt the same message may be sent again without a
        second one reaching the member: every message asks WeCom's duplicate check, which
        drops a request identical to one sent within the interval."""
        return self._duplicate_check

    def token_params(self) -> dict[str, str]:
        return {"corpid": self._corp_id, "corpsecret": self._secret}

    def payload(self, message: Outgoing) -> dict:
        """A textcard (title, description, a button to the link) when it fits one, else
        text. Deterministic, so that a repeat is the identical request WeCom drops."""
        title, text = message.subject or "", message.body
        body: dict = {"touser": message.address, "agentid": self._agent_id,
                      "enable_duplicate_check": 1,
                      "duplicate_check_interval": int(self._duplicate_check.total_seconds())}
        if (message.link and title and len(title.encode()) <= TITLE_BYTES
                and len(text.encode()) <= DESCRIPTION_BYTES):
            body.update(msgtype="textcard", textcard={
                "title": title, "description": text, "url": message.link, "btntxt": "详情"})
        else:
            body.update(msgtype="text",
                        text={"content": wecom_text(title, text, message.link)})
        return body

    async def send(self, message: Outgoing) -> str:
        data = await self.post("/cgi-bin/message/send", self.payload(message))
        # Accepted for the others, refused for ours: WeCom names who could not be reached.
        for field in ("invaliduser", "unlicenseduser"):
            if message.address.lower() in str(data.get(field) or "").lower().split("|"):
                raise PermanentSendError(field, "refused for this recipient")
        return str(data["msgid"])
