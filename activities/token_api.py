"""What WeChat's and WeCom's HTTP APIs share: JSON over HTTPS with an `errcode` in every
answer, and an access token fetched with the account's secret, cached, and fetched anew
shortly before it expires or at once when the API says it is stale."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp

from activities.channels import (
    PermanentSendError,
    SendError,
    TransientSendError,
    UncertainSendError,
)

REFRESH_MARGIN = 300.0  # seconds before expiry at which a new token is fetched
CONNECTIONS = 100  # the session's connection pool: one for each slot held


class TokenApi:
    """A client of one token-authenticated JSON API. Subclasses say where the token comes
    from (`token_path`, `token_params`) and what its errcodes mean: a stale token, a
    refusal about the recipient (permanent), busy or rate limited (transient); any other
    is a problem of our settings, retried while someone fixes them."""

    provider: str
    token_path: str
    stale_token: frozenset[int]
    permanent: frozenset[int]
    transient: frozenset[int]
    settings_hint: str  # the settings to check when no token can be had

    def __init__(self, base_url: str, *, timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._connections = asyncio.Semaphore(CONNECTIONS)
        self.tokens_fetched = 0

    def token_params(self) -> dict[str, str]:
        raise NotImplementedError

    def classify(self, errcode: int) -> SendError:
        if errcode in self.permanent:
            return PermanentSendError(str(errcode), "refused for this recipient")
        if errcode in self.transient:
            return TransientSendError(str(errcode), "rate limited or busy", retry_after=1.0)
        return TransientSendError(str(errcode), f"refused: check {self.settings_hint}")

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=CONNECTIONS))
        return self._session

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Held around `send`: once inside, a connection is free and the access token in
        hand, so the request leaves at once (the send activity records `sending` only
        then). A token that cannot be had raises TransientSendError here."""
        async with self._connections:
            await self.access_token()
            yield

    async def call(self, method: str, path: str, **kwargs) -> dict:
        """One API call; network errors become our errors without the URL (it holds the
        token or the secret)."""
        try:
            async with self._http().request(method, self._base + path, **kwargs) as response:
                if response.status == 429 or response.status >= 500:
                    raise TransientSendError(str(response.status), "provider error",
                                             _retry_after(response))
                data = await response.json(content_type=None)
        except aiohttp.ClientConnectorError:
            raise TransientSendError("connect_failed", "provider not reachable") from None
        except (TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            raise UncertainSendError("timeout", "no answer after the request went out") from None
        except (aiohttp.ClientError, ValueError):
            raise TransientSendError("bad_response", "unexpected answer") from None
        if not isinstance(data, dict):
            raise TransientSendError("bad_response", "unexpected answer")
        return data

    async def access_token(self, stale: str | None = None) -> str:
        """The cached token; a new one when it is about to expire or `stale` was refused."""
        async with self._lock:
            if self._token and self._token != stale and self._clock() < self._expires_at:
                return self._token
            try:
                data = await self.call("GET", self.token_path, params=self.token_params())
            except UncertainSendError:
                # Nothing is sent by fetching a token: safe to try again.
                raise TransientSendError("token_timeout", "no access token") from None
            if not data.get("access_token"):
                raise TransientSendError(f"token_{data.get('errcode', 'error')}",
                                         f"no access token: check {self.settings_hint}")
            self._token = data["access_token"]
            self._expires_at = self._clock() + float(data.get("expires_in", 7200)) \
                - REFRESH_MARGIN
            self.tokens_fetched += 1
            return self._token

    async def post(self, path: str, body: dict) -> dict:
        """POST `body` with the access token; the answer when its errcode is 0. A stale
        token is replaced and the call made once more; any other errcode is `classify`'d."""
        token = await self.access_token()
        for attempt in (1, 2):
            data = await self.call("POST", path, params={"access_token": token}, json=body)
            try:
                errcode = int(data.get("errcode", 0))
            except (TypeError, ValueError):
                raise TransientSendError("bad_response", "unexpected answer") from None
            if errcode == 0:
                return data
            if errcode in self.stale_token and attempt == 1:
                token = await self.access_token(stale=token)
                continue
            raise self.classify(errcode)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
