"""Dates, amounts and numbers as Chinese customers read them, and as a voice reads them aloud."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")

_DIGITS = "零一二三四五六七八九"
# Digit strings (phone numbers, policy tails) are read digit by digit, 1 as 幺 so it
# cannot be heard as 7.
_DIGIT_STRING = "零幺二三四五六七八九"
_YEAR_DIGITS = "〇一二三四五六七八九"
_CENT = Decimal("0.01")


def format_date(day: date) -> str:
    """2026年12月26日"""
    return f"{day.year}年{day.month}月{day.day}日"


def format_datetime(moment: datetime) -> str:
    """2026年9月1日 10:05, in Asia/Shanghai."""
    local = moment.astimezone(TZ)
    return f"{format_date(local.date())} {local:%H:%M}"


def format_amount(amount: Decimal) -> str:
    """¥1,234.50"""
    return f"¥{amount.quantize(_CENT, ROUND_HALF_UP):,.2f}"


def format_postal_address(province: str, city: str, district: str, street: str,
                          postcode: str) -> str:
    """100022 北京市朝阳区建国路1号: a municipality (北京市 as province and city) once, and
    no part the next one already starts with."""
    parts: list[str] = []
    for part in (province, city, district, street):
        part = part.strip()
        if part and not (parts and (part == parts[-1] or parts[-1].endswith(part))):
            if parts and part.startswith(parts[-1]):
                parts[-1] = part  # 朝阳区 then 朝阳区建国路1号: keep the longer
            else:
                parts.append(part)
    return f"{postcode} {''.join(parts)}"


def format_rate(rate: Decimal) -> str:
    """0.055 -> 5.5%"""
    percent = (rate * 100).normalize()
    return f"{percent:f}%"


def speak_digits(text: str) -> str:
    """Read every digit of a string one by one; separators become a pause (，)."""
    out: list[str] = []
    for ch in text:
        if ch.isdigit():
            out.append(_DIGIT_STRING[int(ch)])
        elif out and out[-1] != "，":
            out.append("，")
    return "".join(out).strip("，")


def _speak_below_10000(n: int) -> str:
    out: list[str] = []
    pending_zero = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit == 0:
            pending_zero = bool(out)
            continue
        if pending_zero:
            out.append("零")
            pending_zero = False
        out.append(_DIGITS[digit] + unit)
    return "".join(out)


def speak_integer(n: int) -> str:
    """1234 -> 一千二百三十四; 10 -> 十; 20005 -> 两万零五; 1000001000 -> 十亿零一千."""
    if n < 0:
        raise ValueError("speak_integer reads non-negative numbers only")
    if n == 0:
        return "零"
    groups: list[int] = []  # groups of four digits, lowest first
    while n:
        groups.append(n % 10000)
        n //= 10000
    out: list[str] = []
    zero_between = False
    for i in range(len(groups) - 1, -1, -1):
        group = groups[i]
        if group == 0:
            zero_between = bool(out)
            continue
        if out and (zero_between or group < 1000):
            out.append("零")
        out.append(_speak_below_10000(group) + ("", "万", "亿", "万亿")[i])
        zero_between = False
    text = "".join(out)
    if text.startswith("一十"):
        text = text[1:]
    elif text.startswith("二") and text[1:2] in ("百", "千", "万", "亿"):
        text = "两" + text[1:]  # 两百, 两千, 两万: how a leading 2 is said before a unit
    return text


def speak_count(n: int) -> str:
    """A quantity before a measure word: 2 -> 两 (两年, 两名), otherwise as speak_integer."""
    return "两" if n == 2 else speak_integer(n)


def speak_amount(amount: Decimal) -> str:
    """¥1,234.50 -> 一千二百三十四元五角; 1234.05 -> 一千二百三十四元零五分."""
    cents = int(amount.quantize(_CENT, ROUND_HALF_UP) * 100)
    yuan, rest = divmod(cents, 100)
    jiao, fen = divmod(rest, 10)
    out = f"{speak_integer(yuan)}元" if yuan else ""
    if jiao:
        out += f"{_DIGITS[jiao]}角"
    if fen:
        out += f"{'零' if yuan and not jiao else ''}{_DIGITS[fen]}分"
    return out or "零元"


def speak_date(day: date) -> str:
    """2026-12-26 -> 二〇二六年十二月二十六日"""
    year = "".join(_YEAR_DIGITS[int(d)] for d in str(day.year))
    return f"{year}年{speak_integer(day.month)}月{speak_integer(day.day)}日"


def speak_datetime(moment: datetime) -> str:
    local = moment.astimezone(TZ)
    minutes = f"{'零' if local.minute < 10 else ''}{speak_integer(local.minute)}分" \
        if local.minute else ""
    return f"{speak_date(local.date())}{speak_integer(local.hour)}点{minutes}"


def speak_rate(rate: Decimal) -> str:
    """0.055 -> 百分之五点五"""
    percent = (rate * 100).normalize()
    whole, _, fraction = f"{percent:f}".partition(".")
    spoken = speak_integer(int(whole))
    if fraction:
        spoken += "点" + "".join(_DIGITS[int(d)] for d in fraction)
    return f"百分之{spoken}"
