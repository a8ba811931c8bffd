"""Structured log lines (one JSON object a line) that never carry personal data."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
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


def configure(level: int = logging.INFO, stream=None) -> None:
    """JSON lines on stderr (or `stream`) for the root logger, replacing its handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
