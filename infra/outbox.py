"""The signal outbox: signals to journeys stored in the transaction of the fact that causes
them, and the drainer that delivers them to Temporal once it answers.

A provider's callback must not be lost because Temporal is down (Twilio does not retry
status callbacks): the callback records the event and enqueues the signal in one
transaction, answers 2xx, and a drainer delivers the row later. Drainers run in the
callback process and in every worker; each claims one row at a time with
`FOR UPDATE SKIP LOCKED` and settles it in the same transaction, so two drainers never
deliver the same row. A journey that is not running (closed, or never started) settles
the row too; only an unreachable or refusing Temporal leaves it for a later attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from pydantic import BaseModel, ValidationError
from temporalio.service import RPCError, RPCStatusCode

from contract import DELIVERY_FAILED, SIGNALS
from infra.journeys import Journeys, namespace_missing

log = logging.getLogger("lapse.outbox")

# The contract's signals the outbox carries, and the model of each payload.
CARRIED: dict[str, type[BaseModel]] = {name: SIGNALS[name] for name in (DELIVERY_FAILED,)}
# Temporal is down, restarting or shedding load: back off as a whole, not row by row.
_UNREACHABLE = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                          RPCStatusCode.RESOURCE_EXHAUSTED})

_CLAIM = """
SELECT outbox_id, workflow_id, signal_name, payload, attempts FROM signal_outbox
WHERE delivered_at IS NULL AND next_attempt_at <= now()
ORDER BY next_attempt_at, outbox_id LIMIT 1 FOR UPDATE SKIP LOCKED
"""
_SETTLE = """
UPDATE signal_outbox SET delivered_at = now(), outcome = $2, attempts = attempts + 1
WHERE outbox_id = $1
"""
_RETRY = """
UPDATE signal_outbox SET attempts = attempts + 1, last_error = $2,
    next_attempt_at = now() + $3::interval
WHERE outbox_id = $1
"""


async def enqueue(conn: asyncpg.Connection, journey_id: str, name: str,
                  payload: BaseModel) -> int:
    """Store a signal for the workflow `journey_id`, inside the caller's transaction; the
    drainers deliver it after the commit. Returns the row's id."""
    if type(payload) is not CARRIED.get(name):
        raise ValueError(f"the outbox carries no signal {name!r} with a "
                         f"{type(payload).__name__} payload (see infra.outbox.CARRIED)")
    return await conn.fetchval(
        "INSERT INTO signal_outbox (workflow_id, signal_name, payload) VALUES ($1, $2, $3) "
        "RETURNING outbox_id", journey_id, name, payload.model_dump_json())


@dataclass(frozen=True)
class Backoff:
    """How long to wait after the n-th failed attempt: doubling from `first`, at most `cap`."""

    first: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=1)

    def after(self, attempts: int) -> timedelta:
        return min(self.cap, self.first * 2 ** min(max(attempts - 1, 0), 30))


@dataclass(frozen=True)
class _Attempt:
    outcome: str | None  # what settles the row; None: try again later
    error: str | None = None  # the code kept in last_error
    unreachable: bool = False  # Temporal itself did not answer: pause the drainer


class OutboxDrainer:
    """Delivers the outbox: at once when nudged (a row was enqueued in this process), else
    every `poll_every` seconds, and backing off while Temporal is unreachable."""

    def __init__(self, pool: asyncpg.Pool, journeys: Journeys, *,
                 poll_every: float = 2.0, backoff: Backoff = Backoff()):
        self._pool = pool
        self._journeys = journeys
        self._poll_every = poll_every
        self._backoff = backoff
        self._wake = asyncio.Event()
        self._stopping = False
        self._unreachable = 0  # consecutive passes that found Temporal unreachable

    def nudge(self) -> None:
        """A row was enqueued: look now rather than at the next poll."""
        self._wake.set()

    async def drain(self) -> int:
        """Deliver the rows that are due, one transaction each, until none is left or
        Temporal is unreachable; returns how many were settled."""
        settled = 0
        while not self._stopping:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(_CLAIM)
                if row is None:
                    self._unreachable = 0
                    return settled
                attempt = await self._deliver(row)
                if attempt.outcome is not None:
                    await conn.execute(_SETTLE, row["outbox_id"], attempt.outcome)
                    settled += 1
                    self._unreachable = 0
                    continue
                await conn.execute(_RETRY, row["outbox_id"], attempt.error,
                                   self._backoff.after(row["attempts"] + 1))
            if attempt.unreachable:
                self._unreachable += 1
                return settled
        return settled

    async def _deliver(self, row: asyncpg.Record) -> _Attempt:
        outbox_id, name = row["outbox_id"], row["signal_name"]
        model = CARRIED.get(name)
        try:
            if model is None:
                raise ValueError(name)
            payload = model.model_validate(row["payload"])
        except (ValidationError, ValueError):
            log.error("outbox row %s (%s) dropped: its payload does not fit the signal",
                      outbox_id, name)
            return _Attempt("invalid_payload")
        try:
            running = await self._journeys.signal_workflow(row["workflow_id"], name, payload)
        except RPCError as err:
            missing = namespace_missing(err)
            code = "NAMESPACE_NOT_FOUND" if missing else err.status.name
            log.warning("outbox row %s (%s) not delivered (attempt %d): %s", outbox_id, name,
                        row["attempts"] + 1, code)
            return _Attempt(None, code, missing or err.status in _UNREACHABLE)
        except Exception as err:  # one row must never stop the others
            # A lazily connected client that has not reached the server yet says so in a
            # RuntimeError; anything else is kept by its type and retried later.
            connecting = isinstance(err, RuntimeError) and "connect" in str(err).lower()
            code = "CONNECT_FAILED" if connecting else type(err).__name__
            log.warning("outbox row %s (%s) not delivered (attempt %d): %s", outbox_id, name,
                        row["attempts"] + 1, code)
            return _Attempt(None, code, unreachable=connecting)
        if not running:
            log.info("outbox row %s (%s) settled: the journey is not running", outbox_id, name)
            return _Attempt("not_running")
        return _Attempt("signalled")

    async def run(self) -> None:
        """Drain until `stop()`; a failure (the database down) is logged and retried at the
        next poll."""
        while not self._stopping:
            try:
                await self.drain()
            except Exception as err:  # the drainer must outlive an outage
                log.warning("outbox not drained: %s", type(err).__name__)
            wait = (self._backoff.after(self._unreachable).total_seconds()
                    if self._unreachable else self._poll_every)
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            self._wake.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[OutboxDrainer]:
        """Drain in the background for the length of the block; on leaving, the row being
        delivered is settled before the drainer stops."""
        task = asyncio.create_task(self.run(), name="outbox-drainer")
        try:
            yield self
        finally:
            self.stop()
            await task
