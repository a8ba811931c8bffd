"""Named queries over the notification records after the send: provider events (delivery
callbacks), sends whose outcome is unknown, and their review by operations."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

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
        await conn.execute(
            "UPDATE agent_tasks SET status = 'done', outcome = $2, completed_at = now() "
            "WHERE notification_id = $1 AND kind = 'delivery_review' AND status <> 'done'",
            record.notification_id, f"settled by {provider}: {status}")
    return Applied(record, became_failed=status in FAILED and record.status not in FAILED)


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
                       journey_id: str, reason: str, now: datetime) -> None:
    """The provider may have the message: never send it again; ask a person to check."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE notifications SET status = 'unknown', error_code = $2, updated_at = now() "
            "WHERE notification_id = $1", notification_id, reason)
        await conn.execute(
            "INSERT INTO notification_events (notification_id, status, error_code, detail, "
            "occurred_at) VALUES ($1, 'unknown', $2, 'not re-sent: the provider may have it', "
            "now())", notification_id, reason)
        await conn.execute(
            "INSERT INTO agent_tasks (task_id, policy_number, journey_id, kind, priority, "
            "  due_at, sla_at, notification_id) "
            "VALUES ($1, $2, $3, 'delivery_review', 2, $4, $5, $6) "
            "ON CONFLICT (task_id) DO NOTHING",
            f"{notification_id}#review", policy_number, journey_id, now,
            now + timedelta(days=1), notification_id)


async def policies_for_refs(conn: asyncpg.Connection, refs: list[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT provider_ref, policy_number FROM notifications "
                            "WHERE provider_ref = ANY($1::text[])", refs)
    return {r["provider_ref"]: r["policy_number"] for r in rows}


async def clear_suppression(conn: asyncpg.Connection, policy_number: str) -> None:
    """MERGE-TODO(lead): replaced by the delivery branch's suppression list."""
