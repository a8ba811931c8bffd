"""Masking, Chinese formats and the text-level content rules (length, PII, speech)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from domain.content.formats import (
    format_amount,
    format_date,
    format_datetime,
    format_rate,
    speak_amount,
    speak_date,
    speak_digits,
    speak_integer,
    speak_rate,
)
from domain.content.masking import (
    gender_from_id_number,
    mask_card,
    mask_id_number,
    mask_policy_number,
    short_name,
    spoken_name,
    surname,
)
from domain.content.rules import (
    check_forbidden_words,
    check_pii,
    check_sms_length,
    check_speakable,
    check_wechat_fields,
    sms_length,
    sms_segments,
)
from domain.models import Gender

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(first17: str) -> str:
    """A valid 18-character ID number (with its ISO 7064 check character)."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return first17 + "10X98765432"[total % 11]


ID_X = resident_id("11010519491231002")  # ends in X
ID_MALE = resident_id("31011519800101001")
ID_FEMALE = resident_id("44030419951212002")


def test_sample_ids_are_valid_and_one_ends_in_x():
    assert ID_X.endswith("X")
    assert len(ID_MALE) == len(ID_FEMALE) == 18


# --- masking ---------------------------------------------------------------------------------

def test_id_number_keeps_only_the_last_four():
    masked = mask_id_number(ID_X)
    assert masked == "*" * 14 + ID_X[-4:]
    assert masked.endswith("X")
    assert ID_X[:14] not in masked
    assert mask_id_number(ID_X.lower()) == masked


def test_card_keeps_only_the_last_four():
    assert mask_card("6222 0212 3456 7890 123") == "****0123"
    assert mask_card("6222-0212-3456-7890") == "****7890"
    assert mask_card("7890") == "****7890"  # the stored last 4 of PaymentMethod


@pytest.mark.parametrize(("number", "masked"), [
    ("AT2026000012345", "AT****2345"),
    ("88001234567890123456", "88****3456"),
    ("P12345", "****2345"),  # short numbers show only the tail
])
def test_policy_number_mask(number, masked):
    assert mask_policy_number(number) == masked


@pytest.mark.parametrize(("name", "expected"), [
    ("张伟", "张"),
    ("欧阳娜娜", "欧阳"),
    ("司马懿", "司马"),
    ("诸葛亮", "诸葛"),
    ("上官婉儿", "上官"),
    ("司马", "司"),  # two characters: a single surname and a given name
    ("𠀾明", "𠀾"),  # a CJK Extension B surname (outside the BMP)
    ("司马𠀾", "司马"),
    ("阿依古丽·买买提", "阿依古丽"),
    ("John Smith", "Smith"),
])
def test_surname(name, expected):
    assert surname(name) == expected


def test_short_name_by_gender():
    assert short_name("张伟", Gender.MALE) == "张先生"
    assert short_name("欧阳娜娜", Gender.FEMALE) == "欧阳女士"
    assert short_name("司马𠀾", None) == "司马先生/女士"


def test_spoken_name_never_has_a_slash():
    assert spoken_name("司马𠀾", None) == "司马先生或女士"
    assert spoken_name("张伟", Gender.MALE) == "张先生"


def test_gender_from_id_number():
    assert gender_from_id_number(ID_MALE) is Gender.MALE
    assert gender_from_id_number(ID_FEMALE) is Gender.FEMALE


# --- formats ---------------------------------------------------------------------------------

def test_chinese_dates_and_amounts():
    assert format_date(date(2026, 12, 26)) == "2026年12月26日"
    assert format_date(date(2027, 1, 5)) == "2027年1月5日"
    assert format_amount(Decimal("1234.5")) == "¥1,234.50"
    assert format_amount(Decimal("0.05")) == "¥0.05"
    assert format_amount(Decimal("1000000")) == "¥1,000,000.00"
    assert format_rate(Decimal("0.055")) == "5.5%"
    utc = datetime(2026, 9, 1, 2, 5, tzinfo=ZoneInfo("UTC"))
    assert format_datetime(utc) == "2026年9月1日 10:05"  # shown in Asia/Shanghai


@pytest.mark.parametrize(("n", "spoken"), [
    (0, "零"), (10, "十"), (15, "十五"), (20, "二十"), (101, "一百零一"), (110, "一百一十"),
    (1001, "一千零一"), (1234, "一千二百三十四"), (2000, "两千"), (10010, "一万零一十"),
    (20005, "两万零五"), (101000, "十万一千"), (100010000, "一亿零一万"),
])
def test_speak_integer(n, spoken):
    assert speak_integer(n) == spoken


@pytest.mark.parametrize(("amount", "spoken"), [
    ("1234.50", "一千二百三十四元五角"),
    ("1234.05", "一千二百三十四元零五分"),
    ("1234.00", "一千二百三十四元"),
    ("0.50", "五角"),
    ("10.10", "十元一角"),
])
def test_speak_amount(amount, spoken):
    assert speak_amount(Decimal(amount)) == spoken


def test_speak_dates_rates_and_numbers():
    assert speak_date(date(2026, 12, 26)) == "二〇二六年十二月二十六日"
    assert speak_rate(Decimal("0.055")) == "百分之五点五"
    assert speak_digits("400-800-1234") == "四零零，八零零，幺二三四"


# --- SMS length ------------------------------------------------------------------------------

def test_sms_segments():
    assert sms_segments("字" * 70) == 1
    assert sms_segments("字" * 71) == 2
    assert sms_segments("字" * 134) == 2
    assert sms_segments("字" * 135) == 3


def test_rare_character_counts_twice():
    assert sms_length("𠀾") == 2
    assert sms_segments("字" * 69 + "𠀾") == 2


def test_sms_budget_and_maximum():
    assert check_sms_length("字" * 134, budget=2) == []
    assert check_sms_length("字" * 135, budget=2)[0].rule == "sms_over_budget"
    assert check_sms_length("字" * 501, budget=8)[0].rule == "sms_too_long"


# --- PII, wording, speech --------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    f"证件号{ID_X}。", f"证件号{ID_MALE}", "卡号6222021234567890123", "卡号 6222 0212 3456 7890",
    "旧证件号110105491231002",
])
def test_pii_patterns_are_found(text):
    assert check_pii(text)[0].rule == "pii_pattern"


def test_ordinary_numbers_are_not_pii():
    text = "2026年9月1日 10:05 ¥1,234,567.00 客服400-800-1234 尾号2345 AT****2345 12378"
    assert check_pii(text) == []


def test_a_long_policy_number_shown_in_full_is_allowed_where_it_may_be():
    text = "保单号：88001234567890123456"
    assert check_pii(text) != []
    assert check_pii(text, known_safe=["88001234567890123456"]) == []


def test_forbidden_words():
    found = {v.detail for v in check_forbidden_words("请立即缴费，否则后果自负")}
    assert found == {"否则", "立即", "后果自负"}
    assert check_forbidden_words("宽限期至2026年10月30日，期满未缴保障将中止") == []


def test_speakable():
    assert check_speakable("请拨打四零零，八零零，幺二三四") == []
    found = {v.detail for v in check_speakable("请访问https://a.cn 或拨打400，¥12")}
    assert found == {"URL", "digits not read out", "symbol", "Latin letters not read out"}
    assert {v.detail for v in check_speakable("安泰鑫享A款")} == {"Latin letters not read out"}
    # A person's name is said as it is written, even in Latin letters.
    assert check_speakable("尊敬的Smith先生", names=["Smith先生"]) == []


def test_wechat_field_types():
    good = {"thing1": "张先生", "character_string2": "AT****2345", "amount4": "¥1234.50",
            "date5": "2026年9月1日", "time7": "2026年9月1日 10:05",
            "phone_number12": "400-800-1234"}
    assert check_wechat_fields(good) == []
    bad = {"thing1": "字" * 21, "character_string2": "尾号2345", "amount4": "¥1,234.50",
           "keyword9": "x"}
    assert len(check_wechat_fields(bad)) == 4
