"""Formal letters as PDF (Chinese text in an embedded TrueType CJK font) and the paper
letter channel: the PDF queued for the print vendor with its postal address. The same
page (`typeset`) sets the evidence packs."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from xml.sax.saxutils import escape

import asyncpg
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

from activities.channels import Outgoing, PermanentSendError
from infra.fonts import cjk_font_path

FONT_NAME = "LapseCJK"


@dataclass(frozen=True)
class LetterPdf:
    content: bytes
    pages: int
    missing_glyphs: int  # characters the font cannot draw (rare characters outside its set)


@cache
def _font() -> TTFont:
    font = TTFont(FONT_NAME, str(cjk_font_path()), subfontIndex=0)
    pdfmetrics.registerFont(font)
    return font


@cache
def styles() -> tuple[ParagraphStyle, ParagraphStyle, ParagraphStyle]:
    _font()
    body = ParagraphStyle("body", fontName=FONT_NAME, fontSize=11, leading=18,
                          wordWrap="CJK", spaceAfter=6)
    title = ParagraphStyle("title", parent=body, fontSize=16, leading=24, alignment=TA_CENTER,
                           spaceAfter=12)
    address = ParagraphStyle("address", parent=body, fontSize=10, leading=14, spaceAfter=0)
    return title, body, address


def missing_glyphs(text: str) -> int:
    cmap = _font().face.charToGlyph
    return sum(1 for ch in text if not ch.isspace() and ord(ch) not in cmap)


def render_letter_pdf(title: str, body: str, address_lines: list[str] = ()) -> LetterPdf:
    """A4 letter: an optional address block (for window envelopes), the title, the text.

    `body` is the letter template's text, which starts with its title line; each blank
    line starts a paragraph, single line breaks are kept.
    """
    title_style, body_style, address_style = styles()
    lines = body.strip().splitlines()
    if lines and lines[0].strip() == title.strip():
        lines = lines[1:]
    story = [Paragraph(escape(line), address_style) for line in address_lines]
    if address_lines:
        story.append(Spacer(1, 18 * mm))
    story.append(Paragraph(escape(title), title_style))
    for paragraph in "\n".join(lines).strip().split("\n\n"):
        text = "<br/>".join(escape(line.strip()) for line in paragraph.splitlines())
        story.append(Paragraph(text, body_style))
    content, pages = typeset(story, title)
    text = "".join([title, body, *address_lines])
    return LetterPdf(content=content, pages=pages, missing_glyphs=missing_glyphs(text))


Furnish = Callable[[Canvas, int, int], None]


def typeset(story: list, title: str, furnish: Furnish | None = None) -> tuple[bytes, int]:
    """The letters' page: A4, their margins and font, the same bytes for the same text.

    `furnish(canvas, page, pages)` draws what every page carries (a letterhead, page
    numbers); it is called once the number of pages is known. Returns the PDF and its
    number of pages.
    """
    _font()
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


class PrintQueue:
    """Paper letters: the PDF and the postal address go into print_queue for the vendor.

    A letter whose text has a character the font lacks waits in 'review' for a person,
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
                                      address)
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO print_queue (letter_id, policy_number, recipient_id, postal_address, "
                "  pdf, pages, missing_glyphs, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (letter_id) DO NOTHING",
                message.notification_id, message.policy_number, message.recipient_id,
                "\n".join(address), pdf.content, pdf.pages, pdf.missing_glyphs,
                "review" if pdf.missing_glyphs else "queued")
        return message.notification_id
