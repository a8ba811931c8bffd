"""Finding the database and Temporal from a command that does not start them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from infra.embedded._common import StackError
from infra.embedded._postgres import EmbeddedPostgres
from infra.embedded._stack_file import read_stack_file
from infra.migrate import migrate
from infra.settings import Settings

NO_TEMPORAL = "no Temporal server: run `lapse dev` in another terminal or set TEMPORAL_ADDRESS"


@dataclass
class Endpoints:
    """Where the database and Temporal are for a command that does not start them."""

    database_url: str | None
    temporal_address: str | None

    def require_temporal(self) -> str:
        if self.temporal_address is None:
            raise StackError(NO_TEMPORAL)
        return self.temporal_address


@contextlib.asynccontextmanager
async def resolve_endpoints(
    settings: Settings, *, database: bool = True
) -> AsyncIterator[Endpoints]:
    """Settings first, then a running `lapse dev` on the data folder; failing both, the
    database is the embedded one on the data folder (started here, stopped on exit,
    unless someone else holds it) and Temporal is missing (`require_temporal` says so).

    The database is migrated, so a fresh one is ready for use.
    """
    running = read_stack_file(settings.data_dir)
    temporal_address = settings.temporal_address or (running.temporal_address if running else None)
    if not database:
        yield Endpoints(database_url=None, temporal_address=temporal_address)
        return
    if settings.database_url is not None:
        database_url = settings.database_url.get_secret_value()
    elif running is not None and running.database_url is not None:
        database_url = running.database_url
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with EmbeddedPostgres(settings.data_dir / "postgres") as postgres:
            await migrate(postgres.dsn)
            yield Endpoints(database_url=postgres.dsn, temporal_address=temporal_address)
        return
    await migrate(database_url)
    yield Endpoints(database_url=database_url, temporal_address=temporal_address)
