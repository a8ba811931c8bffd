"""Formal letters as PDF, laid out as a Chinese insurer's notice, and the paper letter
channel: the PDF queued for the print vendor with its postal address.

Letterhead (the insurer's logo and name), a reference number that finds the record, the
title, the salutation, paragraphs indented two characters in a serif CJK font, links on
a line of their own (never broken) with a QR code for the payment link, and the date and
sign-off on the right under the company seal. Fonts are embedded, so any reader shows it.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

import asyncpg
import segno
from reportlab.lib import textsplit as rl_textsplit
from reportlab.lib.colors import Color
from reportlab.lib.enums import TA_CENTER, TA_JUSTIFY, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    HRFlowable,
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus import paragraph as rl_paragraph

from activities.channels import Attachment, Outgoing, PermanentSendError
from activities.content import insurer_settings, render_for
from domain.content.config import InsurerContact
from domain.journey import SendRequest
from domain.models import Channel, Customer
from infra import print_queue
from infra.fonts import cjk_font_path, serif_font_path
from infra.store import PolicyBundle

SERIF, SANS = "LapseSerif", "LapseSans"
ASSETS = Path(__file__).parent / "letter_assets"
DEFAULT_LOGO, DEFAULT_SEAL = ASSETS / "logo.png", ASSETS / "seal.png"
# Formal notices whose e-mail carries the letter as a PDF.
LETTER_ATTACHED = ("lapse_notice", "rescission_notice")

PAGE_WIDTH = A4[0] - 50 * mm  # inside 25 mm margins
_INK = Color(0.07, 0.24, 0.51)  # the letterhead's blue
_URL = re.compile(r"https?://\S+")
_BODY_SIZE = 11.5


@dataclass(frozen=True)
class LetterPdf:
    content: bytes
    pages: int
    missing_glyphs: int  # characters no font can draw (rare characters outside both)


@cache
def _fonts() -> tuple[TTFont, TTFont]:
    serif = TTFont(SERIF, str(serif_font_path()))
    sans = TTFont(SANS, str(cjk_font_path()), subfontIndex=0)
    pdfmetrics.registerFont(serif)
    pdfmetrics.registerFont(sans)
    return serif, sans


# Chinese punctuation that may not start a line (GB/T 15834): reportlab's CJK wrap knows
# the Japanese set only, so a full-width comma could open a line. Both of its wrapping
# functions read this string at wrap time; add ours once.
_CANNOT_START = "，：；？！”’》〉）．"


@cache
def _styles() -> dict[str, ParagraphStyle]:
    _fonts()
    for module in (rl_paragraph, rl_textsplit):
        module.ALL_CANNOT_START += "".join(ch for ch in _CANNOT_START
                                           if ch not in module.ALL_CANNOT_START)
    body = ParagraphStyle("body", fontName=SERIF, fontSize=_BODY_SIZE, leading=20,
                          wordWrap="CJK", alignment=TA_JUSTIFY, spaceAfter=4,
                          firstLineIndent=2 * _BODY_SIZE)
    return {
        "body": body,
        "flush": ParagraphStyle("flush", parent=body, firstLineIndent=0),
        "list": ParagraphStyle("list", parent=body, firstLineIndent=0,
                               leftIndent=2 * _BODY_SIZE, spaceAfter=0),
        "title": ParagraphStyle("title", fontName=SANS, fontSize=17, leading=26,
                                alignment=TA_CENTER, spaceBefore=6, spaceAfter=14),
        "head": ParagraphStyle("head", fontName=SANS, fontSize=13, leading=16,
                               textColor=_INK, alignment=TA_RIGHT),
        "head_small": ParagraphStyle("head_small", fontName=SANS, fontSize=8, leading=11,
                                     textColor=_INK, alignment=TA_RIGHT),
        "reference": ParagraphStyle("reference", fontName=SANS, fontSize=9, leading=12,
                                    alignment=TA_RIGHT),
        "address": ParagraphStyle("address", fontName=SERIF, fontSize=10.5, leading=15),
        "caption": ParagraphStyle("caption", fontName=SANS, fontSize=8, leading=10,
                                  alignment=TA_CENTER),
    }


def _line_text(line) -> str:
    if isinstance(line, tuple):  # reportlab's plain lines: (extra space, [text])
        return "".join(line[1])
    return "".join(getattr(w, "text", "") for w in line.words)


class CjkParagraph(Paragraph):
    """A paragraph that never starts a line with closing punctuation. reportlab hangs one
    such character into the margin; where two follow each other (”。) the second would
    open the next line, so the line before is wrapped one character earlier instead."""

    def breakLinesCJK(self, maxWidths):
        widths = list(maxWidths) if isinstance(maxWidths, list | tuple) else [maxWidths]
        em = self.style.fontSize
        for _ in range(20):
            lines = super().breakLinesCJK(widths)
            texts = [_line_text(line) for line in lines.lines]
            bad = next((k for k in range(1, len(texts))
                        if texts[k][:1] and texts[k][0] in rl_paragraph.ALL_CANNOT_START), None)
            if bad is None:
                return lines
            widths += [widths[-1]] * (bad - len(widths) + 1)
            widths[bad - 1] -= em
        return lines


def _cmaps() -> tuple[dict[int, int], dict[int, int]]:
    serif, sans = _fonts()
    return serif.face.charToGlyph, sans.face.charToGlyph


def missing_glyphs(text: str) -> int:
    serif, sans = _cmaps()
    return sum(1 for ch in text if not ch.isspace()
               and ord(ch) not in serif and ord(ch) not in sans)


def _markup(text: str) -> str:
    """Escaped paragraph text; a character the serif lacks but the sans has is set in the
    sans, so a rare name prints instead of leaving a blank."""
    serif, sans = _cmaps()
    return "".join(f'<font name="{SANS}">{escape(ch)}</font>'
                   if ord(ch) not in serif and ord(ch) in sans else escape(ch) for ch in text)


def letter_reference(provider_ref: str) -> str:
    """The reference printed on a letter: the record's provider_ref, first 12 hex digits
    in groups of four (find it with provider_ref LIKE 'abcd1234ef56%')."""
    head = provider_ref[:12].upper()
    return "-".join(head[i:i + 4] for i in range(0, len(head), 4))


class QrCode(Flowable):
    """A QR code drawn as vector squares, so it scans from any print resolution."""

    def __init__(self, data: str, size: float):
        super().__init__()
        self.matrix = segno.make(data, error="m").matrix
        self.width = self.height = size

    def draw(self) -> None:
        n = len(self.matrix) + 8  # four modules of quiet zone on each side
        cell = self.width / n
        self.canv.setFillColorRGB(0, 0, 0)
        for y, row in enumerate(self.matrix):
            for x, dark in enumerate(row):
                if dark:
                    self.canv.rect((x + 4) * cell, self.height - (y + 5) * cell, cell, cell,
                                   stroke=0, fill=1)


class SignOff(Flowable):
    """The sign-off on the right (company, department, date) under the company seal."""

    def __init__(self, lines: list[str], seal: Path, style: ParagraphStyle):
        super().__init__()
        self.lines, self.seal, self.style = lines, seal, style
        self.width, self.height = PAGE_WIDTH, len(lines) * style.leading + 8 * mm

    def draw(self) -> None:
        c, s = self.canv, self.style
        c.setFillColorRGB(0, 0, 0)
        widths = [pdfmetrics.stringWidth(line, s.fontName, s.fontSize) for line in self.lines]
        block = max(widths)
        right = self.width - 2 * s.fontSize  # two characters in from the right margin
        c.setFont(s.fontName, s.fontSize)
        for i, line in enumerate(self.lines):
            y = self.height - 4 * mm - (i + 1) * s.leading
            # Centred on the widest line, as a signature block is set.
            c.drawCentredString(right - block / 2, y, line)
        size = 38 * mm
        c.drawImage(ImageReader(str(self.seal)), right - block / 2 - size / 2,
                    self.height / 2 - size / 2, size, size, mask="auto")


def _letterhead(insurer: InsurerContact, reference: str) -> list[Flowable]:
    st = _styles()
    logo = Path(insurer.logo or DEFAULT_LOGO)
    reader = ImageReader(str(logo))
    w, h = reader.getSize()
    height = 13 * mm
    image = Image(str(logo), width=height * w / h, height=height)
    name = [Paragraph(escape(insurer.legal_name), st["head"]),
            Paragraph(escape(f"客服热线 {insurer.hotline}　{insurer.online_service_url}"),
                      st["head_small"])]
    table = Table([[image, name]], colWidths=[PAGE_WIDTH * 0.45, PAGE_WIDTH * 0.55])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                               ("LEFTPADDING", (0, 0), (-1, -1), 0),
                               ("RIGHTPADDING", (0, 0), (-1, -1), 0)]))
    out: list[Flowable] = [table, Spacer(1, 2 * mm),
                           HRFlowable(width="100%", thickness=1.2, color=_INK),
                           Spacer(1, 2 * mm)]
    if reference:
        out.append(Paragraph(escape(f"编号：{reference}"), st["reference"]))
    return out


def _link(url: str, insurer: InsurerContact, coded: set[str]) -> Flowable:
    """A link on one line, in a size that fits the page, never broken; a payment link
    gets its QR code beside it, the first time the letter gives it."""
    st = _styles()
    qr = url.startswith(insurer.payment_link_base) and url not in coded
    coded.add(url)
    room = PAGE_WIDTH - (2 * _BODY_SIZE) - (30 * mm if qr else 0)
    size = _BODY_SIZE
    while size > 6 and pdfmetrics.stringWidth(url, SANS, size) > room:
        size -= 0.5
    style = ParagraphStyle("link", parent=st["list"], fontName=SANS, fontSize=size,
                           leading=size * 1.4, wordWrap=None, splitLongWords=False)
    text = Paragraph(escape(url), style)
    if not qr:
        return text
    code = [QrCode(url, 24 * mm), Paragraph("扫码缴费", st["caption"])]
    table = Table([[text, code]], colWidths=[PAGE_WIDTH - 30 * mm, 30 * mm])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                               ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    return table


def _paragraph(text: str, insurer: InsurerContact, coded: set[str]) -> list[Flowable]:
    """One paragraph of the template: its lines, a link taken out onto a line of its own."""
    st = _styles()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    out: list[Flowable] = []
    listing = lines[0].endswith("：") and len(lines) > 1  # a lead-in and its items
    for i, line in enumerate(lines):
        style = st["body"] if i == 0 else st["list"] if listing else st["flush"]
        urls = _URL.findall(line)
        if not any(_own_line(url, line, style, insurer) for url in urls):
            out.append(CjkParagraph(_markup(line), style))
            continue
        for j, piece in enumerate(_URL.split(line)):
            if piece.strip().strip("，。、；："):
                out.append(CjkParagraph(_markup(piece.strip()),
                                        style if j == 0 else st["flush"]))
            if j < len(urls):
                out.append(_link(urls[j], insurer, coded))
    return [KeepTogether(out)] if listing else out


def _own_line(url: str, line: str, style: ParagraphStyle, insurer: InsurerContact) -> bool:
    """A payment link (for its QR code) and a link that would wrap get a line of their own."""
    width = pdfmetrics.stringWidth(line, style.fontName, style.fontSize)
    room = PAGE_WIDTH - style.leftIndent - style.firstLineIndent
    return url.startswith(insurer.payment_link_base) or width > room


def render_letter_pdf(title: str, body: str, address_lines: list[str] = (), *,
                      reference: str = "", insurer: InsurerContact | None = None
                      ) -> LetterPdf:
    """A4 formal notice. `body` is the letter template's text: its title line, the
    salutation, paragraphs separated by blank lines, and the sign-off as the last one."""
    insurer = insurer or insurer_settings()
    st = _styles()
    lines = body.strip().splitlines()
    if lines and lines[0].strip() == title.strip():
        lines = lines[1:]
    paragraphs = [p for p in "\n".join(lines).strip().split("\n\n") if p.strip()]
    story = _letterhead(insurer, reference)
    if address_lines:
        story += [Spacer(1, 4 * mm), *[Paragraph(_markup(a), st["address"])
                                        for a in address_lines], Spacer(1, 6 * mm)]
    story.append(Paragraph(_markup(title), st["title"]))
    sign_off = paragraphs.pop().splitlines() if len(paragraphs) > 1 else []
    # 特此通知 and the sign-off stay on one page: a seal never stands alone.
    closing = [paragraphs.pop()] if sign_off and paragraphs[-1].strip() == "特此通知。" else []
    coded: set[str] = set()
    for i, paragraph in enumerate(paragraphs):
        if i == 0 and paragraph.startswith("尊敬的"):
            story.append(CjkParagraph(_markup(paragraph.strip()), st["flush"]))
        else:
            story += _paragraph(paragraph, insurer, coded)
    if sign_off:
        story.append(KeepTogether([
            Spacer(1, 3 * mm), *[CjkParagraph(_markup(c), st["body"]) for c in closing],
            Spacer(1, 6 * mm), SignOff(
            [line.strip() for line in sign_off], Path(insurer.seal or DEFAULT_SEAL),
            st["flush"])]))
    pages: list[int] = []

    def footer(canvas, doc) -> None:
        pages.append(doc.page)
        canvas.setFont(SANS, 8)
        canvas.setFillColor(_INK)
        note = f"{insurer.legal_name}　编号 {reference}　" if reference else ""
        canvas.drawCentredString(A4[0] / 2, 14 * mm, f"{note}第 {doc.page} 页")

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=25 * mm, rightMargin=25 * mm,
                            topMargin=18 * mm, bottomMargin=24 * mm, title=title,
                            author=insurer.legal_name, subject="", creator="lapse-notifier",
                            invariant=True)  # the same text, the same bytes: retries agree
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    text = "".join([title, body, *address_lines])
    return LetterPdf(content=buffer.getvalue(), pages=len(pages),
                     missing_glyphs=missing_glyphs(text))


# --- the letters' look for other documents (the evidence pack) ---------------------------

FONT_NAME = SANS


def styles() -> tuple[ParagraphStyle, ParagraphStyle, ParagraphStyle]:
    """(title, body, address) in the letters' fonts."""
    st = _styles()
    return st["title"], st["flush"], st["address"]


Furnish = Callable[[Canvas, int, int], None]


def typeset(story: list, title: str, furnish: Furnish | None = None) -> tuple[bytes, int]:
    """The letters' page: A4, their margins and fonts, the same bytes for the same text.

    `furnish(canvas, page, pages)` draws what every page carries (a letterhead, page
    numbers); it is called once the number of pages is known. Returns the PDF and its
    number of pages.
    """
    _fonts()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=25 * mm, rightMargin=25 * mm,
                            topMargin=(38 if furnish else 25) * mm, bottomMargin=25 * mm,
                            title=title, author="", subject="", creator="lapse-notifier",
                            invariant=True)
    pages: list[dict] = []

    class Furnished(Canvas):
        def showPage(self):  # noqa: N802 - reportlab's name
            pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            for number, state in enumerate(pages, 1):
                self.__dict__.update(state)
                if furnish is not None:
                    furnish(self, number, len(pages))
                super().showPage()
            super().save()

    doc.build(story, canvasmaker=Furnished)
    return buffer.getvalue(), len(pages)


async def letter_attachment(req: SendRequest, bundle: PolicyBundle, customer: Customer,
                            role: str, provider_ref: str) -> Attachment | None:
    """The formal letter of a lapse or rescission notice, as a PDF for its e-mail; a
    letter that breaks a content rule raises ContentRuleError (the e-mail is not sent)."""
    if req.channel is not Channel.EMAIL or req.message not in LETTER_ATTACHED:
        return None
    letter = render_for(req.model_copy(update={"channel": Channel.LETTER}), bundle,
                        customer, role)
    # Typesetting is CPU work: off the event loop that runs the other activities.
    pdf = await asyncio.to_thread(render_letter_pdf, letter.subject or "", letter.body,
                                  reference=letter_reference(provider_ref))
    return Attachment(filename=f"{letter.subject or req.message}.pdf", content=pdf.content)


class PrintQueue:
    """Paper letters: the PDF and the postal address go into print_queue for the vendor.

    A letter whose text has a character no font has waits in 'review' for a person,
    rather than going to print with a blank where a name should be.
    """

    provider = "print-queue"
    idempotent = True  # one letter per notification id: sending again finds it

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    async def send(self, message: Outgoing) -> str:
        if not message.address:
            raise PermanentSendError("no_postal_address")
        address = [message.address, *([f"{message.addressee} 收"] if message.addressee else [])]
        # Typesetting is CPU work: off the event loop that runs the other activities.
        pdf = await asyncio.to_thread(render_letter_pdf, message.subject or "", message.body,
                                      address, reference=letter_reference(message.reference))
        async with self._pool.acquire() as conn:
            await print_queue.queue_letter(
                conn, message.notification_id, message.policy_number, message.recipient_id,
                "\n".join(address), pdf.content, pdf.pages, pdf.missing_glyphs,
                "review" if pdf.missing_glyphs else "queued")
        return message.notification_id
