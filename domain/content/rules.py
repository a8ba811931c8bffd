"""Content rules enforced on every rendered message: elements, length, wording, PII, speech."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from domain.content.context import MessageContext, Variant
from domain.content.glossary import misused_terms
from domain.models import Channel, MessageKind, Model

# --- errors ------------------------------------------------------------------------------


class Violation(Model):
    """One broken rule. `detail` names what is wrong, never the personal data involved."""

    rule: str
    detail: str = ""


class ContentRuleError(ValueError):
    """A message breaks a content rule and must not be sent; fix the template or context."""

    def __init__(self, template_id: str, violations: list[Violation]) -> None:
        self.template_id = template_id
        self.violations = violations
        self.rule = violations[0].rule
        listed = "; ".join(f"{v.rule}" + (f" ({v.detail})" if v.detail else "")
                           for v in violations)
        super().__init__(f"template {template_id} breaks content rules: {listed}; "
                         "the message must not be sent: fix the template or its context")


# --- channels ----------------------------------------------------------------------------

MASKED_CHANNELS = frozenset({Channel.SMS, Channel.WECHAT, Channel.WECOM, Channel.VOICE})
"""Short channels: policy number masked, names as surname plus honorific (section 4)."""
WRITTEN_LONG = frozenset({Channel.EMAIL, Channel.LETTER, Channel.AGENT_CALL})
ALWAYS_MASKED_KINDS = frozenset({MessageKind.EMERGENCY_CONTACT, MessageKind.PUBLIC_NOTICE})
"""Read by someone other than the customer: masked whatever the channel."""

# --- SMS length --------------------------------------------------------------------------

SMS_SINGLE = 70
SMS_SEGMENT = 67
SMS_MAX = 500


def sms_length(text: str) -> int:
    """Length as operators count it: UCS-2 units, so a rare character outside the BMP
    (a surrogate pair, e.g. 𠀾) counts twice."""
    return len(text.encode("utf-16-le")) // 2


def sms_segments(text: str) -> int:
    n = sms_length(text)
    return 1 if n <= SMS_SINGLE else math.ceil(n / SMS_SEGMENT)


def check_sms_length(text: str, budget: int) -> list[Violation]:
    n = sms_length(text)
    if n > SMS_MAX:
        return [Violation(rule="sms_too_long", detail=f"{n} characters, at most {SMS_MAX}")]
    segments = sms_segments(text)
    if segments > budget:
        return [Violation(rule="sms_over_budget",
                          detail=f"{n} characters make {segments} segments, budget {budget}")]
    return []


# --- wording -----------------------------------------------------------------------------

FORBIDDEN_WORDS: tuple[str, ...] = (
    # threats and pressure
    "警告", "最后通牒", "最后机会", "后果自负", "严重后果", "后果严重", "否则", "务必",
    "立即", "马上", "紧急通知", "惩罚", "后悔",
    # legal and collection language that has no place in a service notice
    "法律责任", "追究", "起诉", "诉讼", "强制执行", "催收", "催缴", "黑名单", "征信", "失信",
    "罚款", "罚息", "滞纳金", "违约", "欠款", "欠费", "拖欠", "曝光",
    # exaggerations
    "作废", "清零", "冻结", "血本无归", "损失惨重",
)


def check_forbidden_words(text: str) -> list[Violation]:
    return [Violation(rule="forbidden_word", detail=w) for w in FORBIDDEN_WORDS if w in text]


STILTED_PHRASES: dict[str, str] = {
    # phrase a careful reader stumbles on -> what a person would write instead
    "宜尽早": "建议尽早",
    "敬请知悉": "（不写）",
    "特此函告": "特此通知",
    "望周知": "（不写）",
    "请予配合": "请配合",
    "为盼": "（不写）",
}


def check_stilted(text: str) -> list[Violation]:
    return [Violation(rule="stilted_phrase", detail=p) for p in STILTED_PHRASES if p in text]


def check_glossary(text: str, *, short_term: bool, rescission: bool) -> list[Violation]:
    """中止/失效/复效 only for long-term lapses, 终止 only for what has ended (glossary.py)."""
    return [Violation(rule="glossary", detail=word)
            for word in misused_terms(text, short_term=short_term, rescission=rescission)]


_OPEN_BRACKETS, _CLOSE_BRACKETS = "（(", "）)"


def check_brackets(text: str) -> list[Violation]:
    """No bracket inside a bracket (a reader loses the thread), none left open."""
    depth = 0
    for ch in text:
        if ch in _OPEN_BRACKETS:
            depth += 1
            if depth > 1:
                return [Violation(rule="nested_brackets")]
        elif ch in _CLOSE_BRACKETS:
            depth -= 1
            if depth < 0:
                return [Violation(rule="unbalanced_brackets")]
    return [Violation(rule="unbalanced_brackets")] if depth else []


_AMOUNT = re.compile(r"¥[\d,.]*")
_GOOD_AMOUNT = re.compile(r"^¥\d{1,3}(?:,\d{3})*\.\d{2}$")


def check_amounts(text: str) -> list[Violation]:
    """One way to write money: ¥3,600.00 (thousands separated, two decimals)."""
    if any(not _GOOD_AMOUNT.match(a) for a in _AMOUNT.findall(text)):
        return [Violation(rule="amount_format")]
    return []


_REPEATED_PLACE = re.compile(r"([\u4e00-\u9fff]{2,4}[省市区县])\1")


def check_places(text: str) -> list[Violation]:
    """北京市北京市朝阳区: a municipality (or any place) written twice in a row."""
    return [Violation(rule="repeated_place")] if _REPEATED_PLACE.search(text) else []


# --- personal data -----------------------------------------------------------------------

_ID_NUMBER = re.compile(
    r"(?<![0-9A-Za-z])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
    r"\d{3}[\dXx](?![0-9A-Za-z])")
# 13 or more digits, maybe grouped by spaces or dashes: a card number, an old 15-digit ID,
# or anything long enough to hide one.
_LONG_NUMBER = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,}")


def check_pii(text: str, known_safe: Iterable[str] = ()) -> list[Violation]:
    """No full ID or bank card number in any text. `known_safe` (the policy number in
    channels that may show it) is removed first, so long policy numbers do not trip this."""
    for value in known_safe:
        if value:
            text = text.replace(value, " ")
    found = []
    if _ID_NUMBER.search(text):
        found.append(Violation(rule="pii_pattern", detail="resident ID number"))
    elif _LONG_NUMBER.search(text):
        found.append(Violation(rule="pii_pattern", detail="card or ID-length digit sequence"))
    return found


# --- speech ------------------------------------------------------------------------------

_UNSPEAKABLE = (
    (re.compile(r"https?://|www\.|\.(?:cn|com|net|org)\b", re.I), "URL"),
    (re.compile(r"[0-9０-９]"), "digits not read out"),
    (re.compile(r"[A-Za-zＡ-Ｚａ-ｚ]"), "Latin letters not read out"),
    (re.compile(r"[¥$%@#*/\\_~<>|{}\[\]=+&^【】]"), "symbol"),
)


def check_speakable(text: str, names: Iterable[str] = ()) -> list[Violation]:
    """What a zh-CN voice cannot say. `names` (people's names, which a voice says as they
    are written, e.g. a foreign name in Latin letters) are left out of the letter check."""
    for name in names:
        if name:
            text = text.replace(name, "")
    return [Violation(rule="not_speakable", detail=what)
            for pattern, what in _UNSPEAKABLE if pattern.search(text)]


# --- WeChat template fields --------------------------------------------------------------

_CJK = re.compile(r"[\u3400-\u9fff\U00020000-\U0003134f]")
_WECHAT_TYPES: dict[str, re.Pattern[str]] = {
    # The value types of WeChat category templates and their limits.
    "thing": re.compile(r"^.{1,20}$", re.S),
    "character_string": re.compile(r"^[\x21-\x7e]{1,32}$"),
    "amount": re.compile(r"^¥\d{1,10}(?:\.\d{1,2})?元?$"),  # no thousands separator
    "date": re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日$"),
    "time": re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日(?: \d{2}:\d{2})?$"),
    "phone_number": re.compile(r"^[\d+-]{1,17}$"),
    "phrase": re.compile(r"^[\u3400-\u9fff]{1,5}$"),
}


def check_wechat_fields(fields: Mapping[str, str]) -> list[Violation]:
    found = []
    for key, value in fields.items():
        kind = key.rstrip("0123456789")
        pattern = _WECHAT_TYPES.get(kind)
        if pattern is None:
            found.append(Violation(rule="wechat_field", detail=f"{key}: unknown value type"))
        elif not pattern.match(value):
            found.append(Violation(rule="wechat_field", detail=f"{key}: not a valid {kind}"))
    return found


# --- what must not be said ---------------------------------------------------------------

EMERGENCY_CONTACT_UNSAYABLE = (
    "保费", "缴费", "欠", "失效", "逾期", "扣款", "复效", "金额", "保单", "理赔", "¥",
)


def check_emergency_contact(text: str, private_values: Iterable[str]) -> list[Violation]:
    """Section 3: the emergency contact only hears a request to call; never the arrears,
    the amount or the product."""
    found = [Violation(rule="emergency_contact_disclosure", detail=w)
             for w in EMERGENCY_CONTACT_UNSAYABLE if w in text]
    if any(v and v in text for v in private_values):
        found.append(Violation(rule="emergency_contact_disclosure",
                               detail="policy, product or amount"))
    return found


def check_public_notice(text: str, private_values: Iterable[str]) -> list[Violation]:
    """The public notice names a masked policy and asks its holder to call: nothing more."""
    if any(v and v in text for v in private_values):
        return [Violation(rule="public_notice_disclosure", detail="product or amount")]
    return []


# --- WeCom -------------------------------------------------------------------------------

WECOM_TEXT_BYTES = 2048  # a WeCom text message's content, UTF-8


def wecom_text(title: str | None, body: str, link: str | None) -> str:
    """What a WeCom text message shows: the title, the text and the link, a blank line
    apart (a message too long for a textcard goes as this)."""
    return "\n\n".join(filter(None, (title, body, link)))


def check_wecom_length(title: str | None, body: str, link: str | None) -> list[Violation]:
    size = len(wecom_text(title, body, link).encode())
    if size > WECOM_TEXT_BYTES:
        return [Violation(rule="wecom_length", detail=f"{size} bytes > {WECOM_TEXT_BYTES}")]
    return []


def check_rendered(text: str) -> list[Violation]:
    """Catch values that did not render (an absent optional printed as None)."""
    leftovers = [t for t in ("None", "{{", "}}", "{%", "%}") if t in text]
    return [Violation(rule="unrendered_value", detail=t) for t in leftovers]


# --- required elements -------------------------------------------------------------------

ELEMENTS = frozenset({  # described in templates/manifest.json
    "policy", "product", "name", "holder", "status", "reason", "consequence", "next_step",
    "contact", "amount", "payment_link", "ask_reason", "debit_failure", "bind_card",
    "hardship_options", "plain_explanation", "reinstatement", "reenrolment", "loss",
    "materials", "refusal_risk",
})

_CORE = frozenset({"policy", "product", "name", "status", "reason", "consequence",
                   "next_step", "contact"})
_K = MessageKind
KIND_ELEMENTS: dict[MessageKind, frozenset[str]] = {
    _K.FIRST_REMINDER: _CORE | {"amount"},
    _K.SECOND_REMINDER: _CORE | {"amount", "ask_reason"},
    _K.LAPSE_NOTICE: _CORE | {"reinstatement"},
    _K.FOLLOW_UP: _CORE | {"reinstatement", "materials", "refusal_risk"},
    _K.REENROLMENT_OFFER: _CORE | {"reenrolment"},
    _K.RESCISSION_NOTICE: _CORE,
    _K.PAYMENT_CONFIRMATION: frozenset({"policy", "product", "name", "status", "amount",
                                       "next_step", "contact"}),
    _K.PAYMENT_AFTER_LAPSE: _CORE | {"amount", "reinstatement"},
    _K.REINSTATEMENT_APPROVED: _CORE - {"reason"},
    _K.REINSTATEMENT_REFUSED: _CORE,
    _K.EMERGENCY_CONTACT: frozenset({"holder", "next_step", "contact"}),
    _K.PUBLIC_NOTICE: frozenset({"policy", "name", "next_step", "contact"}),
    _K.BIND_CARD: frozenset({"policy", "product", "name", "debit_failure", "bind_card",
                             "next_step", "contact"}),
}
"""The floor for each kind (section 2 table and section 4); a template's manifest may add."""

STATUS_DATES: dict[MessageKind, tuple[str, ...]] = {
    _K.FIRST_REMINDER: ("due_date", "grace_ends_on"),
    _K.SECOND_REMINDER: ("grace_ends_on",),
    _K.LAPSE_NOTICE: ("lapses_on",),
    _K.FOLLOW_UP: ("lapses_on", "reinstatement_deadline"),
    _K.REENROLMENT_OFFER: ("lapses_on",),
    _K.RESCISSION_NOTICE: ("rescinded_on",),
    _K.PAYMENT_CONFIRMATION: ("paid_on",),
    _K.PAYMENT_AFTER_LAPSE: ("lapses_on",),
    _K.REINSTATEMENT_APPROVED: ("reinstated_on",),
    _K.REINSTATEMENT_REFUSED: ("lapses_on",),
}
"""The dates the status element must state, per kind."""

_REMINDERS = frozenset({_K.FIRST_REMINDER, _K.SECOND_REMINDER})
_LAPSE_WORDS = frozenset({_K.FIRST_REMINDER, _K.SECOND_REMINDER, _K.LAPSE_NOTICE, _K.FOLLOW_UP})
# MISSION 8: a failed debit's time, amount and reason are part of every message of the
# journey, the lapse notice and follow-ups included.
_DEBIT_KINDS = _LAPSE_WORDS
_PAYER_ONLY = frozenset({"amount", "payment_link", "ask_reason", "debit_failure", "bind_card",
                         "hardship_options"})


def required_elements(kind: MessageKind, channel: Channel, variant: Variant,
                      ctx: MessageContext, declared: Iterable[str] = ()) -> frozenset[str]:
    """What a message must carry: the kind's floor and what its template declares, then
    what the channel, the variant and the facts of the case add or take away."""
    need = set(KIND_ELEMENTS[kind]) | set(declared)
    long_or_spoken = channel in WRITTEN_LONG or channel is Channel.VOICE
    if kind is _K.FIRST_REMINDER and channel in (Channel.SMS, Channel.EMAIL, Channel.LETTER):
        need.add("payment_link")
    if kind is _K.LAPSE_NOTICE and long_or_spoken:
        need.add("loss")
    if ctx.short_term and "reinstatement" in need:
        need.discard("reinstatement")
        need.add("reenrolment")
    if kind in _DEBIT_KINDS and ctx.debit_failure is not None:
        need.add("debit_failure")
        # A new card pays the premium in grace, and the reinstatement after a lapse.
        if kind in _REMINDERS or not ctx.short_term:
            need.add("bind_card")
    if kind in _REMINDERS and ctx.hardship and not ctx.short_term and long_or_spoken:
        need.add("hardship_options")
    if variant is Variant.ELDERLY and kind in _LAPSE_WORDS and long_or_spoken:
        need.add("plain_explanation")
    if variant is Variant.GROUP_MEMBER:
        # The employer pays: the member hears what it means for them and whom to ask.
        need = (need - _PAYER_ONLY) | {"holder"}
    return frozenset(need)


def element_expectations(kind: MessageKind, channel: Channel, ctx: MessageContext,
                         view: Mapping[str, object]) -> dict[str, list[str]]:
    """Values each element's text must contain, from the same view the template saw."""
    debit = view["debit"]
    exp: dict[str, list[str]] = {
        "policy": [str(view["policy"])],
        "product": [str(view["product"])],
        "name": [str(view["name"])],
        "holder": [str(view["holder"])],
        "status": [str(view[f]) for f in STATUS_DATES.get(kind, ())],
        "amount": [str(view["paid_amount"] if kind in (_K.PAYMENT_CONFIRMATION,
                                                        _K.PAYMENT_AFTER_LAPSE)
                       else view["amount"])],
        "contact": [str(view["hotline"])],
        "payment_link": [str(view["pay_link"])],
        # An SMS may shorten the reason (MISSION 8); the other channels say it in full.
        "debit_failure": ([debit["date"], debit["amount"],  # type: ignore[index]
                           debit["reason_short" if channel is Channel.SMS else "reason"]]
                          if debit else []),
        "hardship_options": ["保单贷款", "减额交清", "转换"],
        "plain_explanation": ["重新投保"] if ctx.short_term else ["失效", "复效"],
        "reinstatement": ["复效"],
        "reenrolment": ["重新投保"],
        "materials": ["身份证", "健康告知"],
        "refusal_risk": ["健康"],
        # A group member's policy value is the employer's: the member hears about cover.
        "loss": ["保障"] if ctx.short_term or view["group_member"] else ["保障", "现金价值"],
    }
    if channel in WRITTEN_LONG and kind not in ALWAYS_MASKED_KINDS:
        exp["contact"] += [str(view["online"]), str(view["branch_address"]),
                           str(view["branch_hours"])]
    return exp


def check_elements(found: Mapping[str, str], required: Iterable[str],
                   expectations: Mapping[str, list[str]]) -> list[Violation]:
    violations = []
    for name in sorted(required):
        text = found.get(name)
        if text is None:
            violations.append(Violation(rule="missing_element", detail=name))
        elif not text.strip():
            violations.append(Violation(rule="empty_element", detail=name))
        elif any(value not in text for value in expectations.get(name, [])):
            violations.append(Violation(rule="element_value", detail=name))
    return violations
