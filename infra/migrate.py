"""Schema migrations: migrations/NNNN_name.sql applied in order, once, from any process."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"

# One arbitrary, fixed key: every process migrating this database queues on it.
_LOCK_KEY = 0x6C61707365_0001  # "lapse", 1

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations on disk and those recorded in the database disagree, or one failed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file name without .sql, e.g. 0001_initial
    path: Path
    sql: str
    checksum: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order, checked for names and duplicate versions."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(
                f"{path.name}: migration files must be named NNNN_name.sql (e.g. 0002_add_x.sql)"
            )
        version = int(match.group(1))
        if version in migrations:
            other = migrations[version].path.name
            raise MigrationError(f"{path.name}: version {version:04d} is also used by {other}")
        data = path.read_bytes()
        migrations[version] = Migration(
            version=version,
            name=path.stem,
            path=path,
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )
    return [migrations[version] for version in sorted(migrations)]


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations, each in its own transaction; return their names.

    Safe to re-run (then a no-op) and to run from several processes at once: they take
    turns on an advisory lock, and the later ones find nothing left to do.
    """
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(_CREATE_TABLE)
            applied = {
                row["version"]: row
                for row in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
            }
            _check_applied(migrations, applied)
            done = []
            for migration in migrations:
                if migration.version not in applied:
                    await _apply(conn, migration)
                    done.append(migration.name)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()


def _check_applied(migrations: list[Migration], applied: dict[int, asyncpg.Record]) -> None:
    known = {migration.version: migration for migration in migrations}
    for version, row in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {row['name']}, which is not among the "
                "migration files: run a version of lapse-notifier that has it"
            )
        if migration.checksum != row["checksum"]:
            raise MigrationError(
                f"{migration.path.name} was changed after it was applied "
                "(checksum differs): restore it and put the change in a new migration"
            )


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            if migration.sql.strip():  # asyncpg fails on an empty query
                await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as error:
        raise MigrationError(f"{migration.path.name} failed: {error}") from error
