"""The data check before the first message of a journey (the article: 触发通知前，运营部门
需核对客户信息…确保数据准确无误，避免误通知).

Pure rules over plain facts. A journey whose facts break any rule is held: nothing is
sent, operations get a task naming the rules (never the values) and answer with
`data_verified`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum

from domain.models import Channel, PolicyStatus, TriggerKind

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


class DataRule(StrEnum):
    """Each rule of the check, by the name the task and `status` show."""

    ID_NUMBER_CHECKSUM = "id_number_checksum"  # the 18th character of the ID number
    ID_NUMBER_BIRTH_DATE = "id_number_birth_date"  # digits 7-14 against the birth date
    NAME_MISSING = "name_missing"
    NO_USABLE_CONTACT = "no_usable_contact"  # none of the first message's channels works
    POLICY_STATUS = "policy_status"  # the policy is not in force, yet a reminder would go
    RECENT_PAYMENT = "recent_payment"  # paid in the last days: the bank file may lag
    AMOUNT_MISMATCH = "amount_mismatch"  # the amount due is not what the dues leave open


@dataclass(frozen=True)
class DataFacts:
    trigger: TriggerKind
    holder_name: str
    is_organisation: bool
    id_number: str | None
    birth_date: date
    policy_status: PolicyStatus
    amount_due: Decimal
    open_dues: Decimal | None  # None: the ledger has no dues for this policy
    paid_recently: Decimal  # paid within RECENT_PAYMENT_DAYS before the journey starts
    first_channels: list[Channel] = field(default_factory=list)
    reachable_channels: set[Channel] = field(default_factory=set)


RECENT_PAYMENT_DAYS = 3


def id_number_checksum_ok(id_number: str) -> bool:
    value = id_number.upper()
    if len(value) != 18 or not value[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17]


def id_number_birth_date(id_number: str) -> date | None:
    try:
        return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return None


def check_data(facts: DataFacts) -> list[DataRule]:
    """The rules the facts break, in the order above; empty when the journey may go."""
    broken: list[DataRule] = []
    if facts.id_number and not facts.is_organisation:
        if not id_number_checksum_ok(facts.id_number):
            broken.append(DataRule.ID_NUMBER_CHECKSUM)
        elif id_number_birth_date(facts.id_number) != facts.birth_date:
            broken.append(DataRule.ID_NUMBER_BIRTH_DATE)
    if not facts.holder_name.strip():
        broken.append(DataRule.NAME_MISSING)
    if facts.first_channels and not (set(facts.first_channels) & facts.reachable_channels):
        broken.append(DataRule.NO_USABLE_CONTACT)
    if facts.trigger is not TriggerKind.RESCISSION:
        if facts.policy_status is not PolicyStatus.IN_FORCE:
            broken.append(DataRule.POLICY_STATUS)
        if facts.paid_recently > 0:
            broken.append(DataRule.RECENT_PAYMENT)
        if facts.open_dues is not None and facts.open_dues != facts.amount_due:
            broken.append(DataRule.AMOUNT_MISMATCH)
    return broken


def hold_priority(days_to_grace_end: int | None) -> int:
    """A held journey's task rises in priority as the grace end nears (the law's clock
    does not stop while the data is checked): 1 is the most urgent."""
    if days_to_grace_end is None or days_to_grace_end > 20:
        return 3
    if days_to_grace_end > 7:
        return 2
    return 1
