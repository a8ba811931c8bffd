"""Shared fixtures: an embedded PostgreSQL with a fresh database per test, and Temporal
environments (time-skipping per test, one dev server per session)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from infra.db import connect_pool, create_database, drop_database, dsn_with_database
from infra.embedded import BIN_DIR, TEMPORAL_BIN, EmbeddedPostgres
from infra.migrate import migrate
from infra.temporal import SEARCH_ATTRIBUTES, ensure_search_attributes
from tests.codec_helpers import DATA_CONVERTER, TEST_KEY_ENTRY

TEST_SERVER_BIN = BIN_DIR / "temporal-test-server"
_SERVER_NAMES = {"temporal", "temporal-test-server", "postgres"}
# `lapse` and `lapse-worker` processes of the tests seal payloads like the tests' clients.
os.environ["LAPSE_PAYLOAD_KEYS"] = TEST_KEY_ENTRY


def _private_dir(prefix: str) -> Path:
    # Under /tmp rather than pytest's basetemp: embedded PostgreSQL (running as its own
    # user when we are root) widens the permissions of every parent folder, which pytest
    # narrows again for its own folders, possibly under a server still running.
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A fresh folder with a short path, for data folders of embedded servers."""
    path = _private_dir("lapse-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres() -> AsyncIterator[EmbeddedPostgres]:
    """One embedded PostgreSQL for the session, deleted afterwards."""
    parent = _private_dir("lapse-test-pg-")
    try:
        async with EmbeddedPostgres(
            parent / "postgres", database="postgres", cleanup_mode="delete"
        ) as server:
            yield server
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest_asyncio.fixture
async def empty_db_url(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """A new, empty database for this test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex}"
    await create_database(postgres.server_dsn, name)
    try:
        yield dsn_with_database(postgres.server_dsn, name)
    finally:
        await drop_database(postgres.server_dsn, name)


@pytest_asyncio.fixture
async def db_url(empty_db_url: str) -> str:
    """A new database for this test with every migration applied."""
    await migrate(empty_db_url)
    return empty_db_url


@pytest_asyncio.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect_pool(db_url, max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, one per test (a shared one may stop skipping)."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER,
        test_server_existing_path=str(TEST_SERVER_BIN),
    )
    try:
        # It fails workflow tasks that set unregistered search attributes.
        await ensure_search_attributes(env.client, env.client.namespace)
        yield env
    finally:
        await env.shutdown()


def pytest_addoption(parser: pytest.Parser) -> None:
    # As in Temporal's samples: the tests that run on a real server (`dev_env`) can run
    # against any Temporal: `local` (default) starts the embedded dev server, HOST:PORT
    # connects to a running cluster (its search attributes must be registered: README,
    # Production). Tests that need to skip time keep the time-skipping test server.
    parser.addoption("--workflow-environment", default="local",
                     help="local (the embedded dev server) or HOST:PORT of a Temporal "
                          "server for the tests that use a real one")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_server(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """One Temporal dev server for the session (in memory, no UI), or the server that
    --workflow-environment names; yields its address."""
    target = request.config.getoption("--workflow-environment")
    if target not in ("local", "time-skipping"):
        client = await Client.connect(target, data_converter=DATA_CONVERTER)
        await ensure_search_attributes(client, client.namespace)
        yield target
        return
    env = await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=str(TEMPORAL_BIN),
        search_attributes=SEARCH_ATTRIBUTES,
    )
    try:
        yield env.client.service_client.config.target_host
    finally:
        await env.shutdown()


@pytest_asyncio.fixture
async def dev_env(dev_server: str) -> WorkflowEnvironment:
    """The session's dev server through a client made in this test's event loop.

    Use a fresh task queue and workflow id per test: the server is shared.
    """
    client = await Client.connect(dev_server, data_converter=DATA_CONVERTER)
    return WorkflowEnvironment.from_client(client)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (`timeout`, CI cancelling a job) then tears the fixtures down like Ctrl-C
    # does, instead of leaving the session's servers running.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


@pytest.hookimpl(trylast=True)  # after the session fixtures have been torn down
def pytest_sessionfinish(session: pytest.Session) -> None:
    """A safety net: a server process of ours still running now is a leak; end it."""
    leaked = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name() in _SERVER_NAMES:
                child.terminate()
                leaked.append(child)
    psutil.wait_procs(leaked, timeout=5)
    if leaked:
        warnings.warn(f"server processes were left running: {leaked}", stacklevel=1)
