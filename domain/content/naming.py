"""A product's names per channel: in full on paper, short in SMS and WeChat, spoken on a call."""

from __future__ import annotations

import re

from domain.content.formats import speak_integer
from domain.models import Product

SHORT_NAME_MAX = 12  # what every short template is checked to fit (see preflight)

_BRACKETED = re.compile(r"[（(【\[][^）)】\]]*[）)】\]]")
_VERSION = re.compile(r"\d{2,4}年?版")
_SPACE = re.compile(r"\s+")
_SPOKEN = re.compile(r"^[\u3007\u3400-\u9fff\uf900-\ufaff，、·]+$")

# How a zh-CN voice should say a Latin letter: the common Chinese readings of the
# alphabet, so "A款" is said as a listener expects and no letter is spelled in English.
LETTER_READINGS = {
    "A": "诶", "B": "比", "C": "西", "D": "迪", "E": "伊", "F": "艾弗", "G": "吉",
    "H": "艾尺", "I": "艾", "J": "杰", "K": "开", "L": "艾勒", "M": "艾姆", "N": "艾恩",
    "O": "欧", "P": "批", "Q": "丘", "R": "阿尔", "S": "艾斯", "T": "提", "U": "优",
    "V": "维", "W": "达布流", "X": "艾克斯", "Y": "歪", "Z": "贼德",
}
_YEAR_DIGITS = "〇一二三四五六七八九"
_DIGITS = "零一二三四五六七八九"
_SYMBOLS = {"+": "加", "&": "和", "＋": "加", "＆": "和"}
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[A-Za-z]|.", re.S)


def derive_short_name(name: str) -> str:
    """安泰鑫享2026版终身寿险(A款) -> 安泰鑫享终身寿险: without brackets, versions or spaces.
    May still be too long for short channels: preflight then asks for a short_name."""
    short = _SPACE.sub("", _VERSION.sub("", _BRACKETED.sub("", name)))
    return short if len(short) >= 2 else _SPACE.sub("", name)


def _speak_number(token: str, following: str) -> str:
    whole, _, fraction = token.partition(".")
    if following in ("年", "版") and len(whole) == 4 and not fraction:
        return "".join(_YEAR_DIGITS[int(d)] for d in whole)  # 2026版: 二〇二六版
    if len(whole) > 8:
        spoken = "".join(_DIGITS[int(d)] for d in whole)
    else:
        spoken = speak_integer(int(whole))
    return spoken + ("点" + "".join(_DIGITS[int(d)] for d in fraction) if fraction else "")


def spoken_form(text: str) -> str:
    """Text a zh-CN voice can say: digits and Latin letters written out, brackets and
    other symbols dropped (their content kept). 2026版(A款) -> 二〇二六版诶款."""
    tokens = _TOKEN.findall(text)
    out = []
    for i, token in enumerate(tokens):
        following = tokens[i + 1][:1] if i + 1 < len(tokens) else ""
        if token[0].isdigit():
            out.append(_speak_number(token, following))
        elif token.isascii() and token.isalpha():
            out.append(LETTER_READINGS[token.upper()])
        elif token in _SYMBOLS:
            out.append(_SYMBOLS[token])
        elif _SPOKEN.match(token):
            out.append(token)
    return "".join(out)


def is_speakable(text: str) -> bool:
    return bool(_SPOKEN.match(text))


def short_product_name(product: Product) -> str:
    return product.short_name or derive_short_name(product.name)


def spoken_product_name(product: Product) -> str:
    return product.spoken_name or spoken_form(product.name)
