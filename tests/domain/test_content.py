"""Every template and variant, rendered for varied customers, against the content rules."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.messages_view import messages_preview
from commands.plan import shown_messages
from domain.calendar import BusinessCalendar
from domain.content import (
    ContentRuleError,
    DebitFailureDetail,
    InsurerContact,
    MessageContext,
    MessageKind,
    ReinstatementQuote,
    Role,
    TemplateSet,
    Variant,
    available_channels,
    build_context,
    check_message,
    default_templates,
    render_message,
    required_context,
)
from domain.content.render import TEMPLATE_DIR
from domain.content.rules import FORBIDDEN_WORDS, KIND_ELEMENTS, sms_length, wecom_text
from domain.models import (
    MILESTONES,
    Channel,
    Customer,
    DebitFailure,
    DebitFailureReason,
    EmergencyContact,
    Gender,
    PaymentMethod,
    PaymentMethodKind,
    Policy,
    Product,
    ProductKind,
    ProductRules,
    Segment,
    Trigger,
    TriggerKind,
)
from domain.plan import TZ, ChannelSlot, JourneyPlan, PlannedMilestone
from domain.planner import plan_journey
from domain.reinstatement import Due, reinstatement_quote
from infra.store import PolicyBundle
from tests.domain.test_masking import resident_id

DUE = date(2026, 9, 1)
GRACE_ENDS = date(2026, 10, 30)
LAPSES = date(2026, 10, 31)
REINSTATE_BY = date(2028, 10, 31)
ISSUED = date(2026, 9, 2)
BUDGET = 3  # SMS segments: a first reminder with its payment link needs three

LONG_TERM = Product(code="ATXX-WL", name="安泰鑫享终身寿险", kind=ProductKind.LONG_TERM,
                    rules=ProductRules(sms_segment_budget=BUDGET))
SHORT_TERM = Product(code="ATCX-PA", name="安泰畅行意外险", kind=ProductKind.SHORT_TERM,
                     rules=ProductRules(reinstatable=False, reinstatement_years=0,
                                        sms_segment_budget=BUDGET))


def customer(cid: str, name: str, gender: Gender | None, born: date, *, id17: str | None = None,
             email: str | None = None, organisation: bool = False) -> Customer:
    return Customer(customer_id=cid, name=name, gender=gender, birth_date=born,
                    id_number=resident_id(id17) if id17 else None, mobile="+8613800138000",
                    email=email, is_organisation=organisation,
                    emergency_contact=EmergencyContact(name="李红", phone="+8613900139000",
                                                       relation="配偶"))


ZHANG = customer("C1", "张伟", Gender.MALE, date(1980, 1, 1), id17="31011519800101001",
                 email="zhang@example.cn")
OUYANG = customer("C2", "欧阳娜娜", Gender.FEMALE, date(1990, 5, 5), id17="44030419900505002")
SIMA = customer("C3", "司马𠀾", None, date(1985, 3, 3))  # rare character, no gender, no e-mail
ZHUGE = customer("C4", "诸葛秀英", Gender.FEMALE, date(1950, 7, 7), id17="11010519500707002")
EMPLOYER = customer("G1", "星河科技有限公司", None, date(2001, 1, 1), organisation=True,
                    email="hr@xinghe.example.cn")
MEMBERS = [
    customer("M1", "王芳", Gender.FEMALE, date(1992, 2, 2), id17="11010519920202002"),
    customer("M2", "欧阳𫄸", None, date(1988, 8, 8)),  # CJK Extension C
    customer("M3", "阿依古丽·买买提", Gender.FEMALE, date(1995, 9, 9)),
]
FAILURE = DebitFailure(failed_at=datetime(2026, 9, 1, 10, 5, tzinfo=TZ),
                       amount=Decimal("1234.50"),
                       reason_code=DebitFailureReason.INSUFFICIENT_BALANCE)


def policy(holder: Customer, product: Product, *, members: list[Customer] | None = None,
           card: str | None = None) -> Policy:
    method = (PaymentMethod(kind=PaymentMethodKind.BANK_DEBIT, bank_name="招商银行",
                            card_last4=card) if card else
              PaymentMethod(kind=PaymentMethodKind.MANUAL))
    return Policy(policy_number="AT2026000012345", product_code=product.code,
                  policyholder_id=holder.customer_id,
                  member_ids=[m.customer_id for m in members or []],
                  effective_date=date(2020, 9, 1), premium=Decimal("1234.50"), due_date=DUE,
                  payment_method=method)


def plan_for(kind: TriggerKind, segments: list[Segment], product: Product) -> JourneyPlan:
    reinstatable = product.kind is ProductKind.LONG_TERM
    return JourneyPlan(
        policy_number="AT2026000012345", trigger=kind, segments=segments, due_date=DUE,
        grace_ends_on=GRACE_ENDS, lapses_on=LAPSES,
        lapses_at=datetime.combine(LAPSES, time(0), TZ),
        reinstatement_deadline=REINSTATE_BY if reinstatable else None, milestones=[])


@dataclass(frozen=True)
class Case:
    """One recipient in one situation, and the personal data that must never leak."""

    ctx: MessageContext
    person: Customer | EmergencyContact
    id_number: str | None


def make_case(holder: Customer, *, product: Product = LONG_TERM,
              trigger: TriggerKind = TriggerKind.PREMIUM_OVERDUE,
              segments: tuple[Segment, ...] = (Segment.STANDARD,),
              recipient: Customer | EmergencyContact | None = None, role: Role = Role.POLICYHOLDER,
              members: list[Customer] | None = None, insurer_fault: bool = False,
              quote: ReinstatementQuote | None = None,
              insurer: InsurerContact | None = None) -> Case:
    debit = trigger is TriggerKind.DEBIT_FAILED
    p = policy(holder, product, members=members, card="6789" if debit else None)
    t = Trigger(kind=trigger, policy_number=p.policy_number, due_date=DUE,
                amount_due=Decimal("1234.50"), debit_failure=FAILURE if debit else None,
                insurer_fault=insurer_fault)
    person = recipient or holder
    ctx = build_context(policy=p, product=product, trigger=t,
                        plan=plan_for(trigger, list(segments), product), recipient=person,
                        role=role, policyholder=holder, issued_on=ISSUED,
                        payment_token="Ab12Cd34", reinstatement_quote=quote, insurer=insurer)
    return Case(ctx, person, getattr(person, "id_number", None))


CASES: dict[str, Case] = {
    "standard": make_case(ZHANG),
    "compound_surname": make_case(OUYANG),
    "rare_character_no_email": make_case(SIMA),
    "elderly": make_case(ZHUGE, segments=(Segment.ELDERLY,)),
    "hardship": make_case(ZHANG, segments=(Segment.HARDSHIP,)),
    "debit_failed": make_case(ZHANG, trigger=TriggerKind.DEBIT_FAILED),
    "elderly_debit_hardship": make_case(ZHUGE, trigger=TriggerKind.DEBIT_FAILED,
                                        segments=(Segment.ELDERLY, Segment.HARDSHIP)),
    "short_term": make_case(OUYANG, product=SHORT_TERM, trigger=TriggerKind.RENEWAL_UNPAID),
    "short_term_elderly": make_case(ZHUGE, product=SHORT_TERM, trigger=TriggerKind.RENEWAL_UNPAID,
                                    segments=(Segment.ELDERLY,)),
    "short_term_debit_failed": make_case(OUYANG, product=SHORT_TERM,
                                         trigger=TriggerKind.DEBIT_FAILED),
    "short_term_group_employer": make_case(EMPLOYER, product=SHORT_TERM,
                                           trigger=TriggerKind.RENEWAL_UNPAID,
                                           segments=(Segment.GROUP,), role=Role.GROUP_EMPLOYER,
                                           members=MEMBERS),
    "short_term_group_member": make_case(EMPLOYER, product=SHORT_TERM,
                                         trigger=TriggerKind.RENEWAL_UNPAID,
                                         segments=(Segment.GROUP,), recipient=MEMBERS[0],
                                         role=Role.GROUP_MEMBER, members=MEMBERS),
    "insurer_fault_with_quote": make_case(
        ZHANG, insurer_fault=True,
        quote=ReinstatementQuote(back_premium=Decimal("1234.50"), interest=Decimal("0"),
                                 total=Decimal("1234.50"), deadline=date(2028, 12, 1),
                                 days=30)),
    "group_employer": make_case(EMPLOYER, segments=(Segment.GROUP,), role=Role.GROUP_EMPLOYER,
                                members=MEMBERS),
    **{f"group_member_{i}": make_case(EMPLOYER, segments=(Segment.GROUP,), recipient=m,
                                      role=Role.GROUP_MEMBER, members=MEMBERS)
       for i, m in enumerate(MEMBERS, start=1)},
    "emergency_contact": make_case(ZHANG, recipient=ZHANG.emergency_contact,
                                   role=Role.EMERGENCY_CONTACT),
    "emergency_contact_short_term": make_case(
        OUYANG, product=SHORT_TERM, trigger=TriggerKind.RENEWAL_UNPAID,
        recipient=OUYANG.emergency_contact, role=Role.EMERGENCY_CONTACT),
}


def for_kind(ctx: MessageContext, kind: MessageKind) -> MessageContext:
    """The facts a kind needs that a journey only knows later (payments, decisions)."""
    extra = {
        MessageKind.FOLLOW_UP: {"follow_up_month": 3},
        MessageKind.RESCISSION_NOTICE: {"rescission_reason": "fraud", "rescinded_on": ISSUED},
        MessageKind.PAYMENT_CONFIRMATION: {"paid_amount": Decimal("1234.50"),
                                           "paid_on": date(2026, 9, 10), "amount_due": None},
        MessageKind.PAYMENT_AFTER_LAPSE: {"paid_amount": Decimal("1234.50"),
                                          "paid_on": date(2026, 11, 3)},
        MessageKind.REINSTATEMENT_APPROVED: {"reinstated_on": date(2027, 1, 5)},
        MessageKind.BIND_CARD: {"debit_failure": ctx.debit_failure or DebitFailureDetail(
            failed_at=datetime(2026, 8, 30, 9, 15, tzinfo=TZ), amount=Decimal("1234.50"),
            reason_code=DebitFailureReason.CARD_EXPIRED, card_last4="6789")},
    }.get(kind, {})
    return ctx.model_copy(update=extra)


SPECS = sorted(default_templates().specs.values(), key=lambda s: s.id)
GROUP_VARIANTS = (Variant.GROUP_EMPLOYER, Variant.GROUP_MEMBER)
RENDERED: set[tuple[str, Variant]] = set()


def _reader_of(kind: MessageKind, case: Case) -> bool:
    """Emergency contacts only ever get the emergency-contact message, and only they do."""
    is_contact = case.ctx.recipient.role is Role.EMERGENCY_CONTACT
    return is_contact == (kind is MessageKind.EMERGENCY_CONTACT)


@pytest.mark.parametrize(("spec", "case_name"), [
    pytest.param(spec, name, id=f"{spec.id}-{name}")
    for spec in SPECS for name, case in CASES.items() if _reader_of(spec.kind, case)])
def test_every_template_for_every_customer(spec, case_name):
    case = CASES[case_name]
    ctx = for_kind(case.ctx, spec.kind)
    try:
        message, violations = check_message(spec.kind, spec.channel, ctx)
    except ContentRuleError as err:
        # Only the refusals by design: no member-facing or short-term wording for this
        # kind, WeCom only for a group's employer and members, and no re-enrolment offer
        # for a long-term product (nor a follow-up for a short-term one).
        if err.rule == "not_for_product":
            assert (spec.kind is MessageKind.REENROLMENT_OFFER) is not ctx.short_term
            return
        assert err.rule == "no_variant", err
        assert ctx.variant in (Variant.GROUP_MEMBER, Variant.SHORT_TERM) or (
            spec.channel is Channel.WECOM and ctx.variant not in GROUP_VARIANTS)
        assert ctx.variant not in spec.variants
        return
    assert violations == [], f"{spec.id} [{case_name}]: {violations}"
    RENDERED.add((spec.id, message.variant))
    assert message.template_id == spec.id and message.template_version == spec.version
    text = "\n".join(filter(None, (message.subject, message.body, message.link)))
    _assert_masked(spec.channel, spec.kind, case, ctx, text)
    _assert_wording(text)
    if spec.channel is Channel.SMS:
        assert message.body.startswith(ctx.insurer.sms_signature)
        assert sms_length(message.body) <= 500
        assert message.segments is not None and message.segments <= BUDGET
    if spec.channel is Channel.VOICE:
        assert not re.search(r"[0-9]|https?:|www\.|¥|%", text)
    if spec.channel is Channel.WECHAT:
        assert message.fields and all(len(v) <= 32 for v in message.fields.values())
        assert message.link
    if spec.channel is Channel.WECOM:
        assert message.subject and message.link
        assert len(wecom_text(message.subject, message.body, message.link).encode()) <= 2048
    if ctx.short_term:
        assert "复效" not in text


def _assert_masked(channel: Channel, kind: MessageKind, case: Case, ctx: MessageContext,
                   text: str) -> None:
    if case.id_number:
        assert case.id_number not in text and case.id_number[:14] not in text
    assert "6222" not in text  # no card number: only its last four exist in our records
    masked = channel in (Channel.SMS, Channel.WECHAT, Channel.WECOM, Channel.VOICE) or kind in (
        MessageKind.EMERGENCY_CONTACT, MessageKind.PUBLIC_NOTICE)
    if masked:
        assert ctx.policy_number not in text
        for party in (ctx.recipient, ctx.policyholder):
            if not party.is_organisation:
                assert party.name not in text
    elif KIND_ELEMENTS[kind] >= {"policy"}:
        assert ctx.policy_number in text


def _assert_wording(text: str) -> None:
    assert not [w for w in FORBIDDEN_WORDS if w in text]
    assert "None" not in text and "{{" not in text
    assert "\ue000" not in text and "\ue002" not in text  # no element markers left


def test_every_declared_variant_was_rendered():
    """Runs after the matrix (pytest keeps file order): no variant is declared but untried."""
    declared = {(s.id, v) for s in SPECS for v in s.variants}
    assert declared - RENDERED == set()


# --- what specific messages must say -----------------------------------------------------------

def render(case: str, kind: MessageKind | str, channel: Channel):
    return render_message(kind, channel, for_kind(CASES[case].ctx, MessageKind(str(kind))))


def test_first_reminder_sms_says_what_section_2_asks():
    body = render("standard", MessageKind.FIRST_REMINDER, Channel.SMS).body
    for piece in ("【安泰人寿】", "张先生", "尾号2345", "安泰鑫享终身寿险", "¥1,234.50",
                  "2026年9月1日", "2026年10月30日", "保障将中止",
                  "https://pay.example-insurer.cn/p/Ab12Cd34 ", "400-800-1234"):
        assert piece in body


def test_failed_debit_says_when_how_much_why_and_how_to_bind_a_card():
    for channel in (Channel.SMS, Channel.EMAIL, Channel.LETTER, Channel.AGENT_CALL):
        body = render("debit_failed", MessageKind.FIRST_REMINDER, channel).body
        assert "2026年9月1日" in body and "¥1,234.50" in body and "余额不足" in body
        assert "换卡" in body or "绑定新卡" in body
    letter = render("debit_failed", MessageKind.FIRST_REMINDER, Channel.LETTER).body
    assert "10:05" in letter and "尾号6789" in letter
    voice = render("debit_failed", MessageKind.FIRST_REMINDER, Channel.VOICE).body
    assert "二〇二六年九月一日十点零五分" in voice and "一千二百三十四元五角" in voice


def test_elderly_wording_explains_lapse_and_reinstatement_in_everyday_words():
    for kind in (MessageKind.FIRST_REMINDER, MessageKind.LAPSE_NOTICE, MessageKind.FOLLOW_UP):
        for channel in (Channel.LETTER, Channel.VOICE):
            message = render("elderly", kind, channel)
            assert message.variant is Variant.ELDERLY
            assert "暂时不起作用" in message.body and "重新起作用" in message.body
    assert "诸葛女士" in render("elderly", MessageKind.FIRST_REMINDER, Channel.SMS).body
    assert "上门服务" in render("elderly", MessageKind.SECOND_REMINDER, Channel.AGENT_CALL).body


def test_hardship_offers_the_alternatives():
    for channel in (Channel.VOICE, Channel.AGENT_CALL, Channel.LETTER):
        body = render("hardship", MessageKind.SECOND_REMINDER, channel).body
        assert all(option in body for option in ("保单贷款", "减额交清", "转换"))


def test_elderly_debit_hardship_keeps_every_fact():
    letter = render("elderly_debit_hardship", MessageKind.SECOND_REMINDER, Channel.LETTER)
    assert letter.variant is Variant.ELDERLY
    assert "余额不足" in letter.body and "保单贷款" in letter.body and "重新起作用" in letter.body


def test_lapse_notice_letter_explains_reinstatement_and_what_is_lost():
    letter = render("standard", MessageKind.LAPSE_NOTICE, Channel.LETTER)
    assert letter.subject == "保险合同效力中止（失效）通知书"
    for piece in ("2026年10月31日零时起失效", "2年内", "2028年10月31日", "利息", "5.5%",
                  "健康告知", "现金价值", "AT2026000012345"):
        assert piece in letter.body


def test_insurer_fault_waives_interest_and_shows_the_quote():
    body = render("insurer_fault_with_quote", MessageKind.LAPSE_NOTICE, Channel.EMAIL).body
    assert "免收利息" in body and "合计¥1,234.50" in body


def test_short_term_offers_re_enrolment_never_reinstatement():
    for kind in (MessageKind.LAPSE_NOTICE, MessageKind.REENROLMENT_OFFER):
        for channel in (Channel.SMS, Channel.EMAIL, Channel.VOICE):
            body = render("short_term", kind, channel).body
            assert "重新投保" in body and "复效" not in body
    for kind in (MessageKind.FOLLOW_UP, MessageKind.REINSTATEMENT_APPROVED):
        with pytest.raises(ContentRuleError) as err:
            render("short_term", kind, Channel.SMS)
        assert err.value.rule == "not_for_product"
    with pytest.raises(ContentRuleError) as err:
        render("standard", MessageKind.REENROLMENT_OFFER, Channel.SMS)
    assert err.value.rule == "not_for_product"


def test_a_group_of_three_each_get_their_own_message():
    employer = render("group_employer", MessageKind.FIRST_REMINDER, Channel.EMAIL).body
    assert "尊敬的星河科技有限公司" in employer and "共3人" in employer and "¥1,234.50" in employer
    greetings = [render(f"group_member_{i}", MessageKind.FIRST_REMINDER, Channel.SMS).body
                 for i in (1, 2, 3)]
    assert ["王女士" in greetings[0], "欧阳先生/女士" in greetings[1],
            "阿依古丽女士" in greetings[2]] == [True, True, True]
    for body in greetings:
        assert "星河科技有限公司" in body and "¥" not in body and "由单位缴纳" in body


def test_emergency_contact_only_hears_a_request_to_call():
    for channel in (Channel.SMS, Channel.VOICE):
        body = render("emergency_contact", MessageKind.EMERGENCY_CONTACT, channel).body
        assert "张先生" in body and "紧急联系人" in body
        for secret in ("安泰鑫享", "2345", "¥", "元", "保费", "保单", "失效", "欠"):
            assert secret not in body


def test_public_notice_is_masked():
    line = render("standard", MessageKind.PUBLIC_NOTICE, Channel.LETTER).body
    assert "AT****2345" in line and "张先生" in line and "张伟" not in line
    assert "安泰鑫享" not in line and "¥" not in line and "\n" not in line


def test_rescission_is_calm_and_formal():
    letter = render("standard", MessageKind.RESCISSION_NOTICE, Channel.LETTER)
    assert letter.subject == "解除保险合同通知书"
    assert "第十六条" in letter.body and "不退还保险费" in letter.body and "12378" in letter.body


def test_payment_confirmation_for_full_and_partial_payment():
    full = render("standard", MessageKind.PAYMENT_CONFIRMATION, Channel.SMS).body
    assert "保单继续有效" in full
    partial = for_kind(CASES["standard"].ctx, MessageKind.PAYMENT_CONFIRMATION).model_copy(
        update={"paid_amount": Decimal("1000.00"), "amount_due": Decimal("234.50")})
    body = render_message("payment_confirmation", Channel.SMS, partial).body
    assert "¥1,000.00" in body and "尚余¥234.50" in body


def test_payment_after_lapse_explains_it_does_not_restore_cover():
    body = render("standard", MessageKind.PAYMENT_AFTER_LAPSE, Channel.LETTER).body
    assert "不能直接恢复保障" in body and "复效" in body


def test_reinstatement_decisions():
    approved = render("standard", MessageKind.REINSTATEMENT_APPROVED, Channel.SMS).body
    assert "2027年1月5日起恢复效力" in approved
    refused = render("standard", MessageKind.REINSTATEMENT_REFUSED, Channel.EMAIL).body
    assert "未能通过" in refused and "退回" in refused


def test_wechat_is_only_for_important_notices():
    assert Channel.WECHAT in available_channels(MessageKind.FIRST_REMINDER)
    assert Channel.WECHAT in available_channels("lapse_notice")
    for kind in (MessageKind.SECOND_REMINDER, MessageKind.FOLLOW_UP,
                 MessageKind.PAYMENT_CONFIRMATION):
        assert Channel.WECHAT not in available_channels(kind)
    with pytest.raises(ContentRuleError) as err:
        render("standard", MessageKind.FOLLOW_UP, Channel.WECHAT)
    assert err.value.rule == "no_template"


def test_wecom_speaks_to_group_members_and_the_employer_only():
    for kind in MILESTONES:
        assert Channel.WECOM in available_channels(kind)
    member = render("group_member_1", MessageKind.FIRST_REMINDER, Channel.WECOM)
    employer = render("group_employer", MessageKind.FIRST_REMINDER, Channel.WECOM)
    # The member hears about their own cover and whom to ask, never the group's amount.
    assert "单位" in member.body and EMPLOYER.name in member.body
    assert CASES["group_employer"].ctx.amount_due is not None
    assert "¥" not in member.body and member.link == InsurerContact().online_service_url
    assert "¥" in employer.body and employer.link.startswith(InsurerContact().payment_link_base)
    with pytest.raises(ContentRuleError) as err:
        render("standard", MessageKind.FIRST_REMINDER, Channel.WECOM)
    assert err.value.rule == "no_variant"


def test_insurer_contact_is_configuration():
    insurer = InsurerContact(short_name="测试人寿", hotline="400-123-4567",
                             sms_signature="【测试人寿】")
    ctx = make_case(ZHANG, insurer=insurer).ctx
    body = render_message("first_reminder", Channel.SMS, ctx).body
    assert body.startswith("【测试人寿】") and "400-123-4567" in body


# --- rules are enforced, and errors carry no personal data -------------------------------------

def test_missing_context_is_named():
    ctx = CASES["standard"].ctx.model_copy(update={"grace_ends_on": None})
    with pytest.raises(ContentRuleError) as err:
        render_message("first_reminder", Channel.SMS, ctx)
    assert err.value.rule == "missing_context" and "grace_ends_on" in str(err.value)


def test_over_budget_sms_is_refused_without_personal_data():
    ctx = CASES["standard"].ctx.model_copy(update={"sms_segment_budget": 2})
    with pytest.raises(ContentRuleError) as err:
        render_message("first_reminder", Channel.SMS, ctx)
    assert err.value.rule == "sms_over_budget" and err.value.template_id == "first_reminder.sms"
    assert "张" not in str(err.value) and "AT2026" not in str(err.value)


def test_forbidden_or_pii_data_is_caught_whatever_its_source():
    ctx = CASES["standard"].ctx
    loud = ctx.model_copy(update={"product_name": "立即生效终身寿险"})
    assert render_rules(loud) == {"forbidden_word"}
    leaky = ctx.model_copy(update={"product_name": "寿险6222021234567890"})
    assert "pii_pattern" in render_rules(leaky)


def render_rules(ctx: MessageContext) -> set[str]:
    with pytest.raises(ContentRuleError) as err:
        render_message("first_reminder", Channel.EMAIL, ctx)
    return {v.rule for v in err.value.violations}


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, copy)
    return copy


def test_a_template_missing_a_required_element_fails(templates_copy):
    sms = templates_copy / "payment_confirmation.sms.j2"
    sms.write_text(sms.read_text(encoding="utf-8").replace(
        '{% call el("product") %}{{ product }}{% endcall %}', "{{ product }}"), encoding="utf-8")
    ctx = for_kind(CASES["standard"].ctx, MessageKind.PAYMENT_CONFIRMATION)
    _, violations = check_message("payment_confirmation", Channel.SMS, ctx,
                                  TemplateSet(templates_copy))
    assert [(v.rule, v.detail) for v in violations] == [("missing_element", "product")]


def test_a_marked_element_without_its_value_fails(templates_copy):
    sms = templates_copy / "first_reminder.sms.j2"
    sms.write_text(sms.read_text(encoding="utf-8").replace(
        "宽限期至{{ grace_ends_on }}", "宽限期至月底"), encoding="utf-8")
    _, violations = check_message("first_reminder", Channel.SMS, CASES["standard"].ctx,
                                  TemplateSet(templates_copy))
    assert [(v.rule, v.detail) for v in violations] == [("element_value", "status")]


def test_a_manifest_that_lowers_the_floor_fails_to_load(templates_copy):
    manifest = templates_copy / "manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["templates"][0]["required"].remove("contact")
    manifest.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="required lacks"):
        TemplateSet(templates_copy)


def test_a_template_file_outside_the_manifest_fails_to_load(templates_copy):
    (templates_copy / "first_reminder.fax.j2").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="not in the manifest"):
        TemplateSet(templates_copy)


def test_manifest_covers_every_milestone_kind():
    kinds = {s.kind for s in SPECS}
    assert set(MILESTONES) <= kinds
    assert set(MessageKind) == kinds


# --- context -----------------------------------------------------------------------------------

def test_build_context_from_domain_records():
    ctx = CASES["debit_failed"].ctx
    assert ctx.variant is Variant.DEBIT_FAILED
    assert ctx.debit_failure and ctx.debit_failure.card_last4 == "6789"
    assert ctx.grace_ends_on == GRACE_ENDS and ctx.reinstatement_deadline == REINSTATE_BY
    assert CASES["group_employer"].ctx.group_size == 3
    assert CASES["elderly_debit_hardship"].ctx.variant is Variant.ELDERLY
    assert CASES["elderly_debit_hardship"].ctx.hardship
    assert CASES["short_term"].ctx.variant is Variant.SHORT_TERM


def test_gender_comes_from_the_id_number_when_not_recorded():
    no_gender = ZHANG.model_copy(update={"gender": None})
    ctx = make_case(no_gender).ctx
    assert ctx.recipient.gender is Gender.MALE


# --- preview ---------------------------------------------------------------------------------

def test_messages_preview_shows_every_message_of_the_plan():
    def milestone(key: str, kind: MessageKind, day: date, channels: list[Channel],
                  index: int | None = None) -> PlannedMilestone:
        at = datetime.combine(day, time(10), TZ)
        return PlannedMilestone(key=key, kind=kind, index=index, day=day, at=at,
                                slots=[ChannelSlot(channel=c, at=at) for c in channels])

    plan = plan_for(TriggerKind.PREMIUM_OVERDUE, [Segment.STANDARD], LONG_TERM).model_copy(
        update={"milestones": [
            milestone("first_reminder", MessageKind.FIRST_REMINDER, ISSUED,
                      [Channel.SMS, Channel.WECHAT]),
            milestone("second_reminder", MessageKind.SECOND_REMINDER, date(2026, 10, 15),
                      [Channel.VOICE]),
            milestone("lapse_notice", MessageKind.LAPSE_NOTICE, date(2026, 11, 2),
                      [Channel.EMAIL, Channel.SMS, Channel.WECHAT]),
            milestone("follow_up_3", MessageKind.FOLLOW_UP, date(2027, 2, 1),
                      [Channel.SMS, Channel.EMAIL], index=3),
        ]})
    bundle = PolicyBundle(policy=policy(ZHANG, LONG_TERM), product=LONG_TERM,
                          policyholder=ZHANG, insured=[])
    trigger = Trigger(kind=TriggerKind.PREMIUM_OVERDUE, policy_number="AT2026000012345",
                      due_date=DUE, amount_due=Decimal("1234.50"))
    text = messages_preview(plan, shown_messages(bundle, plan, trigger), BUDGET)
    for key in ("first_reminder", "second_reminder", "lapse_notice", "follow_up_3",
                "emergency_contact"):
        assert f"== {key}" in text
    for template in ("first_reminder.sms v2", "first_reminder.wechat v2",
                     "second_reminder.voice v2", "lapse_notice.email v2",
                     "follow_up.email v2", "emergency_contact.voice v2"):
        assert template in text
    assert "!!" not in text
    assert "2027年2月1日" in text  # the follow-up letter is dated on its own day
    # After the lapse the journey quotes the reinstatement amount: so does the preview.
    # ¥1,234.50 x 5.5% x 153 days (2026-09-01 to 2027-02-01) / 365 = ¥28.46.
    assert "截至2027年2月1日，复效需补交保费¥1,234.50、利息¥28.46" in text


# --- the content check of CI: every template for a generated spread of policies -------------

SURNAMES = ["张", "王", "欧阳", "司马", "诸葛", "上官", "爱新觉罗", "龘"]
GIVEN = ["伟", "娜娜", "秀英", "𠀾", "𫄸", "建国", "堃"]
PRODUCT_NAMES = ["安泰终身寿险", "安泰鑫享2026版终身寿险(A款)", "安泰重大疾病保险（2026版）",
                 "安泰综合意外险（一年期）", "安泰e生保百万医疗险", "安泰3号团体意外险"]


@st.composite
def journeys(draw):
    kind = draw(st.sampled_from([ProductKind.LONG_TERM, ProductKind.SHORT_TERM]))
    short = kind is ProductKind.SHORT_TERM
    product = Product(code="GEN", name=draw(st.sampled_from(PRODUCT_NAMES)), kind=kind,
                      rules=ProductRules(grace_days=draw(st.sampled_from([30, 60, 90])),
                                         reinstatable=not short,
                                         reinstatement_years=0 if short else 2))
    trigger_kind = draw(st.sampled_from(
        [TriggerKind.RENEWAL_UNPAID if short else TriggerKind.PREMIUM_OVERDUE,
         TriggerKind.DEBIT_FAILED, TriggerKind.RESCISSION]))
    due = draw(st.dates(date(2026, 1, 1), date(2027, 12, 31)))
    amount = draw(st.decimals(Decimal("0.01"), Decimal("999999.99"), places=2))
    if draw(st.booleans()):
        holder = customer("H", draw(st.sampled_from(SURNAMES)) + draw(st.sampled_from(GIVEN)),
                          draw(st.sampled_from([Gender.MALE, Gender.FEMALE, None])),
                          draw(st.dates(date(1940, 1, 1), date(2000, 12, 31))))
        members = []
        role = draw(st.sampled_from([Role.POLICYHOLDER, Role.EMERGENCY_CONTACT]))
    else:
        holder = EMPLOYER.model_copy(update={"short_name": draw(st.sampled_from(
            [None, "星河科技"]))})
        members = MEMBERS
        role = draw(st.sampled_from([Role.GROUP_EMPLOYER, Role.GROUP_MEMBER]))
    segments = draw(st.sets(st.sampled_from([Segment.ELDERLY, Segment.HARDSHIP]))) or {
        Segment.STANDARD}
    p = policy(holder, product, members=members, card="6789").model_copy(
        update={"due_date": due, "effective_date": date(2020, 1, 1)})
    debit = DebitFailure(failed_at=datetime.combine(due, time(10, 5), TZ), amount=amount,
                         reason_code=draw(st.sampled_from(list(DebitFailureReason))))
    trigger = Trigger(kind=trigger_kind, policy_number=p.policy_number, due_date=due,
                      amount_due=Decimal("0") if trigger_kind is TriggerKind.RESCISSION
                      else amount,
                      debit_failure=debit if trigger_kind is TriggerKind.DEBIT_FAILED else None,
                      rescission_reason=draw(st.sampled_from(["fraud", "non_disclosure"]))
                      if trigger_kind is TriggerKind.RESCISSION else None)
    plan = plan_journey(trigger, product, segments, BusinessCalendar())
    recipient = {Role.GROUP_MEMBER: members[0] if members else holder,
                 Role.EMERGENCY_CONTACT: holder.emergency_contact}.get(role, holder)
    issued = plan.milestones[-1].day
    quote = (reinstatement_quote([Due(due_date=due, amount=amount)],
                                 rate=product.rules.reinstatement_interest_rate, on=issued,
                                 insurer_fault=False, deadline=plan.reinstatement_deadline)
             if plan.reinstatement_deadline else None)
    ctx = build_context(policy=p, product=product, trigger=trigger, plan=plan,
                        recipient=recipient, role=role, policyholder=holder, issued_on=issued,
                        payment_token="abcdefgh23456789", reinstatement_quote=quote)
    return ctx.model_copy(update={
        "paid_amount": amount, "paid_on": issued, "reinstated_on": issued,
        "rescinded_on": issued if trigger_kind is TriggerKind.RESCISSION else None,
        "follow_up_month": 3})


@settings(max_examples=80, deadline=None, derandomize=True)
@given(ctx=journeys())
def test_every_template_keeps_every_rule_for_generated_journeys(ctx):
    for spec in SPECS:
        if not _reader_of(spec.kind, Case(ctx, None, None)):
            continue
        if (spec.kind is MessageKind.RESCISSION_NOTICE) != (ctx.trigger is
                                                           TriggerKind.RESCISSION):
            continue  # a rescission journey sends its notice and nothing else
        if required_context(spec.kind, ctx):
            continue  # not sent in this situation (a bind-card message without a debit)
        try:
            _, violations = check_message(spec.kind, spec.channel, ctx)
        except ContentRuleError as err:
            assert err.rule in ("not_for_product", "no_variant"), err
            continue
        assert violations == [], f"{spec.id} [{ctx.variant}]: {violations}"
