"""The evidence pack of one journey: what it holds (the JSON and the PDF say the same), and
the words for statuses and provider codes that a complaints officer or a court reads."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from domain.evidence import PROOF_WORDS, ChainHead, DemandFinding, Verification
from domain.models import Model
from domain.plan import TZ

STATUS_WORDS = {
    "queued": "待重试（服务商暂未接收）", "sending": "发送中", "sent": "服务商已接收",
    "delivered": "已送达", "failed": "发送失败", "bounced": "邮件被退回",
    "skipped": "未发送（暂停期间）", "unknown": "结果不明（未重发，待核实）",
}

# Provider and system codes, as the records keep them.
CODE_WORDS = {
    "21211": "号码无效（Twilio 21211）", "21610": "用户已退订短信（Twilio 21610）",
    "21614": "非手机号码（Twilio 21614）", "20429": "服务商限流（Twilio 20429）",
    "20503": "服务商暂不可用（Twilio 20503）", "30003": "手机无法接通（Twilio 30003）",
    "30005": "号码不存在（Twilio 30005）", "30006": "固定电话无法接收短信（Twilio 30006）",
    "30007": "运营商拦截（Twilio 30007）", "30008": "未知错误（Twilio 30008）",
    "busy": "电话占线", "no-answer": "电话无人接听", "canceled": "呼叫已取消",
    "40003": "微信用户标识无效（微信 40003）", "43004": "用户未关注公众号（微信 43004）",
    "43101": "用户拒收消息（微信 43101）", "429": "服务商限流（429）",
    "503": "服务商暂不可用（503）", "500": "服务商内部错误（500）",
    "no_address": "客户资料中无该渠道地址", "no_postal_address": "客户资料中无邮寄地址",
    "interrupted": "发送过程中断，服务商可能已接收", "timeout": "服务商未应答，可能已接收",
    "connection_lost": "连接中断，服务商可能已接收", "connect_failed": "无法连接服务商",
    "outside_call_hours": "不在允许的通话时段", "dial_limit": "已达当日拨打上限",
    "no_answer": "坐席外呼无人接听", "wrong_number": "坐席外呼号码错误",
    "not_delivered": "人工核实未送达", "dropped": "邮件被服务商丢弃",
}


def code_words(code: str | None) -> str | None:
    if not code:
        return None
    return CODE_WORDS.get(code) or (f"邮件退信（{code}）" if code[:1] in "45" and " " in code
                                    else f"服务商代码 {code}")


class PackFile(Model):
    """A file the pack carries: embedded in the PDF and written beside it."""

    filename: str
    sha256: str
    size: int


class PackStatus(Model):
    at: datetime
    status: str
    words: str
    code: str | None = None
    code_words: str | None = None
    source: str  # "provider" (its callback) or "system" (our send, an agent, an operator)


class PackMessage(Model):
    notification_id: str
    milestone: str
    channel: str
    recipient_role: str
    address: str | None  # masked
    provider: str | None
    provider_message_id: str | None
    template: str | None  # id and version
    created_at: datetime
    subject: str | None
    text: str | None  # exactly as sent
    status: str
    statuses: list[PackStatus]
    letter: PackFile | None = None  # the formal letter (paper, or the e-mail's PDF)
    tracking_number: str | None = None
    agent: str | None = None  # who made the call, for agent calls


class PackMilestone(Model):
    key: str
    at: datetime
    channels: list[str]


class PackPayment(Model):
    transaction_id: str
    amount: Decimal
    currency: str
    paid_at: datetime


class PackDebitFailure(Model):
    attempted_at: datetime
    amount: Decimal
    reason_code: str | None
    reason_text: str | None


class PackInquiry(Model):
    inquiry_id: str
    kind: str
    received_at: datetime
    respond_by: datetime
    handled_at: datetime | None
    escalated_at: datetime | None
    on_time: bool | None  # None: not answered yet


class PackStage(Model):
    stage: str
    outcome: str | None
    recorded_at: datetime


class PackEntry(Model):
    chain: str
    seq: int
    table: str
    key: str
    version: int
    changed: list[str] | None
    entry_hash: str
    recorded_at: datetime


class PackAnchor(Model):
    seq: int
    entry_hash: str
    workflow_id: str
    run_id: str
    anchored_at: datetime


class PackPolicy(Model):
    policy_number: str
    product: str
    product_kind: str
    policyholder: str
    status: str


class PackJourney(Model):
    journey_id: str
    trigger: str
    due_date: date | None
    amount_due: Decimal | None
    grace_ends_on: date | None
    lapses_on: date | None
    started_at: datetime
    stage: str
    outcome: str | None
    lapsed_at: datetime | None
    closed_at: datetime | None


class EvidencePack(Model):
    reference: str
    generated_at: datetime
    requested_by: str
    reason: str
    insurer: str
    policy: PackPolicy
    journey: PackJourney
    formal_demand: DemandFinding
    timeline: list[PackMilestone]  # as planned when the journey started
    messages: list[PackMessage]
    payments: list[PackPayment]
    debit_failures: list[PackDebitFailure]
    inquiries: list[PackInquiry]
    stages: list[PackStage]
    chain: list[PackEntry]  # the journey's entries, then the policy's own
    head: ChainHead
    anchors: list[PackAnchor]
    verification: Verification


def on_time(handled_at: datetime | None, respond_by: datetime) -> bool | None:
    return None if handled_at is None else handled_at <= respond_by


CHANNEL_WORDS = {"sms": "短信", "wechat": "微信服务通知", "wecom": "企业微信", "voice": "语音电话",
                 "agent_call": "坐席外呼", "email": "电子邮件", "letter": "纸质信函"}
MESSAGE_WORDS = {
    "first_reminder": "首次提醒（正式催告）", "second_reminder": "第二次提醒",
    "lapse_notice": "效力中止通知", "follow_up": "复效跟进", "reenrolment_offer": "续保邀请",
    "rescission_notice": "解除合同通知", "payment_confirmation": "缴费确认",
    "payment_after_lapse": "中止后缴费说明", "reinstatement_approved": "复效批准通知",
    "reinstatement_refused": "复效未获批准通知", "emergency_contact": "请紧急联系人转告",
}
ROLE_WORDS = {"policyholder": "投保人", "group_employer": "投保单位",
              "group_member": "被保险员工", "emergency_contact": "紧急联系人"}
TRIGGER_WORDS = {"premium_overdue": "保费逾期未缴", "renewal_unpaid": "到期未续保",
                 "debit_failed": "自动扣款失败", "rescission": "解除合同"}
STAGE_WORDS = {"at_risk": "宽限期内", "lapsed": "效力中止", "reinstating": "复效审核中",
               "closed": "已结束", "held": "暂停（资料待核实）"}
OUTCOME_WORDS = {"paid": "已缴费", "reinstated": "已复效", "follow_up_ended": "跟进期满",
                 "rescinded": "已解除", "not_renewed": "未续保", "cancelled": "已终止"}
INQUIRY_WORDS = {"question": "咨询", "hardship": "缴费困难", "complaint": "投诉",
                 "reinstatement": "复效申请"}


def milestone_words(key: str) -> str:
    """How the pack names a record's milestone key: follow_up_3 -> 复效跟进（第3个月）,
    first_reminder-fallback -> 首次提醒（正式催告）·备用渠道."""
    base, _, suffix = key.partition("-")
    kind, month = base, None
    head, _, tail = base.rpartition("_")
    if tail.isdigit() and head in MESSAGE_WORDS:
        kind, month = head, tail
    words = MESSAGE_WORDS.get(kind, kind) + (f"（第{month}个月）" if month else "")
    if suffix.startswith("fallback"):
        words += "·备用渠道"
    elif suffix.startswith("resend"):
        words += "·联系方式更新后重发"
    elif suffix == "emergency":
        words += "·紧急联系人"
    elif suffix:
        words += f"·{suffix}"
    return words


def demand_sentence(finding: DemandFinding) -> str:
    """The first page's statement on the formal demand (Insurance Law art. 36)."""
    if finding.delivered:
        at = f"{finding.at.astimezone(TZ):%Y年%m月%d日 %H:%M}" if finding.at else "时间未记录"
        ref = f"（{finding.reference}）" if finding.reference else ""
        return (f"正式催告（首次提醒，《保险法》第三十六条）已送达：{at}，"
                f"依据为{PROOF_WORDS[finding.proof]}{ref}，渠道：{CHANNEL_WORDS.get(finding.channel)}。")
    if finding.accepted:
        return ("正式催告（首次提醒，《保险法》第三十六条）已由服务商接收，"
                "但记录中没有送达证明（送达回执、挂号信邮件号或坐席外呼记录）。")
    return "正式催告（首次提醒，《保险法》第三十六条）未能送达：所有渠道均未被接收。"
