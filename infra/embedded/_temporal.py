"""The embedded Temporal dev server (`temporal server start-dev`) on free local ports."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from infra.embedded._common import TEMPORAL_BIN, StackError, start_or_stop
from infra.temporal import ensure_search_attributes, search_attribute_flags

# The dev server keeps all its state (histories, timers, task queues, visibility) in one
# SQLite file behind a single connection, so every write of every workflow waits for the
# one before it. SQLite's defaults (a rollback journal, synchronous=FULL) sync the disk
# several times per commit: a burst of first reminders then drained at about 5 a second
# whatever the workers did (issue 14). A write-ahead log synced at checkpoints keeps the
# file consistent across a crash of the server; only a power cut may lose the last
# commits, which a development server can afford.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


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
        codec_endpoint: str | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        launch_attempts: int = 3,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.namespace = namespace
        self.ui = ui
        # The codec server the Web UI asks to decode payloads (`lapse dev`, the demo).
        self.codec_endpoint = codec_endpoint
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.launch_attempts = launch_attempts
        self.db_file = self.data_dir / "temporal.sqlite"
        self.log_file = self.data_dir / "temporal.log"
        self.address: str | None = None
        self.ui_url: str | None = None
        self._process: subprocess.Popen | None = None
        self._ui_port: int | None = None
        self._log_from = 0  # where this launch's lines begin in the log

    def launch(self) -> None:
        """Start the process and return at once; `wait_ready` waits for it to answer."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port, http_port, metrics_port, ui_port = free_ports(4)
        args = [
            str(TEMPORAL_BIN), "server", "start-dev",
            "--db-filename", str(self.db_file),
            *(arg for pragma in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)),
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
            if self.codec_endpoint:
                args += ["--ui-codec-endpoint", self.codec_endpoint]
        else:
            args.append("--headless")
        with self.log_file.open("a", encoding="utf-8") as log:
            self._log_from = log.tell()
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
        """Launch and wait until it answers. The ports are free when chosen, but another
        process (any outgoing connection takes an ephemeral port) may bind one before the
        server does, which then exits at once: that launch is retried on fresh ports."""
        for attempt in range(1, self.launch_attempts + 1):
            self.launch()
            process = self._process
            try:
                await start_or_stop(self.wait_ready, self.stop)
            except StackError:
                if attempt < self.launch_attempts and self._lost_a_port(process):
                    continue
                raise
            return self
        raise AssertionError("unreachable")

    def _lost_a_port(self, process: subprocess.Popen) -> bool:
        """Whether this launch exited by itself because a port was taken before it could
        bind it (not stopped by us after a timeout)."""
        if process.returncode is None or process.returncode < 0:
            return False
        with self.log_file.open(encoding="utf-8", errors="replace") as log:
            log.seek(self._log_from)
            return "address already in use" in log.read()

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
