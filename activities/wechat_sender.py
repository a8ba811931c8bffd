"""WeChat official-account template messages over the HTTP API, with the access token
fetched once, cached, and refreshed before it expires or when WeChat says it is stale."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from activities.channels import (
    Outgoing,
    PermanentSendError,
    SendError,
    TransientSendError,
    UncertainSendError,
)

DEFAULT_BASE_URL = "https://api.weixin.qq.com"
STALE_TOKEN = frozenset({40001, 40014, 42001})  # invalid / expired access token
PERMANENT = frozenset({
    40003,  # invalid openid
    43004,  # the user does not follow the account
    43101,  # the user refused template messages
})
TRANSIENT = frozenset({-1, 45009, 45011, 45047})  # busy, rate limits
REFRESH_MARGIN = 300.0  # seconds before expiry at which a new token is fetched


def classify_wechat_error(errcode: int) -> SendError:
    if errcode in PERMANENT:
        return PermanentSendError(str(errcode), "refused for this recipient")
    if errcode in TRANSIENT:
        return TransientSendError(str(errcode), "rate limited or busy", retry_after=1.0)
    # Template, app id or IP whitelist problems are ours: retry while someone fixes them.
    return TransientSendError(str(errcode), "refused: check the WeChat settings")


class WeChatTemplate:
    provider = "wechat"

    def __init__(self, app_id: str, app_secret: str, *, base_url: str = DEFAULT_BASE_URL,
                 template_ids: dict[str, str] | None = None, timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self._app_id = app_id
        self._secret = app_secret
        self._base = base_url.rstrip("/")
        self._template_ids = template_ids or {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.tokens_fetched = 0

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _call(self, method: str, path: str, **kwargs) -> dict:
        """One API call; network errors become our errors without the URL (it holds the
        token or the secret)."""
        try:
            async with self._http().request(method, self._base + path, **kwargs) as response:
                if response.status == 429 or response.status >= 500:
                    raise TransientSendError(str(response.status), "provider error",
                                             _retry_after(response))
                return await response.json(content_type=None)
        except aiohttp.ClientConnectorError:
            raise TransientSendError("connect_failed", "provider not reachable") from None
        except (TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            raise UncertainSendError("timeout", "no answer after the request went out") from None
        except (aiohttp.ClientError, ValueError):
            raise TransientSendError("bad_response", "unexpected answer") from None

    async def access_token(self, stale: str | None = None) -> str:
        """The cached token; a new one when it is about to expire or `stale` was refused."""
        async with self._lock:
            if self._token and self._token != stale and self._clock() < self._expires_at:
                return self._token
            try:
                data = await self._call("GET", "/cgi-bin/token", params={
                    "grant_type": "client_credential", "appid": self._app_id,
                    "secret": self._secret})
            except UncertainSendError:
                # Nothing is sent by fetching a token: safe to try again.
                raise TransientSendError("token_timeout", "no access token") from None
            if "access_token" not in data:
                raise TransientSendError(f"token_{data.get('errcode', 'error')}",
                                         "no access token: check WECHAT_APP_ID/SECRET")
            self._token = data["access_token"]
            self._expires_at = self._clock() + float(data.get("expires_in", 7200)) \
                - REFRESH_MARGIN
            self.tokens_fetched += 1
            return self._token

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
        body = self.payload(message)
        token = await self.access_token()
        for attempt in (1, 2):
            data = await self._call("POST", "/cgi-bin/message/template/send",
                                    params={"access_token": token}, json=body)
            errcode = int(data.get("errcode", 0))
            if errcode == 0:
                return str(data["msgid"])
            if errcode in STALE_TOKEN and attempt == 1:
                token = await self.access_token(stale=token)
                continue
            raise classify_wechat_error(errcode)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
