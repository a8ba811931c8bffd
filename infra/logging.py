"""Log lines that never carry personal data: JSON lines for log collectors, readable
lines for a person at a terminal, the Temporal core's own logs among them, and a line for
every message a worker sends.

`LAPSE_LOG_FORMAT` (`auto`, the default: text on a terminal, JSON otherwise; `json`;
`text`) chooses the lines.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from domain.plan import TZ

LOG_FORMAT_ENV = "LAPSE_LOG_FORMAT"
FORMATS = ("auto", "json", "text")
# Where the Temporal core's (Rust) logs arrive, instead of its own coloured lines.
CORE_LOGGER = "temporalio.core"

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName",
                                                      "temporal_log"}  # the core's raw entry
# Extra fields that could hold personal data are dropped by name, whatever they hold.
_PERSONAL = {"customer_name", "mobile", "phone", "email", "to", "address",
             "id_number", "card_number", "body", "text", "openid", "wechat_openid",
             "postal_address", "emergency_contact"}
# A safety net over the message text: runs of 11+ digits (mobile, ID and card numbers)
# and e-mail addresses are masked even if someone logs them by mistake. Policy numbers
# (a letter then digits) and dates are kept.
_DIGITS = re.compile(r"(?<!\w)\+?\d{11,}[Xx]?")
_EMAIL = re.compile(r"[^@\s<>\"']+@[^@\s<>\"']+\.[A-Za-z]{2,}")


def scrub(text: str) -> str:
    return _EMAIL.sub("[email]", _DIGITS.sub("[number]", text))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key in _PERSONAL or key.startswith("_"):
                continue
            line[key] = _safe(value)
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception messages may quote the data that caused them.
            line["error"] = record.exc_info[0].__name__
        return json.dumps(line, ensure_ascii=False, default=str)


def _safe(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _safe(v) for k, v in value.items() if k not in _PERSONAL}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub(str(value))


class TextFormatter(logging.Formatter):
    """`01:02:03 info    lapse.worker  worker started  task_queue=policy-lapse`: the
    same facts as the JSON line (the same scrubbing), for a person reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, TZ).strftime("%H:%M:%S")
        msg = scrub(record.getMessage())
        context = []
        for key, value in vars(record).items():
            if key in _STANDARD or key in _PERSONAL or key.startswith("_"):
                continue
            if key in ("temporal_workflow", "temporal_activity") and isinstance(value, dict):
                key, value = "workflow_id", value.get("workflow_id")
            if isinstance(value, str | int | float) and str(value) not in msg:
                context.append(f"{key}={scrub(str(value))}")
        line = f"{when} {record.levelname.lower():<7} {record.name}  {msg}"
        if context:
            line += "  " + " ".join(context)
        if record.exc_info and record.exc_info[0] is not None:
            line += f"  error={record.exc_info[0].__name__}"
        return line


class LogFormatError(ValueError):
    pass


def log_format(environ=os.environ, stream=None) -> str:
    """`json` or `text`, from LAPSE_LOG_FORMAT (auto: text on a terminal)."""
    wanted = environ.get(LOG_FORMAT_ENV, "").strip().lower() or "auto"
    if wanted not in FORMATS:
        raise LogFormatError(f"{LOG_FORMAT_ENV}: expected one of {', '.join(FORMATS)}")
    if wanted != "auto":
        return wanted
    isatty = getattr(stream or sys.stderr, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure(level: int = logging.INFO, stream=None, fmt: str | None = None) -> None:
    """Log lines on stderr (or `stream`) for the root logger, replacing its handlers:
    `fmt` (json or text), else what LAPSE_LOG_FORMAT and the stream say."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    chosen = fmt or log_format(stream=stream)
    handler.setFormatter(TextFormatter() if chosen == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDK's loggers append the workflow's or activity's info to the message text; the
    # lines carry it as a field already.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


def core_logging(level: str = "WARN") -> LoggingConfig:
    """The Temporal core's logs forwarded to the CORE_LOGGER Python logger, so they are
    formatted and scrubbed like every other line."""
    return LoggingConfig(filter=TelemetryFilter(core_level=level, other_level="ERROR"),
                         forwarding=LogForwardingConfig(logger=logging.getLogger(CORE_LOGGER),
                                                        append_target_to_name=False))


def route_core_logs() -> Runtime:
    """Make the default Temporal runtime forward the core's logs to Python logging. Call
    it before the first client is made: clients take the default runtime."""
    runtime = Runtime(telemetry=TelemetryConfig(logging=core_logging()))
    Runtime.set_default(runtime, error_if_already_set=False)
    return runtime


# --- what a worker sends --------------------------------------------------------------------


class SendProgress(Interceptor):
    """One log line per send activity: the policy, milestone and channel, and what became
    of it (sent, failed for good, retried and why). Never an address or a text."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _SendProgressInbound(next)


_SEND_ACTIVITIES = ("send_notifications", "send_milestone")
_log = logging.getLogger("lapse.sends")


def _what(req: Any) -> dict[str, Any]:
    return {"policy_number": getattr(req, "policy_number", None),
            "milestone": getattr(req, "milestone_key", None),
            "channel": str(getattr(getattr(req, "channel", None), "value", ""))}


class _SendProgressInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if activity.info().activity_type not in _SEND_ACTIVITIES or not input.args:
            return await super().execute_activity(input)
        # A milestone's activity carries its channels' requests; a single send is one.
        reqs = getattr(input.args[0], "sends", None) or [input.args[0]]
        first = _what(reqs[0])
        channels = ",".join(_what(r)["channel"] for r in reqs)
        head = f"{first['policy_number']} {first['milestone']} {channels}"
        try:
            result = await super().execute_activity(input)
        except ApplicationError as err:
            # The activity's errors name the channel and the provider's code, nothing else.
            later = "" if err.non_retryable else " yet, will be retried"
            _log.warning("%s: not sent%s (%s)", head, later, err.message,
                         extra={**first, "channel": channels, "error": err.type,
                                "attempt": activity.info().attempt})
            raise
        stop = getattr(result, "stop", None)
        if stop is not None:
            _log.info("%s: not sent, the journey ends (%s)", head, stop,
                      extra={**first, "channel": channels, "stop": str(stop)})
            return result
        for req, out in zip(reqs, getattr(result, "outcomes", None) or [result], strict=False):
            what = _what(req)
            sent, failed = getattr(out, "sent", 0), len(getattr(out, "failed", []) or [])
            _log.info("%s %s %s: %d sent%s", what["policy_number"], what["milestone"],
                      what["channel"], sent, f", {failed} failed for good" if failed else "",
                      extra={**what, "sent": sent, "failed": failed})
        return result
