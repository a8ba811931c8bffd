"""The evidence pack of one journey: what it holds (the JSON and the PDF say the same), and
the words for statuses and provider codes that a complaints officer or a court reads."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from domain.evidence import PROOF_WORDS, ChainHead, DemandFinding, Verification
from domain.ids import IdError, MilestoneKey, Suffix
from domain.journey import InquiryKind, Outcome, Stage
from domain.models import (
    Channel,
    DebitFailureReason,
    Model,
    NotificationStatus,
    PolicyStatus,
    ProductKind,
    Role,
    TriggerKind,
)
from domain.plan import TZ
from domain.provider_codes import in_chinese

STATUS_WORDS = {
    "queued": "待重试（服务商暂未接收）", "sending": "发送中", "sent": "服务商已接收",
    "delivered": "已送达", "failed": "发送失败", "bounced": "邮件被退回",
    "skipped": "未发送（暂停期间）", "unknown": "结果不明（未重发，待核实）",
}


def code_words(code: str | None, channel: str | None = None) -> str | None:
    """A record's code in words (the one table: `domain.provider_codes`)."""
    return in_chinese(code, channel)


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
    milestone: str  # the record's key as stored: shown as it is, whatever its age
    channel: Channel
    recipient_role: Role
    address: str | None  # masked
    provider: str | None
    provider_message_id: str | None
    template: str | None  # id and version
    created_at: datetime
    subject: str | None
    text: str | None  # exactly as sent
    status: NotificationStatus
    statuses: list[PackStatus]
    letter: PackFile | None = None  # the formal letter (paper, or the e-mail's PDF)
    tracking_number: str | None = None
    agent: str | None = None  # who made the call, for agent calls


class PackMilestone(Model):
    key: MilestoneKey
    at: datetime
    channels: list[Channel]


class PackPayment(Model):
    transaction_id: str
    amount: Decimal
    currency: str
    paid_at: datetime


class PackDebitFailure(Model):
    attempted_at: datetime
    amount: Decimal
    reason_code: DebitFailureReason | None
    reason_text: str | None


class PackInquiry(Model):
    inquiry_id: str
    kind: InquiryKind
    received_at: datetime
    respond_by: datetime
    handled_at: datetime | None
    escalated_at: datetime | None
    on_time: bool | None  # None: not answered yet


class PackStage(Model):
    stage: Stage
    outcome: Outcome | None
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
    product_kind: ProductKind
    policyholder: str
    status: PolicyStatus


class PackJourney(Model):
    journey_id: str
    trigger: TriggerKind
    due_date: date | None
    amount_due: Decimal | None
    grace_ends_on: date | None
    lapses_on: date | None
    started_at: datetime
    stage: Stage
    outcome: Outcome | None
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
    first_reminder-resend:1 -> 首次提醒（正式催告）·联系方式更新后重发."""
    try:
        k = MilestoneKey.parse(key)
    except IdError:
        return key  # not a key of ours: shown as it is
    words = MESSAGE_WORDS.get(k.kind, k.kind.value) + (f"（第{k.month}个月）" if k.month else "")
    if k.suffix is Suffix.RESEND:
        words += "·联系方式更新后重发"
    elif k.suffix is Suffix.EMERGENCY:
        words += "·紧急联系人"
    elif k.suffix is not None:
        words += f"·{k.suffix.value}" + (f":{k.ref}" if k.ref else "")
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
