"""Named queries of the agents' console (web/console/): its own tables (console_agents,
console_sessions, console_audit, console_page_views) and its read model of a policy and
its customer. A journey page's message records and letters are infra/deliveries.py's and
infra/print_queue.py's; the journey's own state comes from `journey_port`, never from here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

# --- accounts ------------------------------------------------------------------------------

_AGENT = """
SELECT name, display_name, password_hash, failed_logins, locked_until
FROM console_agents WHERE name = $1
"""
_ADD_AGENT = """
INSERT INTO console_agents (name, display_name, password_hash) VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING RETURNING true
"""
_SET_PASSWORD = """
UPDATE console_agents SET password_hash = $2, display_name = COALESCE($3, display_name),
       failed_logins = 0, locked_until = NULL, password_set_at = now()
WHERE name = $1 RETURNING true
"""
_REHASH = "UPDATE console_agents SET password_hash = $2 WHERE name = $1"
_REMOVE_AGENT = "DELETE FROM console_agents WHERE name = $1 RETURNING true"
_LOGIN_FAILED = """
UPDATE console_agents SET failed_logins = failed_logins + 1,
       locked_until = CASE WHEN failed_logins + 1 >= $2 THEN now() + $3::interval
                           ELSE locked_until END
WHERE name = $1
"""
_LOGIN_SUCCEEDED = """
UPDATE console_agents SET failed_logins = 0, locked_until = NULL WHERE name = $1
"""
_END_AGENT_SESSIONS = "DELETE FROM console_sessions WHERE agent = $1"


@dataclass(frozen=True)
class AgentRow:
    name: str
    display_name: str
    password_hash: str
    failed_logins: int
    locked_until: datetime | None


async def agent(conn: asyncpg.Connection, name: str) -> AgentRow | None:
    row = await conn.fetchrow(_AGENT, name)
    return AgentRow(**dict(row)) if row else None


async def add_agent(conn: asyncpg.Connection, name: str, display_name: str,
                    password_hash: str) -> bool:
    """False when an account of that name exists already."""
    return bool(await conn.fetchval(_ADD_AGENT, name, display_name, password_hash))


async def set_password(conn: asyncpg.Connection, name: str, password_hash: str,
                       display_name: str | None) -> bool:
    """New password (and its sessions ended); False when there is no such account."""
    async with conn.transaction():
        changed = bool(await conn.fetchval(_SET_PASSWORD, name, password_hash, display_name))
        await conn.execute(_END_AGENT_SESSIONS, name)
    return changed


async def rehash(conn: asyncpg.Connection, name: str, password_hash: str) -> None:
    await conn.execute(_REHASH, name, password_hash)


async def remove_agent(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval(_REMOVE_AGENT, name))  # sessions go with it (cascade)


async def login_failed(conn: asyncpg.Connection, name: str, lock_after: int,
                       lock_for: timedelta) -> None:
    await conn.execute(_LOGIN_FAILED, name, lock_after, lock_for)


async def login_succeeded(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(_LOGIN_SUCCEEDED, name)


# --- sessions ------------------------------------------------------------------------------

_NEW_SESSION = """
INSERT INTO console_sessions (token_hash, agent, csrf_token, expires_at)
VALUES ($1, $2, $3, now() + $4::interval)
"""
# A session is alive until its absolute end and while it is used; each use restarts the
# idle clock. Ended sessions are deleted at each sign-in (_END_STALE_SESSIONS).
_TOUCH_SESSION = """
UPDATE console_sessions s SET last_seen_at = now()
FROM console_agents a
WHERE s.token_hash = $1 AND a.name = s.agent
  AND s.expires_at > now() AND s.last_seen_at > now() - $2::interval
RETURNING s.agent, a.display_name, s.csrf_token
"""
_END_SESSION = "DELETE FROM console_sessions WHERE token_hash = $1"
_END_STALE_SESSIONS = """
DELETE FROM console_sessions WHERE expires_at <= now() OR last_seen_at <= now() - $1::interval
"""


@dataclass(frozen=True)
class SessionRow:
    agent: str
    display_name: str
    csrf_token: str


async def new_session(conn: asyncpg.Connection, token_hash: str, agent_name: str,
                      csrf_token: str, lasts: timedelta) -> None:
    await conn.execute(_NEW_SESSION, token_hash, agent_name, csrf_token, lasts)


async def touch_session(conn: asyncpg.Connection, token_hash: str,
                        idle: timedelta) -> SessionRow | None:
    row = await conn.fetchrow(_TOUCH_SESSION, token_hash, idle)
    return SessionRow(**dict(row)) if row else None


async def end_session(conn: asyncpg.Connection, token_hash: str) -> None:
    await conn.execute(_END_SESSION, token_hash)


async def end_stale_sessions(conn: asyncpg.Connection, idle: timedelta) -> None:
    await conn.execute(_END_STALE_SESSIONS, idle)


# --- the audit and the page-view log -------------------------------------------------------

_AUDIT = """
INSERT INTO console_audit (agent, policy_number, action, reference, detail, result)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING audit_id
"""
_AUDIT_ENTRY = """
SELECT audit_id, at, agent, policy_number, action, reference, detail, result
FROM console_audit WHERE audit_id = $1
"""
_PAGE_VIEWS = """
INSERT INTO console_page_views (agent, policy_number, page)
SELECT $1, policy_number, $3 FROM unnest($2::text[]) AS policy_number
"""


@dataclass(frozen=True)
class AuditEntry:
    audit_id: int
    at: datetime
    agent: str
    policy_number: str | None
    action: str
    reference: str | None
    detail: str | None
    result: str


async def audit(conn: asyncpg.Connection, agent_name: str, action: str, result: str, *,
                policy_number: str | None = None, reference: str | None = None,
                detail: str | None = None) -> int:
    return await conn.fetchval(_AUDIT, agent_name, policy_number, action, reference, detail,
                               result)


async def audit_entry(conn: asyncpg.Connection, audit_id: int) -> AuditEntry | None:
    row = await conn.fetchrow(_AUDIT_ENTRY, audit_id)
    return AuditEntry(**dict(row)) if row else None


async def log_page_view(conn: asyncpg.Connection, agent_name: str, policy_numbers: list[str],
                        page: str) -> None:
    if policy_numbers:
        await conn.execute(_PAGE_VIEWS, agent_name, policy_numbers, page)


# --- a policy and its customer --------------------------------------------------------------

_POLICY = """
SELECT p.policy_number, p.status, p.due_date, p.premium, pr.name AS product_name,
       pr.kind AS product_kind, c.customer_id, c.name, c.gender, c.is_organisation,
       c.mobile, c.email, c.wechat_openid, c.postal_address
FROM policies p
JOIN products pr ON pr.code = p.product_code
JOIN customers c ON c.customer_id = p.policyholder_id
WHERE p.policy_number = $1
"""
# The policyholder or the insured person whose mobile ends in the digits a caller gives.
_BY_PHONE_TAIL = """
SELECT p.policy_number, pr.name AS product_name, c.name, c.gender, c.is_organisation,
       c.mobile, 'policyholder' AS role
FROM customers c
JOIN policies p ON p.policyholder_id = c.customer_id
JOIN products pr ON pr.code = p.product_code
WHERE right(c.mobile, 4) = $1
UNION
SELECT p.policy_number, pr.name, c.name, c.gender, c.is_organisation, c.mobile, 'insured'
FROM customers c
JOIN policy_insured i ON i.customer_id = c.customer_id AND i.role = 'insured'
JOIN policies p ON p.policy_number = i.policy_number AND p.policyholder_id <> c.customer_id
JOIN products pr ON pr.code = p.product_code
WHERE right(c.mobile, 4) = $1
ORDER BY policy_number, role
LIMIT $2
"""


@dataclass(frozen=True)
class PolicyRow:
    policy_number: str
    status: str
    due_date: object
    premium: object
    product_name: str
    product_kind: str
    customer_id: str
    name: str
    gender: str | None
    is_organisation: bool
    mobile: str | None
    email: str | None
    wechat_openid: str | None
    postal_address: dict | None


@dataclass(frozen=True)
class PhoneMatch:
    policy_number: str
    product_name: str
    name: str
    gender: str | None
    is_organisation: bool
    mobile: str
    role: str


async def policy(conn: asyncpg.Connection, policy_number: str) -> PolicyRow | None:
    row = await conn.fetchrow(_POLICY, policy_number)
    return PolicyRow(**dict(row)) if row else None


async def by_phone_tail(conn: asyncpg.Connection, digits: str,
                        limit: int = 20) -> list[PhoneMatch]:
    return [PhoneMatch(**dict(r)) for r in await conn.fetch(_BY_PHONE_TAIL, digits, limit)]
