"""Messages per second per channel: a token bucket shared by every activity of a worker
process, so that a milestone burst of tens of thousands of policies stays inside the
providers' limits (what a provider still refuses with 429 is retried after Retry-After)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from activities.channels import Outgoing, Sender


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `acquire` waits for one.

    `waits` counts the acquisitions that had to wait, for tests and metrics.
    """

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._at = clock()
        self._lock = asyncio.Lock()
        self.waits = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    async def acquire(self) -> None:
        # One waiter at a time keeps the order fair: first come, first sent.
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                self.waits += 1
                await self._sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1


class RateLimited:
    """A sender behind its channel's bucket: `ready` waits for a token, before the record
    says 'sending' (a wait interrupted there leaves nothing that looks half-sent). What
    else the sender offers (`slot`, `lookup`, `safe_resend_within`) is its own."""

    def __init__(self, sender: Sender, bucket: TokenBucket):
        self.sender = sender
        self.bucket = bucket
        self.provider = sender.provider
        self.idempotent = getattr(sender, "idempotent", False)

    def __getattr__(self, name: str):
        # Only reached for what this wrapper does not define itself.
        return getattr(self.sender, name)

    async def ready(self) -> None:
        await self.bucket.acquire()

    async def send(self, message: Outgoing) -> str:
        return await self.sender.send(message)

    async def aclose(self) -> None:
        close = getattr(self.sender, "aclose", None)
        if close is not None:
            await close()
