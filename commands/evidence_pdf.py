"""The evidence pack as a PDF: the letters' page and font, with a letterhead, the reference
and page numbers on every page, and the letters it carries embedded as attachments."""

from __future__ import annotations

import io
from datetime import datetime
from xml.sax.saxutils import escape

from pypdf import PdfReader, PdfWriter
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, Paragraph, Spacer, Table, TableStyle

from activities.letters import FONT_NAME, styles, typeset
from domain.content.config import InsurerContact
from domain.evidence_pack import (
    CHANNEL_WORDS,
    INQUIRY_WORDS,
    OUTCOME_WORDS,
    ROLE_WORDS,
    STAGE_WORDS,
    TRIGGER_WORDS,
    EvidencePack,
    demand_sentence,
    milestone_words,
)
from domain.plan import TZ
from infra.evidence_pack import Letter

WIDTH = A4[0] - 50 * mm
GRID = colors.HexColor("#9aa5b1")
SHADE = colors.HexColor("#eef2f6")
ACCENT = colors.HexColor("#1f3a5f")


def _styles() -> dict[str, ParagraphStyle]:
    title, body, _ = styles()
    return {
        "title": title,
        "body": body,
        "h": ParagraphStyle("h", parent=body, fontSize=13, leading=20, spaceBefore=10,
                            spaceAfter=6, textColor=ACCENT),
        "cell": ParagraphStyle("cell", parent=body, fontSize=9, leading=13, spaceAfter=0),
        "small": ParagraphStyle("small", parent=body, fontSize=7, leading=9.5, spaceAfter=0),
        "hash": ParagraphStyle("hash", parent=body, fontSize=5.4, leading=9.5, spaceAfter=0),
        "text": ParagraphStyle("text", parent=body, fontSize=9.5, leading=14, spaceAfter=0),
        "demand": ParagraphStyle("demand", parent=body, fontSize=11.5, leading=18,
                                 spaceAfter=0),
    }


def _t(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(TZ).strftime("%Y-%m-%d %H:%M")
    return str(value)


def _p(text, style: ParagraphStyle) -> Paragraph:
    return Paragraph("<br/>".join(escape(line) for line in _t(text).splitlines()) or "-", style)


def _table(rows: list[list], widths: list[float], s: dict, header: bool = True,
           style: str = "cell") -> Table:
    cells = [[c if isinstance(c, Paragraph) else _p(c, s[style]) for c in row] for row in rows]
    table = Table(cells, colWidths=widths, repeatRows=1 if header else 0)
    commands = [("GRID", (0, 0), (-1, -1), 0.4, GRID), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3)]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), SHADE))
    table.setStyle(TableStyle(commands))
    return table


def _pairs(pairs: list[tuple[str, object]], s: dict) -> Table:
    table = _table([[k, v] for k, v in pairs], [32 * mm, WIDTH - 32 * mm], s, header=False)
    table.setStyle(TableStyle([("BACKGROUND", (0, 0), (0, -1), SHADE)]))
    return table


def _story(pack: EvidencePack) -> list:
    s = _styles()
    j, p = pack.journey, pack.policy
    v = pack.verification
    story = [Paragraph("保单通知送达证据包", s["title"]),
             _pairs([("编号", pack.reference), ("生成时间", pack.generated_at),
                     ("申请人", pack.requested_by), ("申请事由", pack.reason),
                     ("保单号", p.policy_number), ("产品", p.product),
                     ("投保人", p.policyholder),
                     ("触发原因", TRIGGER_WORDS.get(j.trigger, j.trigger)),
                     ("应缴日期 / 金额", f"{_t(j.due_date)} / "
                                   + (f"¥{j.amount_due:,.2f}" if j.amount_due else "-")),
                     ("宽限期届满 / 中止日", f"{_t(j.grace_ends_on)} / {_t(j.lapses_on)}"),
                     ("流程", f"{_t(j.started_at)} 开始；"
                              f"{STAGE_WORDS.get(j.stage, j.stage)}"
                              + (f"（{OUTCOME_WORDS.get(j.outcome, j.outcome)}）"
                                 if j.outcome else "")),
                     ("流程编号", j.journey_id)], s),
             Spacer(1, 5 * mm)]
    demand = Table([[_p(demand_sentence(pack.formal_demand), s["demand"])]],
                   colWidths=[WIDTH])
    demand.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 1.2, ACCENT),
                                ("BACKGROUND", (0, 0), (-1, -1), SHADE),
                                ("TOPPADDING", (0, 0), (-1, -1), 6),
                                ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))
    head = pack.head
    checked = ("，并与 Temporal 流程历史中的链头逐一比对" if v.histories else
               "（未与 Temporal 流程历史比对）")
    verdict = ("未发现任何改动、缺失或多出的记录" if v.clean
               else f"发现 {len(v.breaks)} 处异常，见第七部分")
    story += [demand, Spacer(1, 3 * mm),
              _p(f"记录校验：本保单 {v.chains} 条哈希链、{v.entries} 个条目、{v.records} 条记录已"
                 f"重新计算{checked}，{verdict}。本流程链头：第 {head.seq} 条，"
                 f"{head.hash or '-'}。", s["body"])]

    story.append(Paragraph("一、计划时间线（流程开始时确定）", s["h"]))
    story.append(_table([["里程碑", "计划时间", "渠道"]] + [
        [milestone_words(m.key), m.at, "、".join(CHANNEL_WORDS.get(c, c) for c in m.channels)]
        for m in pack.timeline], [60 * mm, 35 * mm, WIDTH - 95 * mm], s)
        if pack.timeline else _p("Temporal 流程历史不可用：计划时间线无法取得。", s["body"]))

    story.append(Paragraph("二、通知记录（原文照录）", s["h"]))
    story.append(_p("记录时间按流程日历；状态时间为各系统（本系统、服务商）记录时的时钟。"
                    "发送对象已遮蔽，完整地址可凭记录中的哈希核对。", s["cell"]))
    story.append(Spacer(1, 2 * mm))
    for i, m in enumerate(pack.messages, 1):
        meta = _pairs([
            ("通知", f"{i}. {milestone_words(m.milestone)} · "
                     f"{CHANNEL_WORDS.get(m.channel, m.channel)} · "
                     f"{ROLE_WORDS.get(m.recipient_role, m.recipient_role)}"),
            ("发送对象", m.address), ("服务商 / 编号", f"{m.provider or '-'} / "
                                                   f"{m.provider_message_id or '-'}"),
            ("模板", m.template), ("记录时间", m.created_at),
            *([("挂号信邮件号", m.tracking_number)] if m.tracking_number else []),
            *([("外呼坐席", m.agent)] if m.agent else []),
            *([("信函附件", f"{m.letter.filename}（SHA-256 {m.letter.sha256}）")]
              if m.letter else []),
            ("记录编号", m.notification_id)], s)
        text = Table([[_p(((m.subject + "\n") if m.subject else "") + (m.text or "（无正文）"),
                          s["text"])]], colWidths=[WIDTH])
        text.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 0.6, GRID)]))
        statuses = _table([["时间", "状态", "来源", "服务商代码"]] + [
            [e.at, e.words, "服务商回执" if e.source == "provider" else "系统记录",
             e.code_words or "-"] for e in m.statuses],
            [32 * mm, 48 * mm, 24 * mm, WIDTH - 104 * mm], s)
        story += [KeepTogether([meta, Spacer(1, 1.5 * mm), text]), Spacer(1, 1.5 * mm),
                  statuses, Spacer(1, 5 * mm)]
    if not pack.messages:
        story.append(_p("本流程没有通知记录。", s["body"]))

    story.append(Paragraph("三、缴费与扣款失败", s["h"]))
    story.append(_table([["缴费时间", "交易号", "金额"]] + [
        [x.paid_at, x.transaction_id, f"¥{x.amount:,.2f} {x.currency}"] for x in pack.payments],
        [40 * mm, 70 * mm, WIDTH - 110 * mm], s) if pack.payments else _p("无缴费记录。",
                                                                          s["body"]))
    story.append(Spacer(1, 2 * mm))
    story.append(_table([["扣款时间", "金额", "原因"]] + [
        [x.attempted_at, f"¥{x.amount:,.2f}", x.reason_text or x.reason_code]
        for x in pack.debit_failures], [40 * mm, 35 * mm, WIDTH - 75 * mm], s)
        if pack.debit_failures else _p("无扣款失败记录。", s["body"]))

    story.append(Paragraph("四、客户咨询与答复时限", s["h"]))
    story.append(_table([["编号", "类型", "收到", "应答复", "答复", "是否及时"]] + [
        [q.inquiry_id, INQUIRY_WORDS.get(q.kind, q.kind), q.received_at, q.respond_by,
         q.handled_at, {True: "及时", False: "逾期", None: "尚未答复"}[q.on_time]
         + ("，已升级" if q.escalated_at else "")] for q in pack.inquiries],
        [28 * mm, 20 * mm, 28 * mm, 28 * mm, 28 * mm, WIDTH - 132 * mm], s)
        if pack.inquiries else _p("无客户咨询记录。", s["body"]))

    story.append(Paragraph("五、流程阶段", s["h"]))
    story.append(_table([["阶段", "结果", "记录时间（系统时钟）"]] + [
        [STAGE_WORDS.get(x.stage, x.stage), OUTCOME_WORDS.get(x.outcome or "", x.outcome),
         x.recorded_at] for x in pack.stages], [40 * mm, 40 * mm, WIDTH - 80 * mm], s))

    story.append(Paragraph("六、哈希链（每条记录及其每次变更）", s["h"]))
    story.append(_p("每个条目含上一条目的哈希与本记录各字段的哈希（不含内容本身）；"
                    "任何记录或条目被改动、删除或插入都会使校验失败。", s["cell"]))
    story.append(Spacer(1, 1.5 * mm))
    rows = [["#", "记录", "版本 / 变更", "记录时间", "条目哈希 SHA-256"]]
    for e in pack.chain:
        rows.append([f"{'' if e.chain == j.journey_id else '保单 '}{e.seq}",
                     f"{e.table} {e.key}",
                     f"v{e.version}" + (f" {', '.join(e.changed)}" if e.changed else ""),
                     e.recorded_at.astimezone(TZ).strftime("%m-%d %H:%M"),
                     _p(e.entry_hash, s["hash"])])
    story.append(_table(rows, [11 * mm, WIDTH - 123 * mm, 24 * mm, 16 * mm, 72 * mm], s,
                        style="small"))
    if pack.anchors:
        story.append(Spacer(1, 2 * mm))
        story.append(_table([["锚定条目", "Temporal 运行", "锚定时间", "条目哈希"]] + [
            [f"#{a.seq}", a.run_id, a.anchored_at, a.entry_hash] for a in pack.anchors],
            [17 * mm, 50 * mm, 24 * mm, WIDTH - 91 * mm], s, style="small"))

    story.append(Paragraph("七、校验结果", s["h"]))
    story.append(_p("未发现异常。" if v.clean else "\n".join(b.line() for b in v.breaks),
                    s["cell"]))
    letters = [m.letter for m in pack.messages if m.letter]
    if letters:
        story.append(Paragraph("附件（嵌入本文件，并另存于同一目录）", s["h"]))
        story.append(_table([["文件", "SHA-256"]] + [[f.filename, f.sha256] for f in letters],
                            [70 * mm, WIDTH - 70 * mm], s, style="small"))
    return story


def _letterhead(pack: EvidencePack):
    insurer = InsurerContact()

    def furnish(canvas, page: int, pages: int) -> None:
        width, height = A4
        canvas.saveState()
        canvas.setFillColor(ACCENT)
        canvas.setFont(FONT_NAME, 15)
        canvas.drawString(25 * mm, height - 18 * mm, insurer.legal_name)
        canvas.setFont(FONT_NAME, 8.5)
        canvas.drawString(25 * mm, height - 24 * mm,
                          f"{insurer.service_department}  客服热线 {insurer.hotline}  "
                          f"{insurer.online_service_url}")
        canvas.drawRightString(width - 25 * mm, height - 18 * mm, f"编号 {pack.reference}")
        canvas.drawRightString(width - 25 * mm, height - 24 * mm, "保单通知送达证据包")
        canvas.setStrokeColor(ACCENT)
        canvas.setLineWidth(1)
        canvas.line(25 * mm, height - 27 * mm, width - 25 * mm, height - 27 * mm)
        canvas.setFillColor(colors.black)
        canvas.setFont(FONT_NAME, 8.5)
        canvas.drawCentredString(width / 2, 14 * mm,
                                 f"第 {page} 页 / 共 {pages} 页    {pack.reference}")
        canvas.restoreState()

    return furnish


def render_pack_pdf(pack: EvidencePack, letters: list[Letter]) -> bytes:
    """The pack's PDF, with every letter it names embedded as an attachment."""
    content, _ = typeset(_story(pack), f"证据包 {pack.reference}", _letterhead(pack))
    if not letters:
        return content
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(content)))
    for letter in letters:
        writer.add_attachment(letter.file.filename, letter.content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
