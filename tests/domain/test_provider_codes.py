"""Every delivery code a record can carry reads with its meaning, from one table."""

from __future__ import annotations

from typing import get_args

import pytest

from activities import twilio_sender, wechat_sender, wecom_sender
from domain.evidence_pack import code_words
from domain.provider_codes import explain, in_chinese, meaning
from sandbox.faults import FaultKind
from web.console import words


def test_a_code_reads_with_its_meaning_in_both_languages():
    assert explain("21211", "sms") == "21211 号码无效 / invalid number"
    assert explain("no_address", "email") == ("no_address 客户资料中无该渠道地址 / "
                                              "no address for this channel")
    assert explain(None) == "" and explain("99999") == "99999"  # unknown: the code alone


def test_the_channel_tells_apart_codes_two_providers_share():
    assert meaning("40003", "wechat").en == "invalid openid"
    assert meaning("40003", "wecom").en == "invalid userid"
    assert meaning("40003").provider == "微信"  # no channel: WeChat, the same idea


def test_bounces_read_by_their_smtp_status():
    assert explain("5.1.1", "email") == "5.1.1 邮箱不存在 / mailbox does not exist"
    assert meaning("5.4.7", "email").en == "hard bounce"
    assert meaning("550 5.2.2 mailbox full", "email").zh == "邮箱已满"
    assert meaning("421 try later", "email").en == "soft bounce"


def test_the_evidence_pack_and_the_console_read_the_same_table():
    assert code_words("21211", "sms") == in_chinese("21211") == "号码无效（Twilio 21211）"
    assert code_words("no_address") == "客户资料中无该渠道地址"
    assert code_words("31415") == "服务商代码 31415"
    assert words.code("43004", "wechat") == "43004 用户未关注公众号"


@pytest.mark.parametrize("channel, codes", [
    ("sms", twilio_sender.PERMANENT_CODES),
    ("wechat", wechat_sender.PERMANENT | wechat_sender.TRANSIENT | wechat_sender.STALE_TOKEN),
    ("wecom", wecom_sender.PERMANENT | wecom_sender.TRANSIENT | wecom_sender.STALE_TOKEN),
])
def test_every_code_a_sender_classifies_has_a_meaning(channel, codes):
    assert [c for c in sorted(codes) if meaning(str(c), channel) is None] == []


def test_every_code_the_sandbox_can_inject_has_a_meaning():
    shown = {"invalid_number": ("21211", "40003", "81013"), "unsubscribed": ("21610", "43004"),
             "bounce": ("5.1.1",), "undelivered": ("30003", "failed:user block"),
             "busy": ("busy",), "no_answer": ("no-answer",), "rate_limited": ("20429", "429"),
             "server_error": ("500",), "unavailable": ("503",), "token_expired": ("42001",),
             "timeout": ("timeout",)}
    assert set(get_args(FaultKind)) <= set(shown)
    assert [c for codes in shown.values() for c in codes if meaning(c) is None] == []
