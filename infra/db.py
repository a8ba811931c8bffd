"""PostgreSQL connections: a pool whose json/jsonb columns read and write Python values."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg
from pydantic_core import to_jsonable_python

# Database names are identifiers, which SQL cannot take as parameters: only these pass.
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _dumps(value: object) -> str:
    # A str is JSON text already (e.g. a model's model_dump_json()), as asyncpg takes it
    # without a codec. Decimal, date, datetime, Enum and models become their JSON forms.
    if isinstance(value, str):
        return value
    return json.dumps(value, default=to_jsonable_python, ensure_ascii=False)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Make json and jsonb read as Python objects; write objects or JSON text."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_dumps, decoder=json.loads, schema="pg_catalog"
        )


async def connect_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection
    )


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the same codecs as the pool's, for short scripts."""
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    return conn


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection from the pool inside one transaction: all of it is stored, or none."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server address and credentials, another database."""
    return urlsplit(dsn)._replace(path=f"/{database}").geturl()


def _quoted(database: str) -> str:
    if not _DATABASE_NAME.match(database):
        raise ValueError(f"unsupported database name {database!r}: use a-z, 0-9 and _")
    return f'"{database}"'


async def create_database(server_dsn: str, database: str) -> bool:
    """Create the database unless it exists; True if it was created."""
    conn = await asyncpg.connect(server_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if exists:
            return False
        try:
            await conn.execute(f"CREATE DATABASE {_quoted(database)}")
        except asyncpg.DuplicateDatabaseError:  # created meanwhile by another process
            return False
        return True
    finally:
        await conn.close()


async def drop_database(server_dsn: str, database: str) -> None:
    """Drop the database, closing whatever connections are still open on it."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quoted(database)} WITH (FORCE)")
    finally:
        await conn.close()
