"""One sender per channel: the real provider where its credentials are set, else the same
client code against the sandbox; each behind its channel's rate limit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import asyncpg

import sandbox as sb
from activities.agent_call import AgentCallQueue
from activities.channels import Sender
from activities.letters import PrintQueue
from activities.rate_limit import RateLimited, RateShares, TokenBucket
from activities.sendgrid_sender import SendGridEmail
from activities.twilio_sender import DialGuard, TwilioSms, TwilioVoice
from activities.wechat_sender import WeChatTemplate
from activities.wecom_sender import WeComMessage
from domain.models import Channel
from domain.plan import TZ, CompanyRules
from infra.settings import Settings

# Messages per second per channel, unless LAPSE_SEND_RATES says otherwise, shared by the
# worker processes alive (rate_shares). Twilio
# sends about 1 SMS a second per long code (more on short codes and Messaging Services),
# SendGrid takes far more; calls are few and slow.
DEFAULT_RATES: dict[Channel, float] = {
    Channel.SMS: 10.0, Channel.VOICE: 2.0, Channel.EMAIL: 50.0, Channel.WECHAT: 20.0,
    Channel.WECOM: 20.0,
}


def _wall_clock() -> datetime:
    return datetime.now(TZ)


def build_senders(settings: Settings, sandbox_url: str | None, pool: asyncpg.Pool, *,
                  clock: Callable[[], datetime] | None = _wall_clock,
                  rules: CompanyRules | None = None, timeout: float = 10.0
                  ) -> dict[Channel, Sender]:
    """The senders of one worker process.

    `sandbox_url` is where the sandbox providers (and the callback endpoint) listen; it is
    needed for every provider without credentials. `clock` is the wall clock in Shanghai
    for the call window and the daily dial limit; with compressed journey time (demos)
    pass None: the planner's slots keep calls inside the window in journey time.
    """
    rules = rules or CompanyRules()
    if settings.providers_sandboxed and not sandbox_url:
        raise ValueError(f"no credentials for {', '.join(settings.providers_sandboxed)} and "
                         "no sandbox URL: run `lapse sandbox` or set the provider settings")
    callbacks = settings.callback_url or sandbox_url
    if clock is not None and settings.time_scale != 1:
        clock = None
    twilio = settings.twilio
    twilio_args = ((twilio.account_sid, twilio.auth_token.get_secret_value(),
                    twilio.from_number) if twilio else
                   (sb.TWILIO_ACCOUNT_SID, sb.TWILIO_AUTH_TOKEN, sb.TWILIO_FROM_NUMBER))
    twilio_kwargs = {"base_url": None if twilio else sandbox_url, "callback_base": callbacks,
                     "timeout": timeout}
    guard = (DialGuard(pool, rules.send_windows[Channel.VOICE],
                       rules.max_dial_attempts_per_day, clock) if clock else None)
    grid = settings.sendgrid
    wechat = settings.wechat
    wecom = settings.wecom
    senders: dict[Channel, Sender] = {
        Channel.SMS: TwilioSms(*twilio_args, **twilio_kwargs),
        Channel.VOICE: TwilioVoice(*twilio_args, guard=guard, **twilio_kwargs),
        Channel.EMAIL: SendGridEmail(
            grid.api_key.get_secret_value() if grid else sb.SENDGRID_API_KEY,
            grid.from_email if grid else sb.SENDGRID_FROM,
            host=None if grid else sandbox_url, timeout=timeout),
        Channel.WECHAT: WeChatTemplate(
            wechat.app_id if wechat else sb.WECHAT_APP_ID,
            wechat.app_secret.get_secret_value() if wechat else sb.WECHAT_APP_SECRET,
            template_ids=wechat.template_ids if wechat else None, timeout=timeout,
            **({} if wechat else {"base_url": sandbox_url})),
        Channel.WECOM: WeComMessage(
            wecom.corp_id if wecom else sb.WECOM_CORP_ID,
            wecom.agent_id if wecom else sb.WECOM_AGENT_ID,
            wecom.secret.get_secret_value() if wecom else sb.WECOM_SECRET, timeout=timeout,
            **({} if wecom else {"base_url": sandbox_url})),
        Channel.AGENT_CALL: AgentCallQueue(pool, rules.send_windows[Channel.AGENT_CALL],
                                           clock=clock or _wall_clock),
        Channel.LETTER: PrintQueue(pool),
    }
    rates = {**DEFAULT_RATES, **{Channel(k): v for k, v in settings.send_rates.items()}}
    return {channel: RateLimited(sender, TokenBucket(rates[channel])) if channel in rates
            else sender for channel, sender in senders.items()}


def rate_shares(pool: asyncpg.Pool, senders: dict[Channel, Sender]) -> RateShares:
    """This process's share of the rate-limited channels' rates (run it beside the worker)."""
    return RateShares(pool, {channel: sender.bucket for channel, sender in senders.items()
                             if isinstance(sender, RateLimited)})


async def close_senders(senders: dict[Channel, Sender]) -> None:
    """Close the senders' HTTP sessions and threads (once, whatever channels share one)."""
    seen = set()
    for sender in senders.values():
        close = getattr(sender, "aclose", None)
        if close is not None and id(sender) not in seen:
            seen.add(id(sender))
            await close()
