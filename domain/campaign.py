"""The bind-a-new-card campaign (issue 16.4): who is asked and when not, as pure rules,
and the values its workflow and activities exchange (identifiers only).

- Who: the policyholders the monthly review lists as repeated debit failures (the review
  of the month before the campaign's; domain/report.py and its query decide that, here
  nothing is restated), about the policy whose debit failed last.
- Once a month: one message per customer and campaign month (SMS, and WeChat where the
  customer follows the account), never a second.
- The quiet period: a running journey speaks first. No campaign message within
  `quiet_days_after` days after a journey message to the customer, nor within
  `quiet_days_before` days before the next message a running journey has planned (or
  while that one is due); such a customer is skipped this time (a later run in the same
  month may still ask them).
- Re-bound: the customer changed the card after the message (its last four digits differ
  from those on record when it went out, as `lapse load` stores them), or a debit of the
  policy succeeded since.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from pydantic import Field

from domain.ids import MilestoneKey
from domain.models import Channel, Code, MessageKind, Model, PolicyNumber
from domain.plan import TZ

CAMPAIGN_MILESTONE = MilestoneKey(MessageKind.BIND_CARD)  # the key of the campaign's messages


class CampaignRules(Model):
    """Company configuration, with these defaults."""

    quiet_days_before: int = Field(3, ge=0, le=30)
    quiet_days_after: int = Field(3, ge=0, le=30)
    channels: list[Channel] = Field(default_factory=lambda: [Channel.SMS, Channel.WECHAT],
                                    min_length=1)


def campaign_month(at: datetime) -> date:
    """The month a campaign run belongs to (its first day), in Shanghai."""
    return at.astimezone(TZ).date().replace(day=1)


def review_month(month: date) -> date:
    """The review whose list a campaign month asks: the last complete month before it."""
    return (month - timedelta(days=1)).replace(day=1)


def run_id(month: date) -> str:
    """The campaign month's id on its records (where a journey's id would be)."""
    return f"bind-card-{month:%Y-%m}"


def in_quiet_period(now: datetime, sent: Iterable[datetime], planned: Iterable[datetime],
                    rules: CampaignRules) -> bool:
    """Whether a campaign message now would come too close to a journey's: within
    `quiet_days_after` of one sent, or `quiet_days_before` of one planned (a planned
    message already due is about to go out)."""
    after = timedelta(days=rules.quiet_days_after)
    before = timedelta(days=rules.quiet_days_before)
    return (any(now - after < at <= now for at in sent)
            or any(at < now + before for at in planned))


def rebound(card_then: str | None, card_now: str | None, debit_succeeded_since: bool) -> bool:
    return card_now != card_then or debit_succeeded_since


class CampaignInput(Model):
    month: date | None = None  # None: the month the run fires in


class Candidate(Model):
    customer_id: Code
    policy_number: PolicyNumber


class Selection(Model):
    month: date
    candidates: list[Candidate]


class AskRequest(Model):
    month: date
    at: datetime  # when the run asks (the workflow's time): the quiet period's "now"
    candidates: list[Candidate]


class AskResult(Model):
    """The campaign month's customers by what became of them (from the records, so that a
    retried or repeated run counts each customer once)."""

    sent: int = 0  # at least one channel took the message
    quiet: int = 0  # in a running journey's quiet period: not asked (yet)
    failed: int = 0  # no channel could take it (no address, refused for good)


class CampaignSummary(Model):
    month: date
    listed: int
    result: AskResult
