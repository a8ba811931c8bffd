"""Callees the sandbox plays: which keys the person who answers a call presses, chosen by
number like the failure rules, set at start-up or over HTTP while it runs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Callee(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: str = "*"  # a phone number, or "*" for everyone who answers
    # Pressed one at a time, each when a menu (<Gather>) is heard: "21" hears the amount
    # again, then asks for an agent.
    keys: str = Field(pattern=r"^[0-9*#]{1,8}$")


class Callees:
    """The rules, first match wins; by default nobody presses anything."""

    def __init__(self, rules: list[Callee] | None = None):
        self.rules: list[Callee] = list(rules or [])

    def keys_for(self, number: str) -> str:
        return next((c.keys for c in self.rules if c.match in ("*", number)), "")
