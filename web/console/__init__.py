"""The agents' web console (`lapse console`): find a policy, read its journey, tell the
journey what a customer said, and work the task queue, signed in and on record."""

from web.console.app import build_console
from web.console.auth import AccountError, SessionRules, save_agent
from web.console.journey_port import JourneyPort

__all__ = ["AccountError", "JourneyPort", "SessionRules", "build_console", "save_agent"]
