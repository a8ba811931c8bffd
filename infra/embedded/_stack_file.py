"""DATA_DIR/stack.json: how a running `lapse dev` (or demo) tells other commands where it is."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import psutil

STACK_FILE = "stack.json"


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
    codec_endpoint: str | None = None  # the codec server the embedded Web UI decodes with

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


def write_stack_file(data_dir: Path, info: StackInfo) -> None:
    path = data_dir / STACK_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(info), indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)
