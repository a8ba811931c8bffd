"""Named queries over what paces sending across worker processes: each worker's share of a
channel's rate (send_rate_shares) and the dial attempts to each number (dial_attempts)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

# Says this worker is alive on each channel and counts the workers seen within the expiry
# (itself included), in one round trip. Rows that stopped counting are removed on the way,
# skipping those another worker is removing (no deadlock between refreshers).
_REFRESH = """
WITH seen AS (
    INSERT INTO send_rate_shares (worker_id, channel, seen_at)
    SELECT $1, channel, now() FROM unnest($2::text[]) AS c (channel)
    ON CONFLICT (worker_id, channel) DO UPDATE SET seen_at = excluded.seen_at
), gone AS (
    DELETE FROM send_rate_shares
    WHERE (worker_id, channel) IN (
        SELECT worker_id, channel FROM send_rate_shares
        WHERE seen_at < now() - make_interval(secs => $3) AND worker_id <> $1
        FOR UPDATE SKIP LOCKED)
)
SELECT c.channel, 1 + count(s.worker_id) AS workers
FROM unnest($2::text[]) AS c (channel)
LEFT JOIN send_rate_shares s
    ON s.channel = c.channel AND s.worker_id <> $1
    AND s.seen_at >= now() - make_interval(secs => $3)
GROUP BY c.channel
"""
_LEAVE = "DELETE FROM send_rate_shares WHERE worker_id = $1"

# Two workers dialling the same number take turns on the count (inside a transaction).
_LOCK_NUMBER = "SELECT pg_advisory_xact_lock(hashtext($1))"
_DIALS = """
SELECT count(*) FROM dial_attempts WHERE number_hash = $1 AND dialed_at >= $2 AND dialed_at < $3
"""
_DIAL = "INSERT INTO dial_attempts (number_hash, notification_id, dialed_at) VALUES ($1, $2, $3)"


async def refresh_shares(pool: asyncpg.Pool, worker: str, channels: list[str],
                         expiry: float) -> dict[str, int]:
    """The worker is alive on `channels`; how many workers (itself included) send on each."""
    rows = await pool.fetch(_REFRESH, worker, channels, expiry)
    return {row["channel"]: row["workers"] for row in rows}


async def leave_shares(pool: asyncpg.Pool, worker: str) -> None:
    await pool.execute(_LEAVE, worker)


async def lock_number(conn: asyncpg.Connection, number_hash: str) -> None:
    await conn.execute(_LOCK_NUMBER, number_hash)


async def dials(conn: asyncpg.Connection, number_hash: str, start: datetime,
                end: datetime) -> int:
    return await conn.fetchval(_DIALS, number_hash, start, end)


async def record_dial(conn: asyncpg.Connection, number_hash: str, notification_id: str,
                      at: datetime) -> None:
    await conn.execute(_DIAL, number_hash, notification_id, at)
