"""`lapse-worker` in production: SIGTERM while busy, Prometheus metrics, JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import sys
import urllib.request
import uuid
from datetime import date

from temporalio.service import RPCError

from activities.scan import scan_policies
from infra import logging as json_logging
from infra import metrics
from infra.embedded import free_ports
from infra.journeys import Journeys
from tests.journey_helpers import ProviderDouble, journey_worker
from tests.ops_helpers import ROOT, clean_env, eventually, load_sample_as, unique_prefix

AS_OF = date(2026, 11, 27)
SCALE = 100_000  # journey seconds per second: the worker is busy at once


async def _notifications(pool, prefix: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM notifications WHERE policy_number LIKE $1",
                               f"{prefix}-%")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def test_sigterm_stops_a_busy_worker_gracefully_and_others_carry_on(dev_env, pool,
                                                                          db_url):
    prefix = unique_prefix()
    numbers = await load_sample_as(pool, prefix)
    queue = f"test-{uuid.uuid4().hex[:8]}"
    (port,) = free_ports(1)
    env = clean_env(TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
                    DATABASE_URL=db_url, TEMPORAL_TASK_QUEUE=queue,
                    LAPSE_METRICS_PORT=str(port), LAPSE_TIME_SCALE=str(SCALE))
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        journeys = Journeys(dev_env.client, queue)
        summary = await scan_policies(pool, journeys, AS_OF, time_scale=SCALE)
        assert sum(summary.started.values()) == 17
        async def busy() -> bool:
            return await _notifications(pool, prefix) >= 5
        assert await eventually(busy, 30), "the worker never got busy"

        page = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert "temporal_" in page  # the SDK's own metrics, served for Prometheus

        worker.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(worker.communicate(), 40)
        assert worker.returncode == 0, err.decode()[-2000:]
        lines = [json.loads(x) for x in err.decode().splitlines() if x.startswith("{")]
        messages = [x["msg"] for x in lines]
        assert "worker stopping: finishing work in flight" in messages
        assert messages[-1] == "worker stopped"
        assert "+86" not in err.decode() and "@example.com" not in err.decode()

        # Whatever was in flight went back to the server: another worker carries on.
        before = await _notifications(pool, prefix)
        async with journey_worker(dev_env.client, pool, ProviderDouble(), task_queue=queue):
            async def progressed() -> bool:
                return await _notifications(pool, prefix) > before
            assert await eventually(progressed, 30)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        for n in numbers:
            try:
                await dev_env.client.get_workflow_handle(f"lapse-{n}").terminate("test over")
            except RPCError:
                pass


def test_log_lines_are_json_without_personal_data():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_logging.JsonFormatter())
    log = logging.getLogger(f"test.{uuid.uuid4().hex}")
    log.addHandler(handler)
    log.propagate = False
    log.warning("send to +8613800000001 failed for customer0001@example.com",
                extra={"policy_number": "P2026000001", "mobile": "+8613800000001",
                       "channel": "sms", "id_number": "11010119850312101X"})
    line = json.loads(stream.getvalue())
    assert line["level"] == "warning" and line["policy_number"] == "P2026000001"
    assert line["channel"] == "sms"
    assert "mobile" not in line and "id_number" not in line
    assert "+8613800000001" not in line["msg"] and "example.com" not in line["msg"]


def test_messages_are_counted_per_channel():
    before = metrics.sends().get("sms", {"sent": 0, "failed": 0})
    metrics.record_send("sms", True)
    metrics.record_send("sms", False)
    metrics.record_send("sms", True)
    after = metrics.sends()["sms"]
    assert after["sent"] - before["sent"] == 2
    assert after["failed"] - before["failed"] == 1


def test_a_bad_metrics_port_is_one_clear_error():
    assert metrics.metrics_port({}) is None
    assert metrics.metrics_port({"LAPSE_METRICS_PORT": "9464"}) == 9464
    try:
        metrics.metrics_port({"LAPSE_METRICS_PORT": "http"})
    except metrics.MetricsConfigError as err:
        assert "LAPSE_METRICS_PORT" in str(err)
    else:
        raise AssertionError("expected an error")
