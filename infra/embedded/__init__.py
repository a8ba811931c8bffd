"""The embedded PostgreSQL and Temporal dev server: the one start-up used by `lapse dev`,
the demo, the worker and the tests.

One module per part: `_postgres` (PostgreSQL), `_temporal` (the Temporal dev server),
`_stack_file` (DATA_DIR/stack.json), `_stack` (both together for a local run) and
`_endpoints` (finding them from other commands).
"""

from infra.embedded._common import (
    BIN_DIR,
    TEMPORAL_BIN,
    CleanupMode,
    StackError,
    start_or_stop,
)
from infra.embedded._endpoints import NO_TEMPORAL, Endpoints, resolve_endpoints
from infra.embedded._postgres import DATABASE_NAME, EmbeddedPostgres
from infra.embedded._stack import Stack
from infra.embedded._stack_file import STACK_FILE, StackInfo, read_stack_file
from infra.embedded._temporal import EmbeddedTemporal, free_ports

__all__ = [
    "BIN_DIR",
    "DATABASE_NAME",
    "NO_TEMPORAL",
    "STACK_FILE",
    "TEMPORAL_BIN",
    "CleanupMode",
    "EmbeddedPostgres",
    "EmbeddedTemporal",
    "Endpoints",
    "Stack",
    "StackError",
    "StackInfo",
    "free_ports",
    "read_stack_file",
    "resolve_endpoints",
    "start_or_stop",
]
