"""Named queries over the notification records (notifications, notification_events,
notification_addresses) and the suppression list: a send's record and its attempts,
provider events (delivery callbacks), sends whose outcome is unknown and how they are
settled, what a journey or a customer was sent, and the addresses refused for good."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from pydantic import BaseModel

from domain.content.render import RenderedMessage
from domain.ids import MilestoneKey
from domain.journey import SendRequest
from domain.models import Channel, NotificationStatus, Role
from domain.report import record_kind
from domain.suppression import address_key, closed_channels
from infra import agent_tasks

# A status only moves forward; a failure may still follow a delivery (an e-mail that
# bounces after it was accepted by the receiving server).
RANK = {"queued": 0, "sending": 1, "unknown": 1, "sent": 2, "delivered": 3, "failed": 4,
        "bounced": 4, "skipped": 4}
FAILED = frozenset({"failed", "bounced"})


def provider_ref(notification_id: str) -> str:
    """What providers see of a notification: the id names the policy and the customer."""
    return hashlib.sha256(notification_id.encode()).hexdigest()[:32]


_EVENT = """
INSERT INTO notification_events (notification_id, status, error_code, detail, occurred_at)
VALUES ($1, $2, $3, $4, now())
"""


async def add_event(conn: asyncpg.Connection, notification_id: str, status: str,
                    error_code: str | None, detail: str | None = None) -> None:
    """A line of the record's history written by us (a provider's own events:
    `apply_provider_event`)."""
    await conn.execute(_EVENT, notification_id, status, error_code, detail)


# --- a send's record and its attempts ------------------------------------------------------

@dataclass(frozen=True)
class SendRecord:
    """What a record says before the next attempt."""

    status: str
    error_code: str | None
    subject: str | None
    body: str | None
    template_id: str | None


_SEND_RECORD = """
SELECT status, error_code, subject, body, template_id FROM notifications
WHERE notification_id = $1
"""

# New, or the next attempt of one not yet taken by a provider: the text changes only with
# a new attempt (`sending`).
_WRITE_RECORD = """
INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, channel,
                           recipient_id, recipient_role, template_id, template_version,
                           subject, body, status, error_code, attempts, provider_ref,
                           created_at, kind)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $16, $14, COALESCE($15, now()),
        $17)
ON CONFLICT (notification_id) DO UPDATE SET status = EXCLUDED.status,
    error_code = EXCLUDED.error_code,
    body = CASE WHEN EXCLUDED.status = 'sending' THEN EXCLUDED.body ELSE notifications.body END,
    subject = CASE WHEN EXCLUDED.status = 'sending' THEN EXCLUDED.subject
                   ELSE notifications.subject END,
    attempts = notifications.attempts + EXCLUDED.attempts, updated_at = now()
"""

# A delivery callback may have come first: a status only moves from $6, never back.
_ANSWER = """
UPDATE notifications
SET status = CASE WHEN status = ANY($6::text[]) THEN $2 ELSE status END,
    error_code = CASE WHEN status = ANY($6::text[]) THEN $3 ELSE error_code END,
    provider = COALESCE($4, provider), provider_message_id = COALESCE($5, provider_message_id),
    updated_at = now()
WHERE notification_id = $1
"""


async def send_record(conn: asyncpg.Connection, notification_id: str) -> SendRecord | None:
    row = await conn.fetchrow(_SEND_RECORD, notification_id)
    return SendRecord(**dict(row)) if row else None


async def write_record(conn: asyncpg.Connection, notification_id: str, req: SendRequest,
                       recipient_id: str, role: str, rendered: RenderedMessage | None,
                       status: str, error: str | None, *, attempted: bool = True,
                       detail: str | None = None) -> None:
    """Write the record of `req` to one recipient and its event."""
    async with conn.transaction():
        await conn.execute(
            _WRITE_RECORD, notification_id, req.journey_id, req.policy_number,
            req.milestone_key, req.channel.value, recipient_id, role,
            rendered.template_id if rendered else None,
            rendered.template_version if rendered else None,
            rendered.subject if rendered else None, rendered.body if rendered else None,
            status, error, provider_ref(notification_id), req.journey_at,
            1 if attempted else 0, record_kind(req.milestone_key, role).value)
        await add_event(conn, notification_id, status, error, detail)


async def answer_attempt(conn: asyncpg.Connection, notification_id: str, status: str,
                         error: str | None, provider: str | None = None,
                         provider_id: str | None = None, *,
                         moving: tuple[str, ...] = ("queued", "sending"),
                         detail: str | None = None) -> None:
    """The provider's answer to an attempt, and its event: the status moves only from
    `moving`."""
    async with conn.transaction():
        await conn.execute(_ANSWER, notification_id, status, error, provider, provider_id,
                           list(moving))
        await add_event(conn, notification_id, status, error, detail)


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
        await agent_tasks.close_review(conn, record.notification_id,
                                       f"settled by {provider}: {status}")
    became_failed = status in FAILED and record.status not in FAILED
    if became_failed:
        channels = closed_channels(provider, error_code, Channel(record.channel))
        key = await conn.fetchval("SELECT address_hash FROM notification_addresses "
                                  "WHERE notification_id = $1", record.notification_id)
        if channels and key:
            await suppress(conn, channels, key, error_code, record.notification_id)
    return Applied(record, became_failed=became_failed)


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
    await add_event(conn, notification_id, status, error_code, detail)
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
        await add_event(conn, notification_id, "unknown", reason,
                        detail or "not re-sent: the provider may have it")
        if not review:
            return
        await agent_tasks.open_for_notification(
            conn, f"{notification_id}#review", policy_number, journey_id, "delivery_review", 2,
            now, notification_id, sla=timedelta(days=1))


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
            await add_event(conn, notification_id, "sent", None,
                            f"{provider} has it: found by look-up")
            await agent_tasks.close_review(conn, notification_id,
                                           f"settled by {provider} look-up: sent")
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
        await add_event(conn, notification_id, "queued", why, detail)
        await agent_tasks.close_review(conn, notification_id, f"sent again: {detail}")


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



# --- what a journey, a number or a customer was sent ---------------------------------------

class Delivery(BaseModel):
    """One notification record: a message to one recipient on one channel, as delivered."""

    notification_id: str
    milestone: str  # the record's key as stored
    channel: Channel
    recipient_role: Role
    status: NotificationStatus
    error_code: str | None
    provider: str | None
    attempts: int
    # The journey moment the message belongs to (under compressed time it runs ahead of
    # the wall clock), and when its record last changed (wall clock).
    created_at: datetime | None = None
    updated_at: datetime


class JourneyRecord(Delivery):
    """A record with its text, and whether a paper letter's PDF is in the print queue."""

    subject: str | None
    body: str | None
    has_letter: bool


_JOURNEY_RECORDS = """
SELECT n.notification_id, n.milestone, n.channel, n.recipient_role, n.status, n.error_code,
       n.provider, n.attempts, n.subject, n.body, n.created_at, n.updated_at,
       q.letter_id IS NOT NULL AS has_letter
FROM notifications n LEFT JOIN print_queue q ON q.letter_id = n.notification_id
WHERE n.journey_id = $1 ORDER BY n.created_at, n.notification_id
"""

# Automated calls, on any journey, to the number the policy's holder has now.
_CALLS_TO_HOLDER = """
SELECT count(*) FROM notifications n
JOIN customers c ON c.customer_id = n.recipient_id
WHERE n.channel = 'voice' AND n.created_at >= $2 AND n.created_at < $3
  AND c.mobile = (SELECT h.mobile FROM policies p JOIN customers h
                  ON h.customer_id = p.policyholder_id WHERE p.policy_number = $1)
"""

# Messages (any journey, any policy) that reached or may have reached the customer after
# $2, but for those of the milestone $3.
_SENT_TO_SINCE = """
SELECT created_at FROM notifications
WHERE recipient_id = $1 AND created_at > $2 AND milestone <> $3
  AND status NOT IN ('failed', 'bounced', 'skipped')
"""


async def journey_records(conn: asyncpg.Connection | asyncpg.Pool,
                          journey_id: str) -> list[JourneyRecord]:
    """Every record of the journey (the workflow id), oldest first."""
    return [JourneyRecord(**dict(r)) for r in await conn.fetch(_JOURNEY_RECORDS, journey_id)]


async def calls_to_holder(conn: asyncpg.Connection, policy_number: str, start: datetime,
                          end: datetime) -> int:
    return await conn.fetchval(_CALLS_TO_HOLDER, policy_number, start, end)


async def sent_to_since(conn: asyncpg.Connection, customer_id: str, since: datetime,
                        except_milestone: str) -> list[datetime]:
    return [r["created_at"] for r in await conn.fetch(_SENT_TO_SINCE, customer_id, since,
                                                      except_milestone)]


# --- a campaign's message ------------------------------------------------------------------

# Written 'sending' before the provider call, by its deterministic id; a record still
# 'queued' (a transient refusal) is tried again, any other is left as it is.
_START_CAMPAIGN_MESSAGE = """
INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, channel,
                           recipient_id, recipient_role, template_id, template_version,
                           subject, body, status, attempts, provider_ref, kind)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'sending', 1, $12, $13)
ON CONFLICT (notification_id) DO UPDATE
SET status = 'sending', attempts = notifications.attempts + 1, updated_at = now()
WHERE notifications.status = 'queued'
RETURNING true
"""
_STATUS = "SELECT status FROM notifications WHERE notification_id = $1"


async def start_campaign_message(conn: asyncpg.Connection, notification_id: str, run: str,
                                 policy_number: str, milestone: MilestoneKey,
                                 channel: Channel, recipient_id: str, role: str,
                                 rendered: RenderedMessage | None) -> bool:
    """A campaign's message on record like a journey's, `sending`; False when its record
    exists and is past `queued` (nothing to send)."""
    return bool(await conn.fetchval(
        _START_CAMPAIGN_MESSAGE, notification_id, run, policy_number, milestone, channel.value,
        recipient_id, role, rendered and rendered.template_id,
        rendered and rendered.template_version, rendered and rendered.subject,
        rendered and rendered.body, provider_ref(notification_id),
        record_kind(milestone, role).value))


async def status_of(conn: asyncpg.Connection, notification_id: str) -> str | None:
    return await conn.fetchval(_STATUS, notification_id)


# --- keys pressed during calls: the call's record --------------------------------------------

@dataclass(frozen=True)
class CalledNotification:
    notification_id: str
    journey_id: str
    policy_number: str
    template_id: str | None
    recipient_role: str | None = None


_BY_REF = """
SELECT notification_id, journey_id, policy_number, template_id, recipient_role
FROM notifications WHERE provider_ref = $1
"""


async def called_notification(conn: asyncpg.Connection, ref: str) -> CalledNotification | None:
    row = await conn.fetchrow(_BY_REF, ref)
    return CalledNotification(**dict(row)) if row else None
