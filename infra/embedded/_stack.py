"""The Stack: PostgreSQL (migrated) and Temporal for a local run, embedded unless configured."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import psutil

from infra.embedded._common import CleanupMode, StackError, start_or_stop
from infra.embedded._postgres import EmbeddedPostgres
from infra.embedded._stack_file import (
    STACK_FILE,
    StackInfo,
    read_stack_file,
    write_stack_file,
)
from infra.embedded._temporal import EmbeddedTemporal
from infra.migrate import migrate
from infra.settings import Settings
from infra.temporal import connect_client, ensure_search_attributes


class Stack:
    """Everything a local run needs: PostgreSQL (migrated) and Temporal, embedded unless
    DATABASE_URL / TEMPORAL_ADDRESS point elsewhere. Stops what it started on exit."""

    def __init__(
        self,
        settings: Settings,
        *,
        ui: bool = True,
        postgres_cleanup: CleanupMode = "stop",
        codec_endpoint: str | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.namespace = settings.temporal_namespace
        self.ui = ui
        self.postgres_cleanup = postgres_cleanup
        self.codec_endpoint = codec_endpoint
        self.database_url: str | None = None
        self.temporal_address: str | None = None
        self.ui_url: str | None = None
        self._postgres: EmbeddedPostgres | None = None
        self._temporal: EmbeddedTemporal | None = None
        self._published = False

    async def __aenter__(self) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        running = read_stack_file(self.data_dir)
        if running is not None:
            raise StackError(
                f"`lapse dev` (or a demo) is already running on {self.data_dir} "
                f"(pid {running.pid}): stop it first, or set another LAPSE_DATA_DIR"
            )
        await start_or_stop(self._start, self._stop)
        return self

    async def _start(self) -> None:
        settings = self.settings
        if settings.temporal_address is None:
            # The dev server starts in the background while PostgreSQL comes up.
            self._temporal = EmbeddedTemporal(self.data_dir, namespace=self.namespace, ui=self.ui,
                                              codec_endpoint=self.codec_endpoint)
            self._temporal.launch()
        if settings.database_url is None:
            self._postgres = EmbeddedPostgres(
                self.data_dir / "postgres", cleanup_mode=self.postgres_cleanup
            )
            await self._postgres.start()
            self.database_url = self._postgres.dsn
        else:
            self.database_url = settings.database_url.get_secret_value()
        await migrate(self.database_url)
        if self._temporal is not None:
            await self._temporal.wait_ready()
            self.temporal_address = self._temporal.address
            self.ui_url = self._temporal.ui_url
        else:
            self.temporal_address = settings.temporal_address
            client = await connect_client(settings)
            await ensure_search_attributes(client, self.namespace)
        self._info = StackInfo(
            # Only embedded endpoints: a configured URL may hold a password.
            database_url=self._postgres.dsn if self._postgres else None,
            temporal_address=self.temporal_address,
            ui_url=self.ui_url,
            namespace=self.namespace,
            pid=os.getpid(),
            started_at=psutil.Process().create_time(),
            codec_endpoint=self.codec_endpoint,
        )
        write_stack_file(self.data_dir, self._info)
        self._published = True

    def publish_sandbox(self, url: str) -> None:
        """Tell the other commands (and `lapse-worker`) where the sandbox providers are."""
        self._info = dataclasses.replace(self._info, sandbox_url=url)
        write_stack_file(self.data_dir, self._info)

    async def __aexit__(self, *exc_info) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self._published:
            (self.data_dir / STACK_FILE).unlink(missing_ok=True)
            self._published = False
        stops = [server.stop() for server in (self._temporal, self._postgres) if server]
        self._temporal = self._postgres = None
        results = await asyncio.gather(*stops, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
