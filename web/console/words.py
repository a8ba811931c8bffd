"""The console's Chinese words for the journey's vocabulary, and how times, amounts and
milestone keys read on a page. A word without a label reads as itself, so a new stage or
status shows up (untranslated) rather than breaking a page."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from domain.ids import IdError, MilestoneKey, Suffix
from domain.plan import TZ
from domain.provider_codes import meaning

STAGE = {"held": "待核实资料", "at_risk": "有失效风险（宽限期内）", "lapsed": "已失效（效力中止）",
         "reinstating": "复效审核中", "closed": "已结束"}
OUTCOME = {"paid": "已缴清保费", "reinstated": "已复效", "follow_up_ended": "复效跟进期结束",
           "rescinded": "合同已解除", "not_renewed": "未续保", "cancelled": "已取消"}
TRIGGER = {"premium_overdue": "保费逾期未缴", "renewal_unpaid": "续保保费未缴",
           "debit_failed": "自动扣款失败", "rescission": "合同解除"}
CHANNEL = {"sms": "短信", "wechat": "微信服务号", "wecom": "企业微信", "voice": "语音电话",
           "agent_call": "坐席外呼", "email": "电子邮件", "letter": "纸质信函"}
RECIPIENT = {"policyholder": "投保人", "insured": "被保险人", "group_employer": "投保单位",
             "group_member": "团体成员", "emergency_contact": "紧急联系人"}
DELIVERY = {"queued": "排队待发", "sending": "正在发送", "sent": "已发出，等待送达回执",
            "delivered": "已送达", "failed": "未送达", "bounced": "邮件被退回",
            "skipped": "未发送（已暂停）", "unknown": "结果不明，待人工核实"}
SEGMENT = {"standard": "普通客户", "elderly": "老年客户", "group": "团体保单",
           "unreachable": "无法联系", "hardship": "经济困难"}
MESSAGE = {"first_reminder": "首次提醒（正式催告）", "second_reminder": "第二次提醒",
           "lapse_notice": "失效通知", "follow_up": "复效跟进", "reenrolment_offer": "重新投保邀请",
           "rescission_notice": "解除合同通知", "payment_confirmation": "缴费确认",
           "payment_after_lapse": "失效后缴费说明", "reinstatement_approved": "复效获批通知",
           "reinstatement_refused": "复效未获批准通知", "emergency_contact": "请紧急联系人转告",
           "public_notice": "公告"}
INQUIRY = {"question": "咨询", "hardship": "经济困难", "complaint": "投诉", "reinstatement": "复效"}
TASK_KIND = {"outbound_call": "外呼", "home_visit": "上门拜访",
             "inquiry_escalation": "询问超时升级", "contact_repair": "修复联系方式",
             "delivery_review": "核实送达结果",
             "notice_failed": "正式通知未能送达", "data_verification": "核实保单资料"}
TASK_STATUS = {"open": "待领取", "taken": "处理中", "done": "已完成", "cancelled": "已取消"}
TASK_OUTCOME = {"reached": "已联系上客户", "promised_to_pay": "客户承诺缴费",
                "hardship": "客户经济困难", "refused": "客户拒绝缴费", "no_answer": "无人接听",
                "wrong_number": "号码错误",
                "contact_updated": "联系方式已更正", "not_found": "未找到新的联系方式",
                "delivered": "确认已送达", "not_delivered": "确认未送达", "handled": "已处理",
                "visited": "已上门拜访", "not_home": "未见到本人"}
SIGNAL = {"delivery_failed": "旅程已获知未送达，将改用其他渠道",
          "inquiry_received": "旅程已登记经济困难询问", "contact_updated": "旅程已获知联系方式更正",
          "inquiry_handled": "旅程已关闭该询问"}
PRODUCT_KIND = {"long_term": "长期险", "short_term": "短期险"}


def word(table: dict[str, str], value: object) -> str:
    text = str(getattr(value, "value", value))
    return table.get(text, text)


def code(value: str, channel: str | None = None) -> str:
    """A record's delivery code with its meaning (`21211 号码无效`), from the one table."""
    found = meaning(value, channel)
    return f"{value} {found.zh}" if found else value


# What a repeat adds to its message's name; a key is read by domain.ids.MilestoneKey only.
_SUFFIX = {Suffix.RESEND: "（重发）", Suffix.EMERGENCY: "（紧急联系人）", Suffix.REDIAL: "（重拨）"}


def milestone(key: str) -> str:
    """A milestone key in words: follow_up_3 -> 复效跟进（第3个月）."""
    try:
        k = MilestoneKey.parse(key)
    except IdError:
        return key  # not a key of ours: shown as it is
    label = word(MESSAGE, k.kind.value)
    if k.month:
        label += f"（第{k.month}个月）"
    return label + _SUFFIX.get(k.suffix, "")


def at(value: datetime | None) -> str:
    return value.astimezone(TZ).strftime("%Y-%m-%d %H:%M") if value else "-"


def day(value: date | datetime | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        value = value.astimezone(TZ).date()
    return value.isoformat()


def money(value: Decimal | None) -> str:
    return "-" if value is None else f"¥{value:,.2f}"
