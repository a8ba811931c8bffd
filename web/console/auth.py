"""Who may use the console: agent accounts with argon2-hashed passwords, sessions that
end after idle time and at the end of a shift, a CSRF token per session for every form,
and a short lock after repeated wrong passwords."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from infra import console_queries as q

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
PASSWORD_MIN, PASSWORD_MAX = 10, 128
_hasher = PasswordHasher()


class AccountError(ValueError):
    """A bad account name or password for `lapse console add-agent`; says which rule."""


class SignInRefused(Exception):
    """Wrong name or password, or a locked account; the message is for the sign-in page."""


@dataclass(frozen=True)
class SessionRules:
    idle: timedelta = timedelta(minutes=30)
    lasts: timedelta = timedelta(hours=10)  # a shift, then sign in again
    lock_after: int = 5  # wrong passwords in a row
    lock_for: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Agent:
    """The signed-in agent of a request."""

    name: str
    display_name: str
    csrf_token: str


def check_account(name: str, password: str) -> None:
    if not NAME.match(name):
        raise AccountError("the agent name must be 2-32 characters: a-z, 0-9, '.', '_' or "
                           "'-', starting with a letter or digit")
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AccountError(f"the password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")


_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # what new_token makes


def new_token() -> str:
    return secrets.token_urlsafe(32)


def well_formed(token: str | None) -> bool:
    return bool(token) and bool(_TOKEN.match(token))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(given: str | None, expected: str | None) -> bool:
    return bool(given and expected) and hmac.compare_digest(given, expected)


@cache
def _stand_in_hash() -> str:
    # Verified against when the name is unknown, so that both answers take as long.
    return _hasher.hash(new_token())


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def save_agent(pool: asyncpg.Pool, name: str, password: str, *,
                     display_name: str | None = None, reset: bool = False) -> None:
    """Create the account, or with `reset` give an existing one a new password (its open
    sessions end). AccountError says what is wrong."""
    check_account(name, password)
    hashed = await asyncio.to_thread(_hasher.hash, password)
    async with pool.acquire() as conn:
        if reset:
            if not await q.set_password(conn, name, hashed, display_name):
                raise AccountError(f"there is no agent {name}")
        elif not await q.add_agent(conn, name, display_name or name, hashed):
            raise AccountError(f"agent {name} exists already (use --reset for a new password)")


async def sign_in(pool: asyncpg.Pool, name: str, password: str,
                  rules: SessionRules) -> tuple[str, Agent]:
    """A new session for the right password: (the cookie's token, the agent)."""
    async with pool.acquire() as conn:
        row = await q.agent(conn, name) if NAME.match(name) else None
        if row and row.locked_until and row.locked_until > datetime.now(UTC):
            raise SignInRefused("连续输错密码次数过多，账户已暂时锁定，请稍后再试。")
        right = await asyncio.to_thread(_verify, row.password_hash if row else _stand_in_hash(),
                                        password)
        if row is None or not right:
            if row is not None:
                await q.login_failed(conn, name, rules.lock_after, rules.lock_for)
            raise SignInRefused("用户名或密码不正确。")
        await q.login_succeeded(conn, name)
        if _hasher.check_needs_rehash(row.password_hash):
            await q.rehash(conn, name, await asyncio.to_thread(_hasher.hash, password))
        token, csrf = new_token(), new_token()
        await q.end_stale_sessions(conn, rules.idle)
        await q.new_session(conn, token_hash(token), name, csrf, rules.lasts)
    return token, Agent(name, row.display_name, csrf)


async def session_agent(pool: asyncpg.Pool, token: str | None,
                        rules: SessionRules) -> Agent | None:
    """The agent of a live session (its idle clock restarts), or None."""
    if not token:
        return None
    async with pool.acquire() as conn:
        row = await q.touch_session(conn, token_hash(token), rules.idle)
    return Agent(row.agent, row.display_name, row.csrf_token) if row else None


async def sign_out(pool: asyncpg.Pool, token: str) -> None:
    async with pool.acquire() as conn:
        await q.end_session(conn, token_hash(token))
