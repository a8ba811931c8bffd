"""Masking of personal data: ID numbers, bank cards, phone numbers, policy numbers and names,
and the addresses a message went to (in evidence packs)."""

from __future__ import annotations

from domain.models import Channel, Gender

# Two-character surnames still in use (百家姓 and common modern ones). A name that starts
# with one of these and is longer than two characters is addressed by the compound.
COMPOUND_SURNAMES = frozenset({
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
    "宇文", "司徒", "司空", "夏侯", "轩辕", "令狐", "钟离", "闻人", "万俟", "澹台",
    "独孤", "端木", "南宫", "西门", "百里", "呼延", "申屠", "太史", "公冶", "赫连",
    "拓跋", "濮阳", "淳于", "单于", "东郭", "第五", "公羊", "仲孙", "鲜于", "闾丘",
    "亓官", "司寇", "子车", "颛孙", "壤驷", "公良", "漆雕", "乐正", "宰父", "谷梁",
    "梁丘", "左丘", "东门", "羊舌", "微生", "公西", "南门", "贺兰", "完颜", "爱新觉罗",
})
_COMPOUND_LENGTHS = sorted({len(c) for c in COMPOUND_SURNAMES}, reverse=True)
_HONORIFIC = {Gender.MALE: "先生", Gender.FEMALE: "女士"}
NEUTRAL_HONORIFIC = "先生/女士"
_MASK = "****"


def mask_id_number(id_number: str) -> str:
    """110105194912310021 -> **************0021: the last 4 only, as PIPL expects."""
    value = id_number.strip().upper()
    return "*" * max(len(value) - 4, 4) + value[-4:]


def mask_card(card_number: str) -> str:
    """6222021234567890123 -> ****0123 (also given only the stored last 4)."""
    digits = card_number.replace(" ", "").replace("-", "")
    return _MASK + digits[-4:]


def mask_phone(phone: str) -> str:
    """+8613800001234 -> 138****1234: the first three digits of the mobile and the last 4."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    national = digits[2:] if phone.startswith("+86") else digits
    return national[:3] + _MASK + national[-4:] if len(national) >= 8 else _MASK + digits[-4:]


def mask_policy_number(policy_number: str) -> str:
    """AT2026000012345 -> AT****2345: the prefix that names the series, and the tail."""
    tail = policy_number[-4:]
    head = policy_number[:2] if len(policy_number) > 8 else ""
    return f"{head}{_MASK}{tail}"


def surname(name: str) -> str:
    """张伟 -> 张; 欧阳娜娜 -> 欧阳; 阿依古丽·买买提 -> 阿依古丽; John Smith -> Smith."""
    name = name.strip()
    if "·" in name or "•" in name:
        # Uyghur, Tibetan and transliterated names: the first part is how one is addressed.
        return name.replace("•", "·").split("·")[0]
    if name.isascii():
        return name.split()[-1]
    for size in _COMPOUND_LENGTHS:  # the longest compound first
        if len(name) > size and name[:size] in COMPOUND_SURNAMES:
            return name[:size]
    return name[0]


def honorific(gender: Gender | None) -> str:
    return _HONORIFIC.get(gender, NEUTRAL_HONORIFIC)


def short_name(name: str, gender: Gender | None) -> str:
    """The form for short channels: 张先生, 欧阳女士, 司马先生/女士 when gender is unknown."""
    return surname(name) + honorific(gender)


def spoken_name(name: str, gender: Gender | None) -> str:
    """The form a voice says: 张先生; without a known gender, the neutral 张先生或女士."""
    return surname(name) + (_HONORIFIC[gender] if gender else "先生或女士")


def gender_from_id_number(id_number: str) -> Gender:
    """The 17th character of a resident ID number is odd for men, even for women."""
    return Gender.MALE if int(id_number[16]) % 2 else Gender.FEMALE


def full_name(name: str, gender: Gender | None) -> str:
    """The form for letters and e-mails: 张伟先生, 欧阳娜娜女士, or the bare name if unknown."""
    return name.strip() + (_HONORIFIC[gender] if gender else "")


def mask_address(channel: Channel, address: str) -> str:
    """What an evidence pack shows of the address a message went to: enough for the customer
    to recognise it, not enough to use it.

    +8613800000001 -> 138****0001; customer0001@example.com -> c****@example.com;
    oSandbox000001 -> oSan****0001; a postal address -> its postcode and city, then ****.
    """
    address = address.strip()
    if channel in (Channel.SMS, Channel.VOICE, Channel.AGENT_CALL):
        return mask_phone(address)
    if channel is Channel.EMAIL and "@" in address:
        local, domain = address.rsplit("@", 1)
        return f"{local[:1]}{_MASK}@{domain}"
    if channel is Channel.LETTER:
        postcode, _, rest = address.partition(" ")
        return f"{postcode} {rest[:6]}{_MASK}"
    return f"{address[:4]}{_MASK}{address[-4:]}" if len(address) > 8 else _MASK
