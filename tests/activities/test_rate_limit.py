"""The send rate limit: shared by the worker processes through PostgreSQL, formal notices
served before follow-ups."""

from __future__ import annotations

import asyncio

import pytest

from activities.channels import LocalOutbox
from activities.rate_limit import FORMAL, ROUTINE, RateLimited, RateShares, TokenBucket
from domain.models import Channel


class Ticks:
    """A clock that moves only when the bucket sleeps, and a sleep that waits for the test
    to let one tick pass: the bucket hands out tokens exactly when the test says."""

    def __init__(self) -> None:
        self.now = 0.0
        self._ticks: asyncio.Queue[None] = asyncio.Queue()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await self._ticks.get()
        self.now += seconds

    def let_pass(self, ticks: int) -> None:
        for _ in range(ticks):
            self._ticks.put_nowait(None)


def instant_clock():
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    return now, sleep


async def test_a_shared_bucket_runs_at_its_part_of_the_configured_rate():
    now, sleep = instant_clock()
    bucket = TokenBucket(rate=10, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        await bucket.acquire()  # the burst saved up at the full rate
    bucket.share(2)
    assert (bucket.rate, bucket.burst) == (5, 5)
    for _ in range(10):
        await bucket.acquire()
    assert now[0] == pytest.approx(2.0)  # 10 tokens at 5 a second
    bucket.share(1)
    for _ in range(10):
        await bucket.acquire()
    assert now[0] == pytest.approx(3.0)  # back to 10 a second
    with pytest.raises(ValueError, match="workers"):
        bucket.share(0)


async def test_a_smaller_share_keeps_no_more_saved_up_than_its_burst():
    now, sleep = instant_clock()
    bucket = TokenBucket(rate=10, clock=lambda: now[0], sleep=sleep)
    bucket.share(5)  # a full bucket of 10 would let this worker send twice its share
    for _ in range(2):
        await bucket.acquire()
    assert (bucket.waits, now[0]) == (0, 0.0)
    await bucket.acquire()
    assert bucket.waits == 1 and now[0] == pytest.approx(0.5)


async def test_a_formal_notice_is_served_before_the_follow_ups_queued_ahead_of_it():
    ticks = Ticks()
    bucket = TokenBucket(rate=1, burst=1, clock=ticks.clock, sleep=ticks.sleep)
    sms = RateLimited(LocalOutbox(), bucket)
    await sms.ready("follow_up")  # the one token saved up
    served: list[str] = []

    async def send(name: str, kind: str) -> None:
        await sms.ready(kind)
        served.append(name)

    burst = [asyncio.create_task(send(f"follow_up {i}", "follow_up")) for i in range(5)]
    burst.append(asyncio.create_task(send("confirmation", "payment_confirmation")))
    await asyncio.sleep(0)  # every task runs up to its wait
    assert bucket.waits == 6 and served == []
    late = [asyncio.create_task(send("demand", "first_reminder")),
            asyncio.create_task(send("lapse", "lapse_notice"))]
    await asyncio.sleep(0)
    assert bucket.waits == 8
    ticks.let_pass(8)
    await asyncio.gather(*burst, *late)
    assert served == ["demand", "lapse", *(f"follow_up {i}" for i in range(5)), "confirmation"]
    assert ticks.now == pytest.approx(8.0)  # still one a second


async def test_a_cancelled_wait_gives_its_turn_to_the_next():
    ticks = Ticks()
    bucket = TokenBucket(rate=1, burst=1, clock=ticks.clock, sleep=ticks.sleep)
    await bucket.acquire()
    first = asyncio.create_task(bucket.acquire(FORMAL))
    second = asyncio.create_task(bucket.acquire(ROUTINE))
    await asyncio.sleep(0)
    first.cancel()
    ticks.let_pass(1)
    await second
    assert first.cancelled() and ticks.now == pytest.approx(1.0)


def buckets(rate: float = 10) -> dict[Channel, TokenBucket]:
    return {Channel.SMS: TokenBucket(rate), Channel.WECHAT: TokenBucket(rate * 2)}


async def test_two_workers_each_get_half_and_one_that_died_stops_counting(pool):
    a_buckets, b_buckets = buckets(), buckets()
    a = RateShares(pool, a_buckets, worker="a")
    b = RateShares(pool, b_buckets, worker="b")
    assert await a.refresh() == {Channel.SMS: 1, Channel.WECHAT: 1}
    assert a_buckets[Channel.SMS].rate == 10
    assert await b.refresh() == {Channel.SMS: 2, Channel.WECHAT: 2}
    await a.refresh()
    assert [x[Channel.SMS].rate for x in (a_buckets, b_buckets)] == [5, 5]
    assert [x[Channel.WECHAT].rate for x in (a_buckets, b_buckets)] == [10, 10]

    # b dies: it stops refreshing, and 20 s later (beyond the 15 s expiry) a is alone.
    await pool.execute("UPDATE send_rate_shares SET seen_at = seen_at - interval '20 s' "
                       "WHERE worker_id = 'b'")
    assert await a.refresh() == {Channel.SMS: 1, Channel.WECHAT: 1}
    assert (a_buckets[Channel.SMS].rate, a_buckets[Channel.WECHAT].rate) == (10, 20)
    assert await pool.fetchval("SELECT count(*) FROM send_rate_shares "
                               "WHERE worker_id = 'b'") == 0  # swept on the way


async def test_a_worker_that_stops_cleanly_hands_its_share_back_at_once(pool):
    a_buckets, b_buckets = buckets(), buckets()
    b = RateShares(pool, b_buckets, worker="b")
    async with b.running():
        async with RateShares(pool, a_buckets, worker="a").running():
            assert a_buckets[Channel.SMS].rate == 5
            assert await b.refresh() == {Channel.SMS: 2, Channel.WECHAT: 2}
        # a stopped: no waiting for its row to expire.
        assert await b.refresh() == {Channel.SMS: 1, Channel.WECHAT: 1}
        assert b_buckets[Channel.SMS].rate == 10
    assert await pool.fetchval("SELECT count(*) FROM send_rate_shares") == 0


async def test_the_refresher_follows_the_workers_coming_and_going(pool):
    a_buckets = buckets()
    a = RateShares(pool, a_buckets, worker="a", every=0.05, expiry=10)
    b = RateShares(pool, buckets(), worker="b")
    async with a.running():
        await b.refresh()
        # a's next refreshes see b: awaited, not slept for a guessed while.
        while a.workers[Channel.SMS] != 2:
            await a.refreshed()
        assert a_buckets[Channel.SMS].rate == 5
        await b.leave()
        while a.workers[Channel.SMS] != 1:
            await a.refreshed()
        assert a_buckets[Channel.SMS].rate == 10


def test_the_refresh_must_come_well_before_the_expiry():
    with pytest.raises(ValueError, match="refresh interval"):
        RateShares(None, buckets(), every=15, expiry=15)
