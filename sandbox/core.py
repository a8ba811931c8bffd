"""What every sandbox provider shares: the outbox, the failure rules, the work in flight,
and the HTTP client that posts delivery callbacks the way the real providers do."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

import aiohttp
from aiohttp import web

from sandbox.faults import AFTER_ACCEPT, Fault, Faults
from sandbox.outbox import Outbox, OutboxEntry

log = logging.getLogger("lapse.sandbox")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SandboxCore:
    """The state one sandbox server keeps; each provider module works on it."""

    def __init__(self, faults: Faults, *, callback_delay: float = 0.0):
        self.outbox = Outbox()
        self.faults = faults
        self.callback_delay = callback_delay
        # Requests that reached each API (refused ones included), for tests and the demo.
        self.requests: Counter[str] = Counter()
        self._work: set[asyncio.Task] = set()
        self._http: aiohttp.ClientSession | None = None
        self._callbacks_open = asyncio.Event()
        self._callbacks_open.set()

    def count(self, api: str) -> None:
        self.requests[api] += 1

    def tracked(self, handler: Handler) -> Handler:
        """`handler`, counted as work in flight until it has answered (see `settle`)."""
        async def run(request: web.Request) -> web.StreamResponse:
            task = asyncio.current_task()
            self._work.add(task)
            try:
                return await handler(request)
            finally:
                self._work.discard(task)
        return run

    def later(self, coro) -> None:
        """Run `coro` (a delivery callback) in the background, as work in flight."""
        task = asyncio.get_running_loop().create_task(coro)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    def pause_callbacks(self) -> None:
        self._callbacks_open.clear()

    def resume_callbacks(self) -> None:
        self._callbacks_open.set()

    async def pause(self) -> None:
        """The pause a provider takes before each callback (`--callback-delay`)."""
        if self.callback_delay:
            await asyncio.sleep(self.callback_delay)

    async def settle(self) -> None:
        me = asyncio.current_task()
        while pending := [t for t in self._work if t is not me and not t.done()]:
            await asyncio.wait(pending)

    async def close(self) -> None:
        for task in list(self._work):
            task.cancel()
        if self._http is not None:
            await self._http.close()

    async def fault_now(self, api: str, recipient: str, request: str = "send"
                        ) -> tuple[Fault | None, Fault | None]:
        """The rule hit by this request: one that answers now, or one reported later."""
        fault = self.faults.pick(api, recipient, request)
        if fault is None:
            return None, None
        if fault.fault in AFTER_ACCEPT:
            return None, fault
        if fault.fault == "timeout":
            await asyncio.sleep(fault.delay)  # then accept, as a slow provider does
            return None, None
        return fault, None

    async def post(self, entry: OutboxEntry | None, url: str, *, data, headers: dict,
                   params: dict | None = None) -> tuple[int, str]:
        """POST a callback once callbacks are open; the status and body it got back (0 when
        the endpoint could not be reached), noted in the entry's history unless 200."""
        await self._callbacks_open.wait()
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with self._http.post(url, data=data, headers=headers,
                                       params=params) as response:
                status, text = response.status, await response.text()
        except aiohttp.ClientError as err:
            log.warning("sandbox callback not delivered: %s", type(err).__name__)
            status, text = 0, ""
        if entry is not None and status != 200:
            entry.history.append((datetime.now(UTC), f"callback answered {status}"))
        return status, text


class AccessTokens:
    """Access tokens as WeChat and WeCom hand them out: random, each valid for `ttl` seconds."""

    def __init__(self, ttl: int = 7200):
        self.ttl = ttl
        self._expiry: dict[str, float] = {}

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        self._expiry[token] = time.monotonic() + self.ttl
        return token

    def state(self, token: str) -> Literal["valid", "invalid", "expired"]:
        expires = self._expiry.get(token)
        if expires is None:
            return "invalid"
        return "valid" if time.monotonic() < expires else "expired"

    def revoke(self, token: str) -> None:
        self._expiry.pop(token, None)
