"""Every command block of README.md, run in order on a fresh data folder, as a reader types
them into a shell in the project folder: a command that fails as written fails this test.

How a block is read (the README's own notation):
- only ```sh blocks hold commands; the other blocks are file contents, output, SQL or
  Python to read (see NOT_COMMANDS);
- a line ending in `\\` goes on on the next line; `# ...` is a comment;
- `[--option value]` is optional: it is run with the option when its value is a literal
  one, without it when the value is a placeholder (`P…`, `NAME`, `a|b`);
- `lapse console add-agent` gets its password from LAPSE_CONSOLE_PASSWORD (as the README
  says for automation) instead of asking twice on a terminal;
- servers (`lapse dev`, `lapse-worker`, `lapse sandbox`, ...) are started in the
  background, as in another terminal, and kept running until the end (or until the same
  server is started again, with other options), once they say they serve;
- `.lapse-data` in a line is the fresh data folder (LAPSE_DATA_DIR), which is where every
  `lapse` command of this run keeps its data;
- a file a command reads that the README shows but a reader writes (`2027.json`,
  `faults.json`, `callees.json`) is written from what the README shows, and removed after;
  what the commands write into the project folder (`review/`, `packs/`) is removed after.

Blocks and lines that are not run are listed, each with the reason, in SKIPPED_BLOCKS and
SKIPPED_LINES; a new block that is neither run nor listed is run like the others.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.embedded import read_stack_file
from tests.ops_helpers import clean_env

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Languages of blocks that hold no command, and why.
NOT_COMMANDS = {
    "python": "a library example (needs a client and a pool in a program)",
    "sql": "a query for psql or any SQL client; the psql lines of the sh blocks are run",
    "json": "the contents of a file (policy, calendar, settings, branches)",
    "xml": "the body of a provider's callback",
    "": "printed output, for reading",
}

# sh blocks not run, by their first line, and why.
SKIPPED_BLOCKS = {
    "./run demo     # everything embedded":
        "`./run demo` runs until Ctrl-C (its short form `--exit-when-done` is run below) and "
        "`./run tests` is the whole suite, this test included",
    ".venv/bin/python bench/scan_bench.py": "a benchmark (bench/), minutes of load",
    ".venv/bin/python bench/codec_bench.py": "a benchmark (bench/)",
    ".venv/bin/python bench/report_bench.py": "a benchmark (bench/), a million records",
    ".venv/bin/python bench/faults.py": "benchmarks (bench/), each a fresh stack for minutes",
    "export TEMPORAL_ADDRESS=my-ns.a1b2c.tmprl.cloud:7233":
        "points every later command at a Temporal Cloud namespace (an account, credentials)",
}

# Single lines not run, by how they start, and why.
SKIPPED_LINES = {
    "./run demo  ": "runs until Ctrl-C; the next line is the same demo ending by itself",
    "export LAPSE_PAYLOAD_KEYS='20261202-3f9a=...'":
        "a pattern for the key printed by the line above; setting only a new key would leave "
        "the payloads sealed under the local key unreadable to the later commands",
    "./run lapse task take TASK_ID":
        "no agent task exists minutes into a fresh run (calls and repairs come at the "
        "second reminder, weeks later in journey time); "
        "tests/activities/test_channels.py takes tasks",
    "./run lapse task complete TASK_ID": "as `task take`: no task to complete yet",
}

# A server's line, what it prints once it serves, and the fixed port it takes (if any).
SERVERS = {
    "./run lapse dev": ("Running. Other `lapse` commands", None),
    ".venv/bin/lapse-worker": ("worker started", None),
    "./run lapse sandbox": ("sandbox providers on", 8025),
    "./run lapse console": ("agents' console on", 8027),
    "./run lapse codec-server": ("Ctrl-C stops it.", 8081),
}

# Files a reader writes before the line that reads them: what the README shows for them.
READER_FILES = {
    "2027.json": None,  # the ```json block after `lapse calendar load 2027.json`
    "faults.json": '[{"fault": "bounce", "match": "customer0001@example.com"}]',
    "callees.json": '[{"match": "+8613800000001", "keys": "21"}]',
}
WRITTEN_HERE = ("review", "packs")  # --csv review/ --chart review/..., --out packs/

LINE_LIMIT = 240  # seconds for one command (the short demo takes one to two minutes)


@dataclass
class Block:
    line: int  # README line of its opening fence
    lang: str
    lines: list[str]

    @property
    def first(self) -> str:
        return self.lines[0] if self.lines else ""


def blocks(text: str) -> list[Block]:
    out: list[Block] = []
    current: Block | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("```"):
            if current is None:
                current = Block(number, raw[3:].strip(), [])
            else:
                out.append(current)
                current = None
        elif current is not None:
            current.lines.append(raw)
    return out


def _open_quote(text: str) -> bool:
    """A quote left open at the end (a comment's apostrophe does not count)."""
    quote = None
    for i, ch in enumerate(text):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or text[i - 1].isspace()):
            break
    return quote is not None


def commands(block: Block) -> list[str]:
    """The block's command lines: continuations (a `\\` at the end, or a quote still
    open, as in a multi-line SQL string) joined; blank lines and comments out."""
    out: list[str] = []
    pending = ""
    for raw in block.lines:
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        if _open_quote(pending + raw):
            pending += raw + "\n"
            continue
        line = (pending + raw).strip()
        pending = ""
        if line and not line.startswith("#"):
            out.append(line)
    return out


_OPTIONAL = re.compile(r"\[(--[^\[\]]*)\]")
_PLACEHOLDER = re.compile(r"\||…|\.\.\.|\b[A-Z][A-Z_]{2,}\b")


def as_run(line: str) -> str:
    """A synopsis line as run: optional parts with literal values kept, others left out."""
    def one(m: re.Match) -> str:
        return "" if _PLACEHOLDER.search(m[1]) else m[1]
    return re.sub(r"  +", " ", _OPTIONAL.sub(one, line)).strip()


def _strip_comment(line: str) -> str:
    # A `#` after whitespace outside quotes starts a comment (the README's lines only).
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


@dataclass
class Server:
    line: str
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def read(self) -> None:
        for raw in self.process.stdout:
            self.output.append(raw.decode(errors="replace"))

    @property
    def text(self) -> str:
        return "".join(self.output)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Reader:
    """A reader at a shell in the project folder, typing the README's lines."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.env = clean_env(LAPSE_DATA_DIR=str(data_dir), COLUMNS="100")
        self.servers: dict[str, Server] = {}
        self.ran: list[str] = []

    def substitute(self, line: str) -> str:
        line = line.replace(".lapse-data", str(self.data_dir))
        stack = read_stack_file(self.data_dir)
        if stack is not None and ("GRPC_PORT" in line or "CODEC_PORT" in line):
            grpc = stack.temporal_address.rsplit(":", 1)[1]
            codec = re.search(r":(\d+)/", stack.codec_endpoint or "")
            line = line.replace("GRPC_PORT", grpc).replace("CODEC_PORT", codec[1] if codec
                                                            else "CODEC_PORT")
        return line

    def env_for(self, line: str) -> dict[str, str]:
        env = dict(self.env)
        if "add-agent" in line:
            # It asks for the password twice without echo on a terminal; for automation the
            # README names LAPSE_CONSOLE_PASSWORD, which this reader uses.
            env["LAPSE_CONSOLE_PASSWORD"] = "readme-test-password"
        if "$DATABASE_URL" in line:
            # "in another terminal, export it": the address `lapse dev` printed.
            stack = read_stack_file(self.data_dir)
            assert stack is not None, f"{line}: no `lapse dev` runs to give DATABASE_URL"
            env["DATABASE_URL"] = stack.database_url
        return env

    def run(self, line: str, where: str) -> None:
        line = self.substitute(as_run(line))
        if line.startswith("export "):
            name = line.split()[1].split("=", 1)[0]
            value = subprocess.run(["bash", "-c", f'{line}; printf %s "${name}"'], cwd=ROOT,
                                   env=self.env, capture_output=True, text=True, check=True)
            self.env[name] = value.stdout
            self.ran.append(line)
            return
        server = next((s for s in SERVERS if _strip_comment(line).startswith(s)
                       and "--new-key" not in line and "add-agent" not in line), None)
        if server:
            self.serve(server, _strip_comment(line), where)
            return
        done = subprocess.run(["bash", "-c", line], cwd=ROOT, env=self.env_for(line),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=LINE_LIMIT)
        self.ran.append(line)
        assert done.returncode == 0, (f"README {where}: `{line}` exited "
                                      f"{done.returncode}\n{done.stdout[-3000:]}\n"
                                      f"{done.stderr[-3000:]}")

    def serve(self, kind: str, line: str, where: str) -> None:
        running = self.servers.get(kind)
        if running is not None and running.process.poll() is None:
            if running.line == line:
                return  # the same server, still running in its terminal
            running.stop()
        marker, port = SERVERS[kind]
        if port is not None and not _port_free(port):
            pytest.fail(f"README {where}: `{line}` needs port {port}, which another "
                        "process on this machine holds; run this test when it is free")
        process = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=ROOT, env=self.env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        server = Server(line, process)
        threading.Thread(target=server.read, daemon=True).start()
        self.servers[kind] = server
        deadline = time.monotonic() + LINE_LIMIT
        while marker not in server.text:
            assert process.poll() is None, (f"README {where}: `{line}` exited "
                                            f"{process.returncode}\n{server.text[-3000:]}")
            assert time.monotonic() < deadline, (f"README {where}: `{line}` did not say "
                                                 f"{marker!r}\n{server.text[-3000:]}")
            time.sleep(0.2)
        self.ran.append(line)

    def stop_all(self) -> None:
        # The worker first, then what it uses; `lapse dev` last.
        for kind in reversed(list(self.servers)):
            self.servers[kind].stop()


def _reader_file(name: str, text: str) -> str:
    if READER_FILES[name] is not None:
        return READER_FILES[name]
    # The block after the line that names the file shows its contents.
    after = text.split(f"lapse calendar load {name}", 1)[1]
    return after.split("```json\n", 1)[1].split("```", 1)[0]


def test_every_readme_command_runs_as_written_in_order(short_tmp):
    text = README.read_text(encoding="utf-8")
    all_blocks = blocks(text)
    shell = [b for b in all_blocks if b.lang == "sh"]
    assert len(shell) >= 20, "the README's command blocks were not found"
    for b in all_blocks:
        assert b.lang in NOT_COMMANDS or b.lang == "sh", f"line {b.line}: ```{b.lang}"
    listed = [k for k in SKIPPED_BLOCKS if not any(b.first.startswith(k) for b in shell)]
    assert not listed, f"skipped blocks no longer in the README: {listed}"

    made = [ROOT / n for n in (*READER_FILES, *WRITTEN_HERE) if not (ROOT / n).exists()]
    reader = Reader(short_tmp / "data")
    try:
        # On a fresh machine, before `lapse load`, a policy command says what comes first.
        done = subprocess.run(["./run", "lapse", "plan", "P2026000001", "--messages"],
                              cwd=ROOT, env=reader.env, capture_output=True, text=True,
                              timeout=LINE_LIMIT)
        assert done.returncode == 2 and "lapse load" in done.stderr, done.stderr

        for b in shell:
            if any(b.first.startswith(k) for k in SKIPPED_BLOCKS):
                continue
            for line in commands(b):
                if any(line.startswith(k) for k in SKIPPED_LINES):
                    continue
                for name in READER_FILES:
                    if re.search(rf"(^|\s){re.escape(name)}(\s|$)", line):
                        (ROOT / name).write_text(_reader_file(name, text), encoding="utf-8")
                reader.run(line, f"line {b.line + 1}+")
        # What the run was for: the commands of issue 15 point 5 among those run.
        ran = "\n".join(reader.ran)
        for expected in ("./run lapse scan", "./run lapse status P2026000001",
                         "./run temporal schedule describe --schedule-id lapse-daily-scan",
                         "curl localhost:8025/sandbox/faults", "./run lapse report"):
            assert expected in ran, expected
    finally:
        reader.stop_all()
        for path in made:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    left = [s.line for s in reader.servers.values() if s.process.poll() is None]
    assert not left, f"still running: {left}"
    # `lapse dev` stopped cleanly: nothing claims the data folder any more.
    assert read_stack_file(short_tmp / "data") is None
