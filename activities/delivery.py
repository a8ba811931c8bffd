"""The send path of a journey: one message on one channel to a batch of recipients, each
on its own record, until each is accepted, refused for good, or no longer worth trying.

JourneyActivities.send_notifications delegates to `Delivery.send`. What a record goes
through (README "Channels and providers"):
- refused for good: `failed` with the provider's code; a refusal about the address (an
  invalid number, unsubscribed, a hard bounce) also closes the address on its channels
  (domain/suppression.py) until the contact details are updated. A closed address, a
  message that breaks a content rule and a missing address are `failed` without asking
  anyone (`suppressed`, the rule's code, `no_address`);
- refused for now (rate limited, down): `queued` with the provider's code, and the
  activity raises for Temporal to retry after this attempt's capped backoff, or the
  provider's Retry-After when that is longer (for this attempt only). An attempt that
  starts at the request's `give_up_at`, or whose next attempt would start after it,
  records every recipient not reached `failed` `provider_unavailable` and returns them;
- interrupted (`sending` left by a process that died while its request was leaving, or
  `unknown` when no answer came): the next attempt asks the provider. Found: `sent`;
  proven never received: sent again; cannot tell: `unknown` with a review task. Where
  the provider drops a repeat for a while instead (WeChat, WeCom), it is sent again
  within that while and `failed` (`unconfirmed`) after it, so that the journey falls
  back rather than wait for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import (
    Attachment,
    Outgoing,
    PermanentSendError,
    Sender,
    TransientSendError,
    UncertainSendError,
)
from activities.content import render_for
from activities.letters import letter_attachment
from activities.lookup import CANNOT_TELL
from domain.content.formats import format_postal_address
from domain.content.masking import full_name
from domain.content.render import RenderedMessage
from domain.content.rules import ContentRuleError
from domain.journey import SendOutcome, SendRequest
from domain.models import ACCEPTED, Channel, Customer, NotificationStatus, Role
from domain.plan import TZ
from domain.suppression import address_key, closed_channels
from infra import deliveries, evidence, store
from infra.deliveries import NOT_RECEIVED, REPEAT_DROPPED, SendRecord, provider_ref
from infra.store import PolicyBundle

# Without a give_up_at, a message is tried for this long from its first attempt.
DEFAULT_PATIENCE = timedelta(hours=24)
# The backoff where the activity's retry policy does not say.
INITIAL_BACKOFF = timedelta(seconds=2)
BACKOFF_COEFFICIENT = 2.0
MAXIMUM_BACKOFF = timedelta(minutes=5)

# A request our client stopped waiting for may still be processed by the provider for a
# while: a look-up that does not find it proves nothing before this much time has passed.
LOOKUP_SETTLE = timedelta(minutes=1)

# The error codes of records this module decides without a provider's word.
GAVE_UP = "provider_unavailable"  # not accepted by the deadline (the last answer: events)
SUPPRESSED = "suppressed"
NO_ADDRESS = "no_address"
UNCONFIRMED = "unconfirmed"  # interrupted, no look-up, past the provider's repeat window

_S = NotificationStatus
_REACHED = ACCEPTED
_REFUSED = (_S.FAILED, _S.BOUNCED, _S.SKIPPED)
_INTERRUPTED = (_S.SENDING, _S.UNKNOWN)


@dataclass(frozen=True)
class Recipient:
    recipient_id: str
    role: Role
    customer: Customer


def address_of(recipient: Recipient, channel: Channel) -> str | None:
    c = recipient.customer
    if recipient.role is Role.EMERGENCY_CONTACT:
        ec = c.emergency_contact
        return ec.phone if ec and channel in (Channel.SMS, Channel.VOICE) else None
    if channel in (Channel.SMS, Channel.VOICE, Channel.AGENT_CALL):
        return c.mobile
    if channel is Channel.EMAIL:
        return c.email
    if channel is Channel.WECHAT:
        return c.wechat_openid
    if channel is Channel.WECOM:
        return c.wecom_userid
    if channel is Channel.LETTER and c.postal_address:
        a = c.postal_address
        return format_postal_address(a.province, a.city, a.district, a.street, a.postcode)
    return None


def addressee(recipient: Recipient) -> str:
    """The name on a paper letter's envelope."""
    c = recipient.customer
    if recipient.role is Role.EMERGENCY_CONTACT:
        return ""
    return c.name if c.is_organisation else full_name(c.name, c.gender)


# --- the attempt ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """This attempt of the send activity, on Temporal's clock (the wall clock outside
    tests; the test server's skipped time in them)."""

    number: int
    started: datetime
    deadline: datetime
    initial: timedelta
    coefficient: float
    maximum: timedelta
    last: bool  # the retry policy allows no further attempt
    monotonic_start: float = field(default_factory=time.monotonic)

    @classmethod
    def current(cls, give_up_at: datetime | None) -> Attempt:
        info = activity.info()
        started = max(info.current_attempt_scheduled_time, datetime.now(UTC))
        deadline = give_up_at or info.scheduled_time + DEFAULT_PATIENCE
        if info.schedule_to_close_timeout:
            # Give up on record before Temporal stops retrying without one.
            deadline = min(deadline, info.scheduled_time + info.schedule_to_close_timeout)
        policy = info.retry_policy
        initial = policy.initial_interval if policy else INITIAL_BACKOFF
        return cls(
            number=info.attempt, started=started, deadline=deadline, initial=initial,
            coefficient=policy.backoff_coefficient if policy else BACKOFF_COEFFICIENT,
            maximum=(policy.maximum_interval or 100 * initial) if policy else MAXIMUM_BACKOFF,
            last=bool(policy and policy.maximum_attempts
                      and info.attempt >= policy.maximum_attempts))

    @property
    def expired(self) -> bool:
        return self.started >= self.deadline

    def next_delay(self, retry_after: float | None = None) -> timedelta | None:
        """When to try again: the capped backoff of this attempt, or `retry_after` (the
        provider's, this once) when longer. None when no attempt would start before the
        deadline: give up now."""
        if self.last:
            return None
        exponent = min(self.number - 1, 64)
        backoff = min(self.initial.total_seconds() * self.coefficient ** exponent,
                      self.maximum.total_seconds())
        delay = timedelta(seconds=max(backoff, retry_after or 0.0))
        now = self.started + timedelta(seconds=time.monotonic() - self.monotonic_start)
        return None if now + delay >= self.deadline else delay


def _retry(req: SendRequest, code: str, delay: timedelta) -> ApplicationError:
    return ApplicationError(f"{req.channel.value} provider: {code}", type="TransientSendError",
                            next_retry_delay=delay)


def _slot(sender: Sender):
    slot = getattr(sender, "slot", None)
    return slot() if slot is not None else contextlib.nullcontext()


def _settleable(sender: Sender) -> bool:
    """Whether an interrupted send can be settled without a person: by asking the
    provider, or by sending again while the provider drops a repeat."""
    return (getattr(sender, "lookup", None) is not None
            or getattr(sender, "safe_resend_within", None) is not None)


@dataclass
class _Tally:
    channel: Channel
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    first_id: str | None = None

    def outcome(self) -> SendOutcome:
        return SendOutcome(channel=self.channel, sent=self.sent, failed=self.failed,
                           first_notification_id=self.first_id, reasons=self.reasons)


class _Resend:
    """An interrupted send that goes out again."""


RESEND = _Resend()
REACHED = None  # what `_deliver` returns for a recipient the provider has (or may have)


class Delivery:
    """The send path, bound to a database pool and one sender per channel. One instance
    serves one activity attempt: a milestone's channels, sent side by side, read the
    policy once between them."""

    def __init__(self, pool: asyncpg.Pool, senders: dict[Channel, Sender]):
        self._pool = pool
        self._senders = senders
        self._bundles: dict[str, PolicyBundle] = {}
        self._loading = asyncio.Lock()

    async def _bundle(self, conn: asyncpg.Connection, policy_number: str) -> PolicyBundle:
        """The policy with its product and policyholder, read by the first channel that
        asks; the others wait for it rather than read it again (on their own connection
        if that one fails or is cancelled)."""
        async with self._loading:
            bundle = self._bundles.get(policy_number)
            if bundle is None:
                bundle = await store.load_policy(conn, policy_number, with_members=False)
                self._bundles[policy_number] = bundle
            return bundle

    async def send(self, req: SendRequest) -> SendOutcome:
        """Send `req` to its recipients: the outcome lists who was reached and who not
        (with why). Raises ApplicationError (type TransientSendError, with the delay) for
        Temporal to try the recipients not yet decided again."""
        sender = self._senders[req.channel]
        attempt = Attempt.current(req.give_up_at)
        tally = _Tally(req.channel)
        async with self._pool.acquire() as conn:
            bundle = await self._bundle(conn, req.policy_number)
            recipients = await _recipients(conn, req, bundle)
            giving_up = attempt.expired
            for r in recipients:
                nid = f"{req.journey_id}/{req.milestone_key}/{req.channel.value}/{r.recipient_id}"
                tally.first_id = tally.first_id or nid
                reason, giving_up = await self._deliver(conn, sender, req, bundle, r, nid,
                                                        attempt, giving_up)
                if reason is REACHED:
                    tally.sent += 1
                else:
                    tally.failed.append(r.recipient_id)
                    tally.reasons[r.recipient_id] = reason
        return tally.outcome()

    async def _deliver(self, conn: asyncpg.Connection, sender: Sender, req: SendRequest,
                       bundle: PolicyBundle, r: Recipient, nid: str, attempt: Attempt,
                       giving_up: bool) -> tuple[str | None, bool]:
        """One recipient: None (reached) or why not, and whether the batch is given up."""
        row = await deliveries.send_record(conn, nid)
        prior = row.status if row else None
        last_code = row.error_code if prior == "queued" else None  # a refusal, for now
        if prior in _REACHED:
            return REACHED, giving_up
        if prior in _REFUSED:
            return row.error_code or prior, giving_up
        address = address_of(r, req.channel)
        if prior in _INTERRUPTED and not getattr(sender, "idempotent", False):
            settled = await self._settle(conn, sender, req, r, nid, row, address, attempt,
                                         giving_up)
            if settled is not RESEND:
                return settled, giving_up
        if not address:
            await deliveries.write_record(conn, nid, req, r.recipient_id, r.role, None, "failed",
                                          NO_ADDRESS, attempted=False)
            return NO_ADDRESS, giving_up
        key = address_key(address)
        closed_by = await deliveries.suppressed(conn, req.channel, key)
        if closed_by:
            await deliveries.write_record(
                conn, nid, req, r.recipient_id, r.role, None, "failed", SUPPRESSED,
                attempted=False, detail=f"the address is suppressed on this channel ({closed_by})")
            return SUPPRESSED, giving_up
        try:
            rendered = render_for(req, bundle, r.customer, r.role)
            attachment = await letter_attachment(req, bundle, r.customer, r.role,
                                                 provider_ref(nid))
        except ContentRuleError as err:
            # A template that breaks a rule does not mend itself: on record, and fall back.
            await deliveries.write_record(
                conn, nid, req, r.recipient_id, r.role, None, "failed", err.rule,
                attempted=False, detail=f"template {err.template_id} breaks a content rule")
            return err.rule, giving_up
        if giving_up:
            return await _give_up(conn, nid, req, r, rendered, last_code), True
        return await self._attempt(conn, sender, req, r, nid, address, key, rendered,
                                   attachment, attempt)

    async def _attempt(self, conn: asyncpg.Connection, sender: Sender, req: SendRequest,
                       r: Recipient, nid: str, address: str, key: str,
                       rendered: RenderedMessage, attachment: Attachment | None,
                       attempt: Attempt) -> tuple[str | None, bool]:
        """Hand one message to the provider: `sending` only once nothing is left to wait
        for (the rate limit, then a free thread or connection), then its answer."""
        ready = getattr(sender, "ready", None)
        if ready is not None:
            await ready(req.message)  # formal notices first
        recorded = False
        try:
            async with _slot(sender):
                await deliveries.write_record(conn, nid, req, r.recipient_id, r.role, rendered,
                                              "sending", None)
                recorded = True
                await evidence.keep_send(conn, nid, req.channel, address,
                                         attachment and attachment.filename,
                                         attachment and attachment.content)
                await deliveries.keep_address(conn, nid, req.channel, key)
                provider_id = await sender.send(Outgoing(
                    notification_id=nid, channel=req.channel, address=address,
                    subject=rendered.subject, body=rendered.body, fields=rendered.fields,
                    reference=provider_ref(nid), template_id=rendered.template_id,
                    link=rendered.link, attachment=attachment,
                    policy_number=req.policy_number, journey_id=req.journey_id,
                    recipient_id=r.recipient_id, addressee=addressee(r)))
        except UncertainSendError as err:
            # The provider may have it. Where it can be settled, the next attempt does.
            delay = attempt.next_delay() if _settleable(sender) else None
            await deliveries.mark_unknown(
                conn, nid, req.policy_number, req.journey_id, err.code, datetime.now(TZ),
                review=delay is None,
                detail="no answer: settled on the next attempt" if delay else None)
            if delay is not None:
                raise _retry(req, err.code, delay) from None
            return REACHED, False
        except PermanentSendError as err:
            await _finish(conn, nid, req, r, rendered, recorded, "failed", err.code)
            channels = closed_channels(sender.provider, err.code, req.channel)
            if channels:
                await deliveries.suppress(conn, channels, key, err.code, nid)
            return err.code, False
        except TransientSendError as err:
            delay = attempt.next_delay(err.retry_after)
            if delay is None:
                return await _give_up(conn, nid, req, r, rendered, err.code), True
            await _finish(conn, nid, req, r, rendered, recorded, "queued", err.code,
                          detail=f"attempt {attempt.number} refused; the next in "
                                 f"{delay.total_seconds():g} s")
            raise _retry(req, err.code, delay) from None
        await deliveries.answer_attempt(conn, nid, "sent", None, sender.provider, provider_id)
        return REACHED, False

    async def _settle(self, conn: asyncpg.Connection, sender: Sender, req: SendRequest,
                      r: Recipient, nid: str, row: SendRecord, address: str | None,
                      attempt: Attempt, giving_up: bool) -> str | None | _Resend:
        """An interrupted send: REACHED (the provider has it, or may: then `unknown` with a
        review task), RESEND, or why it failed."""
        since = await deliveries.uncertain_since(conn, nid)
        lookup = getattr(sender, "lookup", None)
        window = getattr(sender, "safe_resend_within", None)
        found = CANNOT_TELL
        if since is None:
            # Every attempt so far was refused: nothing can have gone.
            await deliveries.reopen(conn, nid, NOT_RECEIVED, "no attempt reached the provider")
            return RESEND
        if lookup is not None and address:
            message = Outgoing(
                notification_id=nid, channel=req.channel, address=address,
                subject=row.subject, body=row.body or "", fields=None,
                reference=provider_ref(nid), template_id=row.template_id,
                policy_number=req.policy_number, journey_id=req.journey_id,
                recipient_id=r.recipient_id)
            try:
                found = await lookup(message, since=since)
            except TransientSendError as err:
                delay = None if giving_up else attempt.next_delay(err.retry_after)
                if delay is not None:
                    raise _retry(req, err.code, delay) from None  # ask again then
            if found.found and await deliveries.settle_found(conn, nid, sender.provider,
                                                             found.provider_id):
                return REACHED
            if found.found is False:
                pending = since + LOOKUP_SETTLE - datetime.now(UTC)
                if pending <= timedelta(0):
                    await deliveries.reopen(conn, nid, NOT_RECEIVED,
                                            f"{sender.provider} never got it: sent again")
                    return RESEND
                # Not there yet proves nothing while the request may still be in flight.
                delay = None if giving_up else attempt.next_delay(pending.total_seconds())
                if delay is not None:
                    if row.status != "unknown":
                        await deliveries.mark_unknown(
                            conn, nid, req.policy_number, req.journey_id, "interrupted",
                            datetime.now(TZ), review=False,
                            detail=f"not found at {sender.provider} yet: asked again")
                    raise _retry(req, "lookup_pending", delay)
        elif window is not None:
            if datetime.now(UTC) - since < window:
                await deliveries.reopen(conn, nid, REPEAT_DROPPED,
                                        f"sent again: {sender.provider} drops a repeat")
                return RESEND
            # Past it, a repeat could reach the customer twice, and a message the provider
            # had would have been confirmed by now: decided, so that the journey falls back.
            await deliveries.answer_attempt(conn, nid, "failed", UNCONFIRMED, moving=_INTERRUPTED,
                                            detail=f"not confirmed within {window} of the send")
            return UNCONFIRMED
        reason = row.error_code if row.status == "unknown" and row.error_code \
            else "interrupted"
        await deliveries.mark_unknown(conn, nid, req.policy_number, req.journey_id, reason,
                                      datetime.now(TZ), detail="nobody can tell whether the "
                                      "provider has it: not sent again; review opened")
        return REACHED


async def _recipients(conn: asyncpg.Connection, req: SendRequest,
                      bundle: PolicyBundle) -> list[Recipient]:
    holder = bundle.policyholder
    if req.scope == "policyholder":
        role = Role.GROUP_EMPLOYER if holder.is_organisation else Role.POLICYHOLDER
        return [Recipient(holder.customer_id, role, holder)]
    if req.scope == "emergency_contact":
        if holder.emergency_contact is None:
            return []
        return [Recipient(f"{holder.customer_id}.ec", Role.EMERGENCY_CONTACT, holder)]
    # `only`: those of the ids that are this policy's members (a crafted id never reaches
    # another customer); else a page of the members.
    ids = await store.member_ids(conn, req.policy_number, offset=req.offset, limit=req.limit,
                                 among=req.only)
    people = await store.load_customers(conn, ids)
    return [Recipient(i, Role.GROUP_MEMBER, people[i]) for i in ids if i in people]


# --- the records -------------------------------------------------------------------------


async def _finish(conn: asyncpg.Connection, nid: str, req: SendRequest, r: Recipient,
                  rendered: RenderedMessage, recorded: bool, status: str, error: str, *,
                  detail: str | None = None) -> None:
    """A refusal: on the attempt's record, or (refused before anything went out: no
    token, no connection) on a record of its own."""
    if recorded:
        await deliveries.answer_attempt(conn, nid, status, error, detail=detail)
    else:
        await deliveries.write_record(conn, nid, req, r.recipient_id, r.role, rendered, status,
                                      error, attempted=False, detail=detail)


async def _give_up(conn: asyncpg.Connection, nid: str, req: SendRequest, r: Recipient,
                   rendered: RenderedMessage, last_code: str | None) -> str:
    detail = (f"given up at the deadline; the provider's last answer: {last_code}"
              if last_code else "given up at the deadline: not sent in time")
    await deliveries.write_record(conn, nid, req, r.recipient_id, r.role, rendered, "failed",
                                  GAVE_UP, attempted=False, detail=detail)
    return GAVE_UP
