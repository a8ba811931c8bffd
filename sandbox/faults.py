"""Failure injection: rules that make the sandbox refuse, delay or fail messages, chosen by
recipient or by rate, set at start-up (a JSON file) or over HTTP while it runs."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Api = Literal["sms", "voice", "email", "wechat", "wecom", "*"]
Request = Literal["send", "lookup", "*"]  # sending a message, or asking whether it was sent
FaultKind = Literal[
    "rate_limited",    # 429 with Retry-After
    "server_error",    # 500
    "unavailable",     # 503
    "timeout",         # no answer for `delay` seconds, then the message is accepted
    "invalid_number",  # Twilio 21211 / WeChat 40003 invalid openid / WeCom 81013
    "unsubscribed",    # Twilio 21610 / WeChat 43004
    "bounce",          # e-mail accepted, then a bounce event
    "undelivered",     # SMS accepted, then undelivered (30003)
    "busy",            # call placed, then busy
    "no_answer",       # call placed, then no-answer
    "token_expired",   # WeChat or WeCom answers 42001 once: the token must be refreshed
]
# Faults decided when the request arrives, and those reported later by a callback.
AFTER_ACCEPT = frozenset({"bounce", "undelivered", "busy", "no_answer"})


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fault: FaultKind
    match: str = "*"  # a recipient (phone, e-mail, openid, userid) or "*" for everyone
    api: Api = "*"
    request: Request = "send"
    rate: float = Field(1.0, ge=0, le=1)  # the share of matching requests it hits
    times: int | None = Field(None, ge=1)  # used up after this many hits; None: forever
    retry_after: float = Field(1.0, ge=0)  # for rate_limited
    delay: float = Field(5.0, ge=0, le=120)  # for timeout
    hits: int = 0

    def applies(self, api: str, recipient: str, request: str = "send") -> bool:
        return (self.api in ("*", api) and self.match in ("*", recipient)
                and self.request in ("*", request)
                and (self.times is None or self.hits < self.times))


class Faults:
    """The active rules, first match wins; a seeded random source keeps `rate` repeatable."""

    def __init__(self, rules: list[Fault] | None = None, seed: int = 0):
        self.rules: list[Fault] = list(rules or [])
        self._random = random.Random(seed)

    def add(self, rules: list[Fault]) -> None:
        self.rules.extend(rules)

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, api: str, recipient: str, request: str = "send") -> Fault | None:
        for rule in self.rules:
            if rule.applies(api, recipient, request) and self._random.random() < rule.rate:
                rule.hits += 1
                return rule
        return None


# A number the sample data uses for "the provider refuses this phone number".
DEFAULT_FAULTS = [Fault(fault="invalid_number", match="+8613900000000")]
