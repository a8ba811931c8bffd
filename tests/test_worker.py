"""`lapse-worker` in production: SIGTERM while busy, Prometheus metrics, JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
import threading
import urllib.request
import uuid
from datetime import date, datetime

from temporalio.service import RPCError

from activities.scan import scan_policies
from domain.plan import TZ
from infra import logging as json_logging
from infra import metrics
from infra.embedded import free_ports
from infra.journeys import Journeys
from tests.channel_helpers import sandbox_alone
from tests.journey_helpers import ProviderDouble, begin_journey, journey_worker
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
        # It takes its share of the send rates, beside the other workers.
        shared = await pool.fetch("SELECT DISTINCT channel FROM send_rate_shares")
        assert {r["channel"] for r in shared} == {"sms", "voice", "email", "wechat", "wecom"}

        worker.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(worker.communicate(), 40)
        assert worker.returncode == 0, err.decode()[-2000:]
        lines = [json.loads(x) for x in err.decode().splitlines() if x.startswith("{")]
        messages = [x["msg"] for x in lines]
        assert "worker stopping: finishing work in flight" in messages
        assert messages[-1] == "worker stopped"
        assert "+86" not in err.decode() and "@example.com" not in err.decode()
        # Stopped cleanly: its share goes back to the others at once, not after the expiry.
        assert await pool.fetchval("SELECT count(*) FROM send_rate_shares") == 0

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


def _logger_to(stream: io.StringIO, formatter: logging.Formatter) -> logging.Logger:
    """A logger of this test's own whose lines `formatter` writes to `stream` only."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    log = logging.getLogger(f"test.{uuid.uuid4().hex}")
    log.addHandler(handler)
    log.propagate = False
    return log


def test_log_lines_are_json_without_personal_data():
    stream = io.StringIO()
    log = _logger_to(stream, json_logging.JsonFormatter())
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


def test_text_lines_for_a_person_carry_the_same_facts_and_no_personal_data():
    stream = io.StringIO()
    log = _logger_to(stream, json_logging.TextFormatter())
    log.setLevel(logging.INFO)
    log.info("P2026000001 first_reminder sms: 1 sent to +8613800000001",
             extra={"policy_number": "P2026000001", "mobile": "+8613800000001",
                    "task_queue": "policy-lapse",
                    "temporal_activity": {"workflow_id": "lapse-P2026000001", "attempt": 1}})
    line = stream.getvalue().strip()
    assert line.split()[1:3] == ["info", log.name]
    assert "P2026000001 first_reminder sms: 1 sent to [number]" in line
    assert "task_queue=policy-lapse" in line and "workflow_id=lapse-P2026000001" in line
    assert "+8613800000001" not in line and not line.startswith("{")


def test_the_log_format_is_text_on_a_terminal_json_otherwise_or_as_asked():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True
    assert json_logging.log_format({}, Tty()) == "text"
    assert json_logging.log_format({}, io.StringIO()) == "json"
    assert json_logging.log_format({"LAPSE_LOG_FORMAT": "json"}, Tty()) == "json"
    assert json_logging.log_format({"LAPSE_LOG_FORMAT": "TEXT"}, io.StringIO()) == "text"
    try:
        json_logging.log_format({"LAPSE_LOG_FORMAT": "xml"}, io.StringIO())
    except json_logging.LogFormatError as err:
        assert str(err) == "LAPSE_LOG_FORMAT: expected one of auto, json, text"  # not the value
    else:
        raise AssertionError("a bad format was accepted")


# A workflow whose result is over the core's payload warning limit (512 KiB): the core
# warns, as it did for a journey's plan. Run in a process of its own: the runtime is global.
_CORE_WARNS = """
import asyncio, os, sys, uuid
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker
from infra import logging as log_lines

@workflow.defn(sandboxed=False)
class Big:
    @workflow.run
    async def run(self) -> str:
        return "x" * 600_000

async def main():
    log_lines.configure()
    log_lines.route_core_logs()
    client = await Client.connect(sys.argv[1])
    queue = uuid.uuid4().hex
    async with Worker(client, task_queue=queue, workflows=[Big]):
        await client.execute_workflow(Big.run, id=queue, task_queue=queue)
    await asyncio.sleep(1)  # the core hands its logs over in batches

asyncio.run(main())
sys.stderr.flush()
os._exit(0)
"""


async def test_the_temporal_core_logs_as_json_lines_like_everything_else(dev_server):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CORE_WARNS, dev_server, cwd=ROOT, env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    text = err.decode()
    assert "\x1b[" not in text  # none of the core's coloured text
    lines = [json.loads(x) for x in text.splitlines()]  # every line is JSON
    core = [x for x in lines if x["logger"] == json_logging.CORE_LOGGER]
    assert any(x["level"] == "warning" and "TMPRL1103" in x["msg"] for x in core), lines


async def test_a_worker_on_a_terminal_says_in_plain_lines_what_it_sends(dev_env, pool, db_url):
    prefix = unique_prefix()
    await load_sample_as(pool, prefix)
    number = f"{prefix}-P2026000001"
    queue = f"test-{uuid.uuid4().hex[:8]}"
    tty, terminal = os.openpty()  # the worker's stderr is a terminal
    seen: list[str] = []
    reader = threading.Thread(target=_read_all, args=(tty, seen), daemon=True)
    reader.start()
    async with sandbox_alone() as box:
        env = clean_env(TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
                        DATABASE_URL=db_url, TEMPORAL_TASK_QUEUE=queue,
                        LAPSE_SANDBOX_URL=box.url, LAPSE_TIME_SCALE="20000")
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "worker.py", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=terminal)
        os.close(terminal)
        try:
            journeys = Journeys(dev_env.client, queue)
            await begin_journey(journeys, pool, number, datetime(2026, 11, 21, 8, tzinfo=TZ),
                                20_000)
            wanted = f"{number} first_reminder sms: 1 sent"

            async def said() -> bool:
                return wanted in "".join(seen)
            assert await eventually(said, 40), "".join(seen)[-2000:]
        finally:
            worker.send_signal(signal.SIGTERM)
            await asyncio.wait_for(worker.wait(), 40)
            await dev_env.client.get_workflow_handle(f"lapse-{number}").terminate("test over")
    reader.join(5)
    text = "".join(seen)
    lines = [x for x in text.splitlines() if x.strip()]
    assert any(f"{number} first_reminder wechat: 1 sent" in x for x in lines)
    assert not [x for x in lines if x.lstrip().startswith("{")]  # readable, not JSON
    assert "\x1b[" not in text and "+86" not in text and "@example.com" not in text
    assert worker.returncode == 0


def _read_all(fd: int, into: list[str]) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal's other side closed: the worker is gone
            break
        if not chunk:
            break
        into.append(chunk.decode(errors="replace"))
    os.close(fd)
