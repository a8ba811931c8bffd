"""`lapse dev` as a real process: it serves, it is found, it stops cleanly and remembers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import psutil
import pytest
from temporalio import workflow
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from contract import POLICY_NUMBER
from infra.embedded import (
    NO_TEMPORAL,
    STACK_FILE,
    Stack,
    StackError,
    read_stack_file,
    resolve_endpoints,
)
from infra.migrate import load_migrations
from infra.settings import Settings
from infra.temporal import SEARCH_ATTRIBUTES
from tests.codec_helpers import DATA_CONVERTER

ROOT = Path(__file__).resolve().parents[2]
_CONFIGURED = ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_TLS_CERT",
               "TEMPORAL_TLS_KEY", "DATABASE_URL")  # fmt: skip


async def start_dev(data_dir: Path) -> tuple[asyncio.subprocess.Process, dict]:
    env = {k: v for k, v in os.environ.items() if k not in _CONFIGURED}
    env["LAPSE_DATA_DIR"] = str(data_dir)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "starter.py", "dev", "--json",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        if not line:
            _, stderr = await process.communicate()
            pytest.fail(f"lapse dev exited with {process.returncode}: {stderr.decode()}")
        return process, json.loads(line)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise


async def stop_dev(process: asyncio.subprocess.Process, sig: signal.Signals) -> int:
    process.send_signal(sig)
    return await asyncio.wait_for(process.wait(), timeout=30)


def processes_using(data_dir: Path) -> list[psutil.Process]:
    """Live processes started with the data folder on their command line."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] != psutil.STATUS_ZOMBIE and any(
            str(data_dir) in part for part in cmdline
        ):
            found.append(process)
    return found


async def wait_until_gone(
    data_dir: Path, seconds: float = 10, but: frozenset[str] = frozenset()
) -> list[psutil.Process]:
    """Wait until no process uses the data folder (`but` names may stay); the rest left."""
    for _ in range(int(seconds * 10)):
        left = processes_using(data_dir)
        if {process.name() for process in left} <= but:
            return left
        await asyncio.sleep(0.1)
    return left


def http_status(url: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        request = urllib.request.Request(url, data, headers or {})
        with opener.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def ui_settings(ui_url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{ui_url}/api/v1/settings", timeout=10) as response:
        return json.load(response)


async def test_lapse_dev_serves_is_found_and_stops_cleanly(short_tmp):
    data_dir = short_tmp / "data"
    process, addresses = await start_dev(data_dir)
    try:
        assert addresses["data_dir"] == str(data_dir)
        assert await asyncio.to_thread(http_status, addresses["ui_url"]) == 200
        assert await asyncio.to_thread(http_status, addresses["console_url"] + "/healthz") == 200
        # The Web UI asks the codec server, which decodes only for a bearer of the token.
        codec = addresses["codec_endpoint"]
        settings = await asyncio.to_thread(ui_settings, addresses["ui_url"])
        assert settings["Codec"]["Endpoint"] == codec
        token = (data_dir / "codec-token").read_text().strip()
        empty = b'{"payloads": []}'
        json_body = {"Content-Type": "application/json"}
        assert await asyncio.to_thread(http_status, f"{codec}/decode", empty, json_body) == 401
        assert await asyncio.to_thread(http_status, f"{codec}/decode", empty, {
            **json_body, "Authorization": f"Bearer {token}"}) == 200

        conn = await asyncpg.connect(addresses["database_url"])
        try:
            assert await conn.fetchval("SELECT name FROM schema_migrations") == "0001_initial"
        finally:
            await conn.close()

        client = await Client.connect(addresses["temporal_address"], data_converter=DATA_CONVERTER)
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        for key in SEARCH_ATTRIBUTES:
            assert listed.custom_attributes[key.name] == int(key.indexed_value_type)

        # Other commands find this stack through DATA_DIR/stack.json.
        assert read_stack_file(data_dir).pid == process.pid
        # `./run temporal` is Temporal's CLI on this stack, reading payloads through its
        # codec server: a summary sealed by a client reads in clear.
        await client.start_workflow("NoWorkerHere", id="dev-cli", task_queue="dev-cli-none",
                                    static_summary="sealed summary 密封")
        env = {k: v for k, v in os.environ.items() if k not in _CONFIGURED}
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "starter.py", "temporal", "workflow", "describe", "-w", "dev-cli",
            "-o", "json", cwd=ROOT, env={**env, "LAPSE_DATA_DIR": str(data_dir)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(cli.communicate(), 30)
        assert cli.returncode == 0, err.decode()
        assert "sealed summary 密封" in out.decode()
        settings = Settings.from_env({"LAPSE_DATA_DIR": str(data_dir)})
        async with resolve_endpoints(settings) as endpoints:
            assert endpoints.database_url == addresses["database_url"]
            assert endpoints.require_temporal() == addresses["temporal_address"]
        with pytest.raises(StackError, match="already running"):
            async with Stack(settings):
                pass

        servers = processes_using(data_dir)
        assert {p.name() for p in servers} >= {"temporal", "postgres"}
    finally:
        code = await stop_dev(process, signal.SIGTERM)
    assert code == 0, (await process.stderr.read()).decode()
    assert await wait_until_gone(data_dir) == []
    assert not (data_dir / STACK_FILE).exists()


async def test_lapse_dev_keeps_workflows_across_restarts_even_after_a_kill(short_tmp):
    data_dir = short_tmp / "data"
    process, addresses = await start_dev(data_dir)
    try:
        client = await Client.connect(addresses["temporal_address"], data_converter=DATA_CONVERTER)
        # Nobody polls this task queue: the workflow simply stays open.
        await client.start_workflow(
            "PersistenceProbe",
            id="probe-1",
            task_queue="nobody-polls-this",
            search_attributes=TypedSearchAttributes([SearchAttributePair(POLICY_NUMBER, "P-1")]),
        )
    finally:
        assert await stop_dev(process, signal.SIGTERM) == 0

    process, addresses = await start_dev(data_dir)
    try:
        client = await Client.connect(addresses["temporal_address"], data_converter=DATA_CONVERTER)
        described = await client.get_workflow_handle("probe-1").describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
        assert described.typed_search_attributes.get(POLICY_NUMBER) == "P-1"
    finally:
        # A kill gives no chance to clean up: Temporal goes with its parent, while
        # PostgreSQL (a daemon) stays until the next `lapse dev` takes it over.
        await stop_dev(process, signal.SIGKILL)
    left = await wait_until_gone(data_dir, but=frozenset({"postgres"}))
    assert {process.name() for process in left} == {"postgres"}
    assert read_stack_file(data_dir) is None

    process, addresses = await start_dev(data_dir)
    assert await stop_dev(process, signal.SIGTERM) == 0
    assert await wait_until_gone(data_dir) == []


async def test_without_lapse_dev_commands_get_a_database_but_no_temporal(short_tmp):
    settings = Settings.from_env({"LAPSE_DATA_DIR": str(short_tmp / "data")})
    async with resolve_endpoints(settings) as endpoints:
        conn = await asyncpg.connect(endpoints.database_url)
        try:
            applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
            assert applied == len(load_migrations())
        finally:
            await conn.close()
        with pytest.raises(StackError) as caught:
            endpoints.require_temporal()
        assert str(caught.value) == NO_TEMPORAL
    assert await wait_until_gone(short_tmp) == []


@workflow.defn(name="SearchAttributeProbe", sandboxed=False)  # a test-module probe
class SearchAttributeProbe:
    @workflow.run
    async def run(self, policy_number: str) -> str:
        await workflow.sleep(timedelta(days=30))
        workflow.upsert_search_attributes([POLICY_NUMBER.value_set(policy_number)])
        return policy_number


async def test_time_skipping_env_fixture_skips_and_knows_the_search_attributes(
    time_skipping_env,
):
    client = time_skipping_env.client
    task_queue = f"probe-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[SearchAttributeProbe]):
        # An unregistered search attribute would fail the workflow task and hang here.
        result = await asyncio.wait_for(
            client.execute_workflow(
                SearchAttributeProbe.run, "P-TS", id="probe-P-TS", task_queue=task_queue
            ),
            timeout=10,
        )
    assert result == "P-TS"


async def test_dev_env_fixture_finds_workflows_by_search_attribute(dev_env):
    policy_number = f"P-{uuid.uuid4().hex[:8]}"
    handle = await dev_env.client.start_workflow(
        "SearchAttributeProbe",
        policy_number,
        id=f"probe-{policy_number}",
        task_queue="nobody-polls-this",
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(POLICY_NUMBER, policy_number)]
        ),
    )
    query = f"PolicyNumber = '{policy_number}'"
    for _ in range(50):  # visibility is eventually consistent
        found = [w.id async for w in dev_env.client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.1)
    assert found == [handle.id]
    await handle.terminate()
