"""The keys a customer may press during an automated call, and what each one does."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from domain.content.formats import speak_amount
from domain.content.rules import KIND_ELEMENTS
from domain.models import MessageKind


class CallChoice(StrEnum):
    AGENT = "agent"  # be connected to an agent
    REPEAT_AMOUNT = "repeat_amount"  # hear the amount due again
    INVALID = "invalid"  # a key the menu does not offer


KEYS = {"1": CallChoice.AGENT, "2": CallChoice.REPEAT_AMOUNT}
_OFFER = {CallChoice.AGENT: "如需转接人工客服，请按1",
          CallChoice.REPEAT_AMOUNT: "如需再听一遍应缴金额，请按2"}
CONNECTING = "正在为您转接人工客服，请稍候。"
NOT_OFFERED = "您的输入有误。"
GOODBYE = "感谢您的接听，再见。"


def menu_for(template_id: str | None) -> list[CallChoice]:
    """What a call offers: an agent always; the amount again only where the message
    itself states an amount (never to an emergency contact, who must not learn it).
    A template id is `kind.channel` (the manifest enforces it)."""
    try:
        kind = MessageKind((template_id or "").partition(".")[0])
    except ValueError:
        return [CallChoice.AGENT]
    if "amount" in KIND_ELEMENTS[kind]:
        return [CallChoice.AGENT, CallChoice.REPEAT_AMOUNT]
    return [CallChoice.AGENT]


def prompt(options: list[CallChoice]) -> str:
    return "；".join(_OFFER[o] for o in options) + "。"


def choice_for(digits: str, options: list[CallChoice]) -> CallChoice:
    choice = KEYS.get(digits)
    return choice if choice in options else CallChoice.INVALID


def amount_sentence(amount: Decimal) -> str:
    return f"您目前应缴的保费为{speak_amount(amount)}。"
