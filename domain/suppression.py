"""The suppression rule: which permanent refusals close an address for good (until the
customer's contact details are updated), and the key an address is kept under."""

from __future__ import annotations

import hashlib

from domain.models import Channel

_PHONE = (Channel.SMS, Channel.VOICE)

# Refusals about the address itself: not a rate limit, not our account's settings, not a
# handset that is switched off (Twilio 30003) or a mailbox that is full (a 4.x.x bounce).
# A number that does not exist is closed for texts and calls alike.
NO_SUCH_NUMBER = frozenset({
    ("twilio", "21211"),  # invalid 'To' number
    ("twilio", "21214"),  # the number cannot be reached
    ("twilio", "21217"),  # not a valid phone number
    ("twilio", "13224"),  # invalid number for a call
})
# The others close the address on the channel that refused it only.
REFUSED_ON_ITS_CHANNEL = frozenset({
    ("twilio", "21610"),  # unsubscribed (replied STOP)
    ("twilio", "21614"),  # not a mobile number: a call may still reach it
    ("twilio", "30005"),  # delivery callback: unknown destination handset
    ("twilio", "30006"),  # delivery callback: a landline, no SMS
    ("sendgrid", "dropped"),  # on SendGrid's own list: bounced, unsubscribed, spam report
    ("wechat", "40003"),  # invalid openid
    ("wechat", "43004"),  # does not follow the account (unsubscribed)
    ("wechat", "43101"),  # refuses the account's template messages
    ("wechat", "failed:user block"),  # the job-finished event's refusal
    ("wecom", "40003"),  # invalid userid
    ("wecom", "60111"),  # userid not found
    ("wecom", "invaliduser"),  # named as unreachable in WeCom's answer
})


def closed_channels(provider: str, code: str | None, channel: Channel
                    ) -> tuple[Channel, ...]:
    """The channels on which a permanent refusal `code` from `provider`, of a message on
    `channel`, closes the address."""
    if not code:
        return ()
    if (provider, code) in NO_SUCH_NUMBER and channel in _PHONE:
        return _PHONE
    if (provider, code) in REFUSED_ON_ITS_CHANNEL:
        return (channel,)
    if provider == "sendgrid" and code.startswith("5."):
        return (channel,)  # a hard bounce (SMTP 5.x.x: no such mailbox, no such domain)
    return ()


def address_key(address: str) -> str:
    """What a suppression is kept under: a hash, never the address (e-mails compared
    without case; phone numbers, openids and userids as stored)."""
    value = address.strip()
    if "@" in value:
        value = value.lower()
    return hashlib.sha256(value.encode()).hexdigest()
