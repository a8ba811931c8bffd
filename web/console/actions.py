"""What an agent can tell a journey from its page, each as one of the contract's signals:
the form checked against the journey's state, the signal, when the journey's `status`
shows it took effect, and that answer in words."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.journey import (
    ContactUpdated,
    InquiryHandled,
    InquiryKind,
    InquiryReceived,
    JourneyStatus,
    ReinstatementApplied,
    ReinstatementDecided,
    Stage,
)
from web.console import words
from web.console.journey_port import JourneyPort

NOTE_MAX, REASON_MAX = 500, 200  # the signals' limits (domain.journey)


class Action(StrEnum):
    INQUIRY = "inquiry"  # inquiry_received
    HANDLED = "handled"  # inquiry_handled
    APPLY = "apply"  # reinstatement_applied
    DECIDE = "decide"  # reinstatement_decided
    CONTACT = "contact"  # contact_updated


TITLE = {Action.INQUIRY: "登记客户询问", Action.HANDLED: "标记询问已处理",
         Action.APPLY: "登记复效申请", Action.DECIDE: "登记核保结论",
         Action.CONTACT: "确认联系方式已更正"}
# New references, made when the form is first shown and carried through the confirmation,
# so that submitting twice opens one inquiry, not two.
_NEW = {Action.INQUIRY: "Q", Action.APPLY: "R"}
_REFERENCE = re.compile(r"^[QR]-[0-9a-f]{10}$")


class ActionRefused(ValueError):
    """The form does not fit the journey now; the message says why, for the page."""


@dataclass(frozen=True)
class Request:
    action: Action
    reference: str | None  # the inquiry or application id
    kind: InquiryKind | None = None
    approved: bool | None = None
    note: str = ""  # goes to the journey with the signal; never into the audit

    @property
    def detail(self) -> str | None:
        """What the audit keeps of the choice made (never the note's text)."""
        if self.kind is not None:
            return self.kind.value
        if self.approved is not None:
            return "approved" if self.approved else "refused"
        return None

    def fields(self) -> dict[str, str]:
        """The form again, for the confirmation page's hidden fields."""
        values = {"reference": self.reference or "", "kind": self.detail or "",
                  "note": self.note}
        if self.approved is not None:
            values["approved"] = "yes" if self.approved else "no"
        return {k: v for k, v in values.items() if v}

    def summary(self) -> list[tuple[str, str]]:
        rows = [("操作", TITLE[self.action])]
        if self.reference:
            rows.append(("编号", self.reference))
        if self.kind is not None:
            rows.append(("类别", words.word(words.INQUIRY, self.kind)))
        if self.approved is not None:
            rows.append(("结论", "批准复效" if self.approved else "不予复效"))
        if self.note:
            rows.append(("说明" if self.action is Action.HANDLED else "理由", self.note))
        return rows


def new_reference(action: Action) -> str | None:
    prefix = _NEW.get(action)
    return f"{prefix}-{uuid.uuid4().hex[:10]}" if prefix else None


def _open(status: JourneyStatus, kind: InquiryKind | None = None) -> set[str]:
    return {i.inquiry_id for i in status.open_inquiries if kind is None or i.kind is kind}


def parse(action: str, form: Mapping[str, str], status: JourneyStatus | None) -> Request:
    """The validated request, or ActionRefused with the reason in words."""
    try:
        act = Action(action)
    except ValueError:
        raise ActionRefused("没有这项操作。") from None
    if status is None or status.stage is Stage.CLOSED:
        raise ActionRefused("该保单没有进行中的旅程，无法发送。")
    reference = form.get("reference", "").strip() or new_reference(act)
    note = form.get("note", "").strip()
    if act in _NEW and not _REFERENCE.match(reference or ""):
        raise ActionRefused("编号格式不正确。")
    if act is Action.INQUIRY:
        try:
            kind = InquiryKind(form.get("kind", ""))
        except ValueError:
            raise ActionRefused("请选择询问类别。") from None
        return Request(act, reference, kind=kind)
    if act is Action.HANDLED:
        if reference not in _open(status):
            raise ActionRefused("该询问不在未结询问中。")
        if len(note) > NOTE_MAX:
            raise ActionRefused(f"处理说明最多 {NOTE_MAX} 字。")
        return Request(act, reference, note=note)
    if act is Action.APPLY:
        if status.stage is not Stage.LAPSED or status.reinstatement is None:
            raise ActionRefused("只有已失效且仍可复效的保单才能登记复效申请。")
        return Request(act, reference)
    if act is Action.DECIDE:
        if status.stage is not Stage.REINSTATING:
            raise ActionRefused("该保单没有待核保的复效申请。")
        if reference not in _open(status, InquiryKind.REINSTATEMENT):
            raise ActionRefused("请选择待核保的复效申请。")
        verdict = form.get("approved", "")
        if verdict not in ("yes", "no"):
            raise ActionRefused("请选择核保结论。")
        if len(note) > REASON_MAX:
            raise ActionRefused(f"理由最多 {REASON_MAX} 字。")
        return Request(act, reference, approved=verdict == "yes", note=note)
    return Request(act, None)


async def send(port: JourneyPort, policy_number: str, req: Request, now: datetime,
               note_id: int | None = None) -> bool:
    """The request's signal; False when no journey was running to take it. A note goes as
    the id it was kept under (`note_id`), never as text."""
    if req.action is Action.INQUIRY:
        return await port.inquiry_received(policy_number, InquiryReceived(
            inquiry_id=req.reference, kind=req.kind, received_at=now))
    if req.action is Action.HANDLED:
        return await port.inquiry_handled(policy_number, InquiryHandled(
            inquiry_id=req.reference, handled_at=now, note_id=note_id))
    if req.action is Action.APPLY:
        return await port.reinstatement_applied(policy_number, ReinstatementApplied(
            application_id=req.reference, applied_at=now))
    if req.action is Action.DECIDE:
        return await port.reinstatement_decided(policy_number, ReinstatementDecided(
            application_id=req.reference, approved=req.approved, decided_at=now,
            note_id=note_id))
    return await port.contact_updated(policy_number, ContactUpdated(updated_at=now))


def settled(action: Action, reference: str | None, status: JourneyStatus | None) -> bool:
    """Whether the journey's state shows the signal handled (a closed journey is final)."""
    if status is None or status.stage is Stage.CLOSED:
        return True
    if action is Action.INQUIRY:
        return reference in _open(status)
    if action is Action.APPLY:
        return status.stage is Stage.REINSTATING
    if action in (Action.HANDLED, Action.DECIDE):
        return reference not in _open(status)
    return "unreachable" not in status.segments


def answer(action: Action, reference: str | None, status: JourneyStatus | None) -> str:
    """The journey's answer as its status shows it now."""
    if not settled(action, reference, status):
        return "已发送给旅程，正在等待旅程处理……"
    if status is None:
        return "该保单已没有旅程。"
    if action is Action.INQUIRY:
        if reference not in _open(status):
            return f"旅程已结束（{words.word(words.OUTCOME, status.outcome)}），未登记该询问。"
        inquiry = next(i for i in status.open_inquiries if i.inquiry_id == reference)
        return (f"旅程已登记询问 {reference}（{words.word(words.INQUIRY, inquiry.kind)}），"
                f"须在 {words.at(inquiry.respond_by)} 前答复客户。")
    if action is Action.HANDLED:
        return f"旅程已关闭询问 {reference}。"
    if action is Action.APPLY:
        if status.stage is not Stage.REINSTATING:
            return "旅程未进入复效审核。"
        return f"旅程已进入复效审核，跟进暂停；复效申请 {reference} 须在一个工作日内答复。"
    if action is Action.DECIDE:
        if status.stage is Stage.CLOSED:
            return f"旅程已结束：{words.word(words.OUTCOME, status.outcome)}，已通知客户。"
        return "复效未获批准：已通知客户，复效跟进恢复。"
    if status.stage is Stage.CLOSED:
        return "旅程已结束。"
    return "旅程已获知联系方式更正；此前未送达的提醒将重新发送。"
