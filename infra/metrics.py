"""Prometheus metrics: the Temporal SDK's own, plus messages sent and failed per channel.

`install_runtime(port)` makes the SDK runtime serve `/metrics` on that port; senders call
`record_send(channel, ok)` after every provider call. Before (or without) installation
the counters are kept in-process only, which is what tests and the demo read.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

from temporalio.common import MetricCounter
from temporalio.runtime import LoggingConfig, PrometheusConfig, Runtime, TelemetryConfig

METRICS_PORT_ENV = "LAPSE_METRICS_PORT"

_lock = threading.Lock()
_counts: Counter[tuple[str, bool]] = Counter()
_sent: MetricCounter | None = None
_failed: MetricCounter | None = None


class MetricsConfigError(ValueError):
    pass


def metrics_port(environ=os.environ) -> int | None:
    """LAPSE_METRICS_PORT as a port number, or None when unset (no metrics endpoint)."""
    raw = environ.get(METRICS_PORT_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise MetricsConfigError(f"{METRICS_PORT_ENV}: expected a port number 1-65535, "
                                 f"got {raw!r}")
    return int(raw)


def install_runtime(port: int, host: str = "0.0.0.0",
                    logging: LoggingConfig | None = LoggingConfig.default) -> Runtime:
    """A runtime serving Prometheus on host:port, made the default for clients created
    after this call, with the channel counters on its meter (and the core's `logging`)."""
    global _sent, _failed
    runtime = Runtime(telemetry=TelemetryConfig(logging=logging, metrics=PrometheusConfig(
        bind_address=f"{host}:{port}", counters_total_suffix=True)))
    Runtime.set_default(runtime, error_if_already_set=False)
    meter = runtime.metric_meter
    with _lock:
        _sent = meter.create_counter("lapse_messages_sent",
                                     "messages a provider accepted, per channel")
        _failed = meter.create_counter("lapse_messages_failed",
                                       "messages a provider refused or that failed, per channel")
    return runtime


def record_send(channel: str, ok: bool) -> None:
    """Count one send attempt on a channel (`sms`, `email`, ...): accepted or failed."""
    channel = str(getattr(channel, "value", channel))
    with _lock:
        _counts[(channel, ok)] += 1
        counter = _sent if ok else _failed
    if counter is not None:
        counter.add(1, {"channel": channel})


def sends() -> dict[str, dict[str, int]]:
    """In-process counts: channel -> {"sent": n, "failed": n}."""
    with _lock:
        out: dict[str, dict[str, int]] = {}
        for (channel, ok), n in _counts.items():
            out.setdefault(channel, {"sent": 0, "failed": 0})["sent" if ok else "failed"] += n
        return out
