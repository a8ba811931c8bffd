"""What the embedded servers share: where the binaries are and how a start-up fails."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

BIN_DIR = Path(sys.executable).parent
TEMPORAL_BIN = BIN_DIR / "temporal"

CleanupMode = Literal["stop", "delete"]


class StackError(RuntimeError):
    """An embedded server could not start or be found; the message says what to do."""
