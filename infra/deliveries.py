"""Named queries over the notification records around the send: provider events (delivery
callbacks), sends whose outcome is unknown and how they are settled, their review by
operations, and the suppression list of addresses refused for good."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from domain.models import Channel
from domain.suppression import address_key, closed_channels

# A status only moves forward; a failure may still follow a delivery (an e-mail that
# bounces after it was accepted by the receiving server).
RANK = {"queued": 0, "sending": 1, "unknown": 1, "sent": 2, "delivered": 3, "failed": 4,
        "bounced": 4, "skipped": 4}
FAILED = frozenset({"failed", "bounced"})


def provider_ref(notification_id: str) -> str:
    """What providers see of a notification: the id names the policy and the customer."""
    return hashlib.sha256(notification_id.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Notification:
    notification_id: str
    policy_number: str
    channel: str
    status: str


@dataclass(frozen=True)
class Applied:
    notification: Notification | None  # None: no record has this reference
    duplicate: bool = False  # this provider event was recorded before
    became_failed: bool = False  # the record turned failed/bounced with this event


async def apply_provider_event(
    conn: asyncpg.Connection, *, ref: str | None, provider: str,
    provider_message_id: str | None, status: str | None, event: str,
    error_code: str | None, provider_event_id: str, occurred_at: datetime,
) -> Applied:
    """Record one provider event once (by `provider_event_id`) and move the record's status.

    `status` is ours (sent, delivered, failed, bounced) or None for events that only go into
    the history (opened, deferred). Call inside a transaction.
    """
    row = None
    if ref:
        row = await conn.fetchrow(
            "SELECT notification_id, policy_number, channel, status FROM notifications "
            "WHERE provider_ref = $1 FOR UPDATE", ref)
    if row is None and provider_message_id:
        row = await conn.fetchrow(
            "SELECT notification_id, policy_number, channel, status FROM notifications "
            "WHERE provider = $1 AND provider_message_id = $2 FOR UPDATE",
            provider, provider_message_id)
    if row is None:
        return Applied(None)
    record = Notification(**dict(row))
    inserted = await conn.fetchval(
        "INSERT INTO notification_events (notification_id, status, error_code, detail, "
        "  provider_event_id, occurred_at) VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (provider_event_id) DO NOTHING RETURNING event_id",
        record.notification_id, status or event, error_code, f"{provider}: {event}",
        provider_event_id, occurred_at)
    if inserted is None:
        return Applied(record, duplicate=True)
    if status is None or RANK[status] <= RANK[record.status]:
        return Applied(record)
    await conn.execute(
        "UPDATE notifications SET status = $2, error_code = COALESCE($3, error_code), "
        "  provider = COALESCE(provider, $4), "
        "  provider_message_id = COALESCE(provider_message_id, $5), updated_at = now() "
        "WHERE notification_id = $1",
        record.notification_id, status, error_code, provider, provider_message_id)
    if record.status == "unknown":
        # The provider settled what nobody knew: the review is done.
        await _close_review(conn, record.notification_id, f"settled by {provider}: {status}")
    became_failed = status in FAILED and record.status not in FAILED
    if became_failed:
        channels = closed_channels(provider, error_code, Channel(record.channel))
        key = await conn.fetchval("SELECT address_hash FROM notification_addresses "
                                  "WHERE notification_id = $1", record.notification_id)
        if channels and key:
            await suppress(conn, channels, key, error_code, record.notification_id)
    return Applied(record, became_failed=became_failed)


async def _close_review(conn: asyncpg.Connection, notification_id: str, outcome: str) -> None:
    await conn.execute(
        "UPDATE agent_tasks SET status = 'done', outcome = $2, completed_at = now() "
        "WHERE notification_id = $1 AND kind = 'delivery_review' AND status <> 'done'",
        notification_id, outcome)


async def set_status(conn: asyncpg.Connection, notification_id: str, status: str,
                     error_code: str | None, detail: str) -> Notification | None:
    """An operator's or agent's word on a record, kept in its history."""
    row = await conn.fetchrow(
        "UPDATE notifications SET status = $2, error_code = COALESCE($3, error_code), "
        "  updated_at = now() WHERE notification_id = $1 "
        "RETURNING notification_id, policy_number, channel, status",
        notification_id, status, error_code)
    if row is None:
        return None
    await conn.execute(
        "INSERT INTO notification_events (notification_id, status, error_code, detail, "
        "occurred_at) VALUES ($1, $2, $3, $4, now())", notification_id, status, error_code,
        detail)
    return Notification(**dict(row))


async def mark_unknown(conn: asyncpg.Connection, notification_id: str, policy_number: str,
                       journey_id: str, reason: str, now: datetime, *, review: bool = True,
                       detail: str | None = None) -> None:
    """The provider may have the message: not sent again unless the provider proves it
    never got it; with `review`, a person is asked to check (nobody else can tell)."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE notifications SET status = 'unknown', error_code = $2, updated_at = now() "
            "WHERE notification_id = $1", notification_id, reason)
        await conn.execute(
            "INSERT INTO notification_events (notification_id, status, error_code, detail, "
            "occurred_at) VALUES ($1, 'unknown', $2, $3, now())", notification_id, reason,
            detail or "not re-sent: the provider may have it")
        if not review:
            return
        await conn.execute(
            "INSERT INTO agent_tasks (task_id, policy_number, journey_id, kind, priority, "
            "  due_at, sla_at, notification_id) "
            "VALUES ($1, $2, $3, 'delivery_review', 2, $4, $5, $6) "
            "ON CONFLICT (task_id) DO NOTHING",
            f"{notification_id}#review", policy_number, journey_id, now,
            now + timedelta(days=1), notification_id)


async def settle_found(conn: asyncpg.Connection, notification_id: str, provider: str,
                       provider_message_id: str | None) -> bool:
    """The provider has the message whose send was interrupted: it is `sent`, under the
    provider's id, and its review (if one was opened) is done. False when that provider id
    is already another record's: then the look-up cannot tell which message it found."""
    try:
        async with conn.transaction():
            await conn.execute(
                "UPDATE notifications SET status = 'sent', error_code = NULL, "
                "  provider = COALESCE(provider, $2), "
                "  provider_message_id = COALESCE(provider_message_id, $3), updated_at = now() "
                "WHERE notification_id = $1 AND status IN ('sending', 'unknown')",
                notification_id, provider, provider_message_id or None)
            await conn.execute(
                "INSERT INTO notification_events (notification_id, status, error_code, detail, "
                "occurred_at) VALUES ($1, 'sent', NULL, $2, now())", notification_id,
                f"{provider} has it: found by look-up")
            await _close_review(conn, notification_id, f"settled by {provider} look-up: sent")
    except asyncpg.UniqueViolationError:
        return False
    return True


# Why an interrupted send goes out again: the provider proved it never got it, or the
# provider drops a repeat (WeChat's client_msg_id, WeCom's duplicate check) for a while.
NOT_RECEIVED = "not_received"
REPEAT_DROPPED = "repeat_dropped"


async def reopen(conn: asyncpg.Connection, notification_id: str, why: str,
                 detail: str) -> None:
    """An interrupted send goes out again (`why`: NOT_RECEIVED or REPEAT_DROPPED): back to
    `queued`, its review (if any) done."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE notifications SET status = 'queued', error_code = $2, updated_at = now() "
            "WHERE notification_id = $1 AND status IN ('sending', 'unknown')",
            notification_id, why)
        await conn.execute(
            "INSERT INTO notification_events (notification_id, status, error_code, detail, "
            "occurred_at) VALUES ($1, 'queued', $2, $3, now())", notification_id, why, detail)
        await _close_review(conn, notification_id, f"sent again: {detail}")


async def uncertain_since(conn: asyncpg.Connection, notification_id: str) -> datetime | None:
    """When the provider may first have got this message, from our own events: the first
    `sending` that neither a refusal right after it (`queued` or `failed` with the
    provider's code) nor a later NOT_RECEIVED ruled out. None when nothing may have gone."""
    rows = await conn.fetch(
        "SELECT status, error_code, occurred_at FROM notification_events "
        "WHERE notification_id = $1 AND provider_event_id IS NULL ORDER BY event_id",
        notification_id)
    maybe: list[datetime] = []
    last = None
    for row in rows:
        status, code = row["status"], row["error_code"]
        if status == "sending":
            maybe.append(row["occurred_at"])
        elif status == "queued" and code == NOT_RECEIVED:
            maybe.clear()
        elif status in ("queued", "failed") and last == "sending" and code != REPEAT_DROPPED:
            maybe.pop()  # that attempt was refused: it reached nobody
        last = status
    return min(maybe) if maybe else None


# --- the suppression list ----------------------------------------------------------------


async def keep_address(conn: asyncpg.Connection, notification_id: str, channel: Channel,
                       key: str) -> None:
    """The key of the address this message goes to, for a later refusal to close it."""
    await conn.execute(
        "INSERT INTO notification_addresses (notification_id, channel, address_hash) "
        "VALUES ($1, $2, $3) ON CONFLICT (notification_id) DO UPDATE "
        "SET channel = EXCLUDED.channel, address_hash = EXCLUDED.address_hash",
        notification_id, channel.value, key)


async def suppress(conn: asyncpg.Connection, channels: tuple[Channel, ...], key: str,
                   reason: str, notification_id: str | None) -> None:
    """Close the address `key` on `channels` (the first reason is kept)."""
    await conn.executemany(
        "INSERT INTO suppressions (channel, address_hash, reason, notification_id) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (channel, address_hash) DO NOTHING",
        [(c.value, key, reason, notification_id) for c in channels])


async def suppressed(conn: asyncpg.Connection, channel: Channel, key: str) -> str | None:
    """Why the address `key` is closed on `channel` (the provider's code), or None."""
    return await conn.fetchval(
        "SELECT reason FROM suppressions WHERE channel = $1 AND address_hash = $2",
        channel.value, key)


async def clear_suppression(conn: asyncpg.Connection, policy_number: str) -> int:
    """The policy's customers' contact details were updated: every address they have now
    (policyholder, insured members, emergency contact) may be used again, on every
    channel. Returns how many suppressions were cleared."""
    rows = await conn.fetch(
        "SELECT c.mobile, c.email, c.wechat_openid, c.wecom_userid, "
        "       c.emergency_contact ->> 'phone' AS emergency_phone "
        "FROM customers c WHERE c.customer_id IN ("
        "  SELECT policyholder_id FROM policies WHERE policy_number = $1 "
        "  UNION SELECT customer_id FROM policy_insured WHERE policy_number = $1)",
        policy_number)
    keys = sorted({address_key(v) for r in rows for v in r.values() if v})
    cleared = await conn.fetch(
        "DELETE FROM suppressions WHERE address_hash = ANY($1::text[]) RETURNING channel",
        keys)
    return len(cleared)


async def policies_for_refs(conn: asyncpg.Connection, refs: list[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT provider_ref, policy_number FROM notifications "
                            "WHERE provider_ref = ANY($1::text[])", refs)
    return {r["provider_ref"]: r["policy_number"] for r in rows}

