"""What a delivery code on a message record means: the providers' codes (Twilio, SendGrid,
WeChat, WeCom) and our own reasons, in Chinese and English, for every place an operator
or an agent reads one (`lapse status`, the console, the evidence pack).

A record keeps the code only (`notifications.error_code`): a provider's message quotes the
address, so it is never stored. Codes of different providers may collide (40003 is an
invalid openid on WeChat and an invalid userid on WeCom), so the channel is asked first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TWILIO, SENDGRID, WECHAT, WECOM = "Twilio", "SendGrid", "微信", "企业微信"


@dataclass(frozen=True)
class Meaning:
    zh: str
    en: str
    provider: str | None = None  # None: a reason of ours, not a provider's code


def _table(provider: str | None, rows: dict[str, tuple[str, str]]) -> dict[str, Meaning]:
    return {code: Meaning(zh, en, provider) for code, (zh, en) in rows.items()}


_TWILIO = _table(TWILIO, {
    "21211": ("号码无效", "invalid number"),
    "21214": ("号码无法接通", "number cannot be reached"),
    "21217": ("号码格式无效", "number does not look valid"),
    "21408": ("未开通向该地区发送", "region not enabled"),
    "21610": ("用户已退订短信", "recipient unsubscribed"),
    "21612": ("无法路由到该号码", "cannot route to this number"),
    "21614": ("非手机号码", "not a mobile number"),
    "13224": ("呼叫号码无效", "invalid number for a call"),
    "20003": ("服务商认证失败", "authentication failed"),
    "20429": ("服务商限流", "rate limited"),
    "20503": ("服务商暂不可用", "provider unavailable"),
    "30001": ("服务商队列溢出", "provider queue overflow"),
    "30002": ("服务商账户已暂停", "account suspended"),
    "30003": ("手机无法接通", "handset unreachable"),
    "30004": ("短信被拦截", "message blocked"),
    "30005": ("号码不存在", "unknown handset"),
    "30006": ("固定电话或运营商不支持短信", "landline or unreachable carrier"),
    "30007": ("运营商拦截", "filtered by the carrier"),
    "30008": ("未知错误", "unknown error"),
    # A call's final status when it was not answered (the status callback's CallStatus).
    "busy": ("电话占线", "line busy"),
    "no-answer": ("电话无人接听", "no answer"),
    "canceled": ("呼叫已取消", "call canceled"),
    "failed": ("呼叫失败", "call failed"),
    "twilio_error": ("服务商异常应答", "unexpected provider error"),
})

_SENDGRID = _table(SENDGRID, {
    "bounce": ("邮件被退回", "bounced"),
    "dropped": ("邮件被服务商丢弃", "dropped by the provider"),
    "spamreport": ("收件人标记为垃圾邮件", "marked as spam"),
    "blocked": ("收件服务器暂时拒收", "blocked by the receiving server"),
    "deferred": ("暂缓投递", "deferred"),
    "unsubscribe": ("收件人已退订", "recipient unsubscribed"),
})

# SMTP enhanced status codes of a bounce (SendGrid's `status`), the common ones.
_SMTP = {
    "5.1.1": ("邮箱不存在", "mailbox does not exist"),
    "5.1.2": ("收件域名不存在", "domain does not exist"),
    "5.2.1": ("邮箱已停用", "mailbox disabled"),
    "5.2.2": ("邮箱已满", "mailbox full"),
    "5.7.1": ("收件服务器拒收", "refused by the receiving server"),
}

_WECHAT = _table(WECHAT, {
    "40003": ("微信用户标识无效", "invalid openid"),
    "43004": ("用户未关注公众号", "not a follower of the account"),
    "43101": ("用户拒收模板消息", "user refused template messages"),
    "40001": ("访问令牌无效", "access token invalid"),
    "40014": ("访问令牌无效", "access token invalid"),
    "42001": ("访问令牌已过期", "access token expired"),
    "45009": ("接口调用超过限额", "API quota reached"),
    "45011": ("接口调用过于频繁", "API called too often"),
    "45047": ("客服消息超过下发上限", "message limit reached"),
    "-1": ("微信系统繁忙", "system busy"),
    "failed:user block": ("用户拒收", "user blocked the account's messages"),
    "failed: system failed": ("微信系统发送失败", "WeChat system failure"),
})

_WECOM = _table(WECOM, {
    "40003": ("成员账号无效", "invalid userid"),
    "60111": ("成员不存在", "userid not found"),
    "81013": ("成员不在应用可见范围", "no member in the application's visible range"),
    "invaliduser": ("成员账号无效", "invalid userid"),
    "unlicenseduser": ("成员未获应用许可", "member not licensed"),
    "40014": ("访问令牌无效", "access token invalid"),
    "41001": ("缺少访问令牌", "access token missing"),
    "42001": ("访问令牌已过期", "access token expired"),
    "45009": ("接口调用超过限额", "API quota reached"),
    "45033": ("接口并发调用过多", "too many calls at once"),
    "-1": ("企业微信系统繁忙", "system busy"),
})

# HTTP statuses a provider answered with (SendGrid, WeChat and WeCom report them as is).
_HTTP = _table(None, {
    "400": ("请求被服务商拒绝", "request refused"),
    "401": ("服务商认证失败", "authentication failed"),
    "403": ("服务商认证失败", "authentication failed"),
    "413": ("请求过大", "request too large"),
    "429": ("服务商限流", "rate limited"),
    "500": ("服务商内部错误", "provider error"),
    "502": ("服务商暂不可用", "provider unavailable"),
    "503": ("服务商暂不可用", "provider unavailable"),
    "504": ("服务商应答超时", "provider timed out"),
})

# Our own reasons: a record we failed or held back, or an outcome an agent reported.
_OURS = _table(None, {
    "no_address": ("客户资料中无该渠道地址", "no address for this channel"),
    "no_postal_address": ("客户资料中无邮寄地址", "no postal address"),
    "suppressed": ("该地址此前已永久失败，暂停使用", "address failed for good before: suppressed"),
    "provider_unavailable": ("服务商持续不可用，已放弃发送", "provider unavailable: given up"),
    "sms_segments": ("短信超出条数预算", "SMS over its segment budget"),
    "sms_over_budget": ("短信超出条数预算", "SMS over its segment budget"),
    "sms_too_long": ("短信超过500字", "SMS over 500 characters"),
    "content_rule": ("内容不符合规则，未发送", "breaks a content rule: not sent"),
    "interrupted": ("发送过程中断，服务商可能已接收", "interrupted: the provider may have it"),
    "unconfirmed": ("发送中断且无法确认，未再发送", "interrupted, unconfirmed: not sent again"),
    "timeout": ("服务商未应答，可能已接收", "no answer: the provider may have it"),
    "connection_lost": ("连接中断，服务商可能已接收", "connection lost: the provider may have it"),
    "no_message_id": ("服务商未返回消息编号", "accepted without a message id"),
    "connect_failed": ("无法连接服务商", "provider not reachable"),
    "bad_response": ("服务商应答无法识别", "unexpected provider answer"),
    "lookup_failed": ("查询服务商记录失败", "provider look-up failed"),
    "token_timeout": ("获取访问令牌超时", "access token request timed out"),
    "outside_call_hours": ("不在允许的通话时段", "outside the call hours"),
    "dial_limit": ("已达当日拨打上限", "daily dial limit reached"),
    "no_answer": ("坐席外呼无人接听", "agent call not answered"),
    "wrong_number": ("坐席外呼号码错误", "agent call: wrong number"),
    "not_delivered": ("人工核实未送达", "confirmed not delivered by an operator"),
})

# Failures on our side or the provider's, which say nothing of the customer's address: an
# outage, a limit, our credentials, a content rule, a send we did not make. A message that
# failed only so has not failed "for good" (MISSION 3: invalid number, bounced e-mail,
# calls unanswered), so it never makes the customer unreachable (the emergency contact,
# the public notice); a formal notice failed so goes to operations.
OUR_SIDE: frozenset[str] = frozenset({
    # ours
    "provider_unavailable", "sms_segments", "sms_over_budget", "sms_too_long",
    "content_rule", "interrupted", "unconfirmed", "timeout", "connection_lost", "no_message_id",
    "connect_failed", "bad_response", "lookup_failed", "token_timeout",
    "outside_call_hours", "dial_limit",
    # Twilio: credentials, limits, outages, our account, its own errors
    "20003", "20429", "20503", "30001", "30002", "30008", "twilio_error",
    # WeChat and WeCom: tokens, quotas, system errors
    "40001", "40014", "41001", "42001", "45009", "45011", "45033", "45047", "-1",
    "failed: system failed",
    # HTTP statuses of a request the provider did not take
    "401", "403", "413", "429", "500", "502", "503", "504",
})

_BY_CHANNEL = {"sms": (_TWILIO,), "voice": (_TWILIO,), "email": (_SENDGRID,),
               "wechat": (_WECHAT,), "wecom": (_WECOM,)}
# After the channel's own provider: ours, then every provider (WeChat before WeCom: the
# codes they share mean the same to a reader), then plain HTTP statuses.
_ANY = (_OURS, _TWILIO, _SENDGRID, _WECHAT, _WECOM, _HTTP)
_SMTP_CODE = re.compile(r"^(?:(?P<basic>[245]\d\d)\s)?(?P<enhanced>[245]\.\d{1,3}\.\d{1,3})\b")
_SMTP_BASIC = re.compile(r"^(?P<basic>[45]\d\d)(\s|$)")


def meaning(code: str | None, channel: str | None = None) -> Meaning | None:
    """What a record's code means, or None for a code nobody here knows."""
    if not code:
        return None
    channel = str(getattr(channel, "value", channel)) if channel else None
    for table in (*_BY_CHANNEL.get(channel or "", ()), *_ANY):
        if code in table:
            return table[code]
    return _bounce(code)


def _bounce(code: str) -> Meaning | None:
    smtp = _SMTP_CODE.match(code)
    if smtp:
        zh, en = _SMTP.get(smtp["enhanced"]) or (
            ("邮件被退回（永久）", "hard bounce") if smtp["enhanced"][0] == "5"
            else ("邮件暂时无法投递", "soft bounce"))
        return Meaning(zh, en, SENDGRID)
    basic = _SMTP_BASIC.match(code)
    if basic:
        return Meaning(*(("邮件被退回（永久）", "hard bounce") if basic["basic"][0] == "5"
                         else ("邮件暂时无法投递", "soft bounce")), SENDGRID)
    return None


def explain(code: str | None, channel: str | None = None) -> str:
    """`21211 号码无效 / invalid number`: the code with its meaning, as the CLI shows it
    (the code alone when its meaning is not known; empty when there is none)."""
    if not code:
        return ""
    found = meaning(code, channel)
    return f"{code} {found.zh} / {found.en}" if found else code


def in_chinese(code: str | None, channel: str | None = None) -> str | None:
    """`号码无效（Twilio 21211）`: the meaning first, with the provider and its code, for
    pages a customer or a complaints officer reads."""
    if not code:
        return None
    found = meaning(code, channel)
    if found is None:
        return f"服务商代码 {code}"
    return f"{found.zh}（{found.provider} {code}）" if found.provider else found.zh
