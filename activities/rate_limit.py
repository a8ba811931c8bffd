"""Messages per second per channel: a token bucket per channel in every worker process,
running at that process's share of the configured rate (the configured rate divided by
the worker processes alive, counted through PostgreSQL), serving formal notices before
everything else, so that a milestone burst of tens of thousands of policies stays inside
the providers' limits (what a provider still refuses with 429 is retried after
Retry-After)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import asyncpg

from activities.channels import Outgoing, Sender
from domain.journey_rules import FORMAL_NOTICES
from domain.models import Channel
from infra import send_limits

log = logging.getLogger("lapse.rate_limit")

# Priorities, lowest first served: the formal demand, lapse and rescission notices, then
# every other message (reminders, follow-ups, offers, payment confirmations).
FORMAL = 0
ROUTINE = 1
_FORMAL_KINDS = frozenset(kind.value for kind in FORMAL_NOTICES)
# A sleep meant to fill the bucket up to one token may leave it a rounding error short.
_ROUNDING = 1e-9


def priority_of(message: str | None) -> int:
    """The bucket priority of a message kind (a MessageKind)."""
    return FORMAL if message in _FORMAL_KINDS else ROUTINE


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `acquire` waits for one.

    Waiters are served by priority (FORMAL before ROUTINE), first come first served within
    a priority. `share(n)` runs the bucket at 1/n of the rate and burst it was built with.
    `waits` counts the acquisitions that had to wait, for tests and metrics.
    """

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.configured_rate = rate
        self.configured_burst = max(1.0, burst if burst is not None else rate)
        self.rate = rate
        self.burst = self.configured_burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._at = clock()
        # (priority, arrival, future): one task hands the tokens out in that order.
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._server: asyncio.Task[None] | None = None
        self.waits = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def share(self, workers: int) -> None:
        """Run at this process's share when `workers` processes send on the channel."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._refill()  # what was saved up so far, at the rate it was saved at
        self.rate = self.configured_rate / workers
        self.burst = max(1.0, self.configured_burst / workers)
        self._tokens = min(self._tokens, self.burst)

    async def acquire(self, priority: int = ROUTINE) -> None:
        self._refill()
        if not self._waiting and self._tokens >= 1:
            self._tokens -= 1
            return
        self.waits += 1
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), turn))
        if self._server is None or self._server.done():
            self._server = asyncio.create_task(self._serve())
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._tokens += 1  # handed out just as the wait was cancelled: not used
            raise

    async def _serve(self) -> None:
        while True:
            while self._waiting and self._waiting[0][2].done():  # cancelled waits
                heapq.heappop(self._waiting)
            if not self._waiting:
                return
            self._refill()
            if self._tokens < 1 - _ROUNDING:
                await self._sleep((1 - self._tokens) / self.rate)
                continue
            _, _, turn = heapq.heappop(self._waiting)
            self._tokens = max(0.0, self._tokens - 1)
            turn.set_result(None)


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

    async def ready(self, message: str | None = None) -> None:
        """Wait for a token; `message` (the message kind) decides the priority."""
        await self.bucket.acquire(priority_of(message))

    async def send(self, message: Outgoing) -> str:
        return await self.sender.send(message)

    async def aclose(self) -> None:
        close = getattr(self.sender, "aclose", None)
        if close is not None:
            await close()


def worker_id() -> str:
    """This process among the workers: host, process id and a random part (a restarted
    process with the same pid is another worker)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RateShares:
    """This worker process's share of every channel's configured rate.

    Every `every` seconds it tells PostgreSQL it is alive and counts the workers seen
    within `expiry` seconds; each bucket then runs at the configured rate divided by that
    count until the next refresh (nothing per message). A worker that dies stops counting
    once its row is older than `expiry`; one that stops cleanly removes its rows at once.
    """

    def __init__(self, pool: asyncpg.Pool, buckets: Mapping[Channel, TokenBucket], *,
                 worker: str | None = None, every: float = 5.0, expiry: float = 15.0):
        if not 0 < every < expiry:
            raise ValueError("the refresh interval must be positive and shorter than the expiry")
        self.worker = worker or worker_id()
        self.workers: dict[Channel, int] = {}  # live workers per channel, at the last refresh
        self._pool = pool
        self._buckets = dict(buckets)
        self._every = every
        self._expiry = expiry
        self._refreshed = asyncio.Event()

    async def refresh(self) -> dict[Channel, int]:
        counts = await send_limits.refresh_shares(self._pool, self.worker,
                                                  [str(c) for c in self._buckets], self._expiry)
        self.workers = {Channel(channel): workers for channel, workers in counts.items()}
        for channel, workers in self.workers.items():
            self._buckets[channel].share(workers)
        self._refreshed.set()
        self._refreshed = asyncio.Event()
        return self.workers

    async def refreshed(self) -> None:
        """Wait for the next refresh to have set the shares."""
        await self._refreshed.wait()

    async def leave(self) -> None:
        await send_limits.leave_shares(self._pool, self.worker)

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError, TimeoutError) as err:
                # The last share holds; should this go on, the others stop counting us
                # after the expiry and take more (the providers' 429s are retried).
                log.warning("send rate shares not refreshed", extra={"error": type(err).__name__})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RateShares]:
        """Registered and refreshed while inside; the first share is set on entry."""
        if not self._buckets:
            yield self
            return
        await self.refresh()
        refresher = asyncio.create_task(self._keep_fresh())
        try:
            yield self
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            try:
                await self.leave()
            except (OSError, asyncpg.PostgresError) as err:
                # Our rows expire on their own.
                log.warning("send rate shares not left", extra={"error": type(err).__name__})
