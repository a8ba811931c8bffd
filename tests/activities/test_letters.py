"""The PDF letter: a formal notice (letterhead, reference, serif body, seal, QR code) whose
text, extracted again, is the template's text; what no font can draw goes to review.

The PNGs under docs/letters/ are these letters as sent: RECORD_LETTERS=1 ./run tests
tests/activities/test_letters.py renders them again from real sends through the sandbox.
"""

from __future__ import annotations

import io
import os
import re
from datetime import date, datetime
from pathlib import Path

import pypdfium2
import pytest
import zxingcpp
from pypdf import PdfReader

from activities.content import render_for
from activities.letters import letter_reference, missing_glyphs, render_letter_pdf
from commands.plan import make_plan, preview_request
from domain.calendar import BusinessCalendar
from domain.models import Channel
from domain.plan import TZ, ChannelSlot
from infra import store
from infra.deliveries import provider_ref
from tests.channel_helpers import attempt_env, record, sandbox_stack, send_request
from tests.journey_helpers import load_sample

DOCS = Path(__file__).resolve().parents[2] / "docs" / "letters"
RARE = [  # a name with a character outside both fonts (CJK extension B)
    '{"record": "customer", "customer_id": "C0950", "name": "司马𠀾", "birth_date": '
    '"1985-03-03", "mobile": "+8613800000950", "postal_address": {"province": "上海市", '
    '"city": "上海市", "district": "浦东新区", "street": "世纪大道1号", "postcode": "200120"}}',
    '{"record": "policy", "policy_number": "P2026000950", "product_code": "LT-WL01", '
    '"policyholder_id": "C0950", "effective_date": "2020-01-01", "premium": "1000.00", '
    '"due_date": "2026-11-20", "payment_method": {"kind": "manual"}, '
    '"dues": [{"due_date": "2026-11-20", "amount": "1000.00"}]}',
]


@pytest.fixture
async def sample(pool):
    await load_sample(pool, RARE)
    return pool


def text_of(pdf: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def squeeze(text: str) -> str:
    """Line breaks fall where the page wraps: compare the text without white space."""
    return re.sub(r"\s+", "", text)


def pages_as_images(pdf: bytes, scale: float = 2.0) -> list:
    document = pypdfium2.PdfDocument(pdf)
    return [document[i].render(scale=scale).to_pil() for i in range(len(document))]


async def letter(pool, policy: str, message: str, on: date, scope: str = "policyholder"):
    req = await send_request(pool, policy, message, Channel.LETTER, on, scope=scope)
    async with pool.acquire() as conn:
        bundle = await store.load_policy(conn, policy, with_members=scope == "members")
    reader = bundle.insured[0] if scope == "members" else bundle.policyholder
    role = "group_member" if scope == "members" else (
        "group_employer" if reader.is_organisation else "policyholder")
    return render_for(req, bundle, reader, role)


@pytest.mark.parametrize("policy, message, on", [
    ("P2026000001", "lapse_notice", date(2026, 11, 23)),
    ("P2026000002", "first_reminder", date(2026, 11, 23)),  # a failed debit, a payment link
    ("P2026000005", "rescission_notice", date(2026, 11, 26)),
    ("P2026000016", "lapse_notice", date(2026, 11, 23)),  # 龘堃: rare but in the fonts
])
async def test_the_pdf_says_exactly_what_the_template_says(sample, policy, message, on):
    rendered = await letter(sample, policy, message, on)
    pdf = render_letter_pdf(rendered.subject, rendered.body, reference="3FA9-C2D1-E0B7")
    extracted = squeeze(text_of(pdf.content))
    assert pdf.missing_glyphs == 0 and pdf.pages >= 1
    for line in rendered.body.splitlines():
        assert squeeze(line) in extracted, line  # every line, links never broken
    # The letterhead and the reference that finds the record.
    assert "安泰人寿保险股份有限公司" in extracted and "编号：3FA9-C2D1-E0B7" in extracted


def test_the_body_is_set_in_a_serif_with_the_logo_and_the_seal():
    pdf = render_letter_pdf("保险费缴纳通知书", "保险费缴纳通知书\n\n尊敬的张伟先生：\n\n正文。"
                            "\n\n安泰人寿保险股份有限公司\n客户服务中心\n2026年11月23日")
    page = PdfReader(io.BytesIO(pdf.content)).pages[0]
    fonts = " ".join(str(f.get_object().get("/BaseFont"))
                     for f in page["/Resources"]["/Font"].values())
    # Embedded subsets: the serif body and the sans letterhead and title.
    assert "+NotoSerifSC-Regular" in fonts and "+WenQuanYiMicroHei" in fonts
    assert len(page.images) == 2  # the letterhead logo and the company seal


async def test_the_payment_link_on_paper_scans_as_the_link_in_the_text(sample):
    rendered = await letter(sample, "P2026000002", "first_reminder", date(2026, 11, 23))
    [link] = set(re.findall(r"https://pay\.\S+", rendered.body))  # given twice, coded once
    pdf = render_letter_pdf(rendered.subject, rendered.body)
    found = [code.text for image in pages_as_images(pdf.content)
             for code in zxingcpp.read_barcodes(image)]
    assert found == [link]


def test_every_glyph_of_the_templates_is_in_the_fonts_and_extension_b_is_not():
    assert missing_glyphs("保险合同效力中止（失效）通知书：¥3,600.00 龘堃欧阳「」—…") == 0
    assert missing_glyphs("司马𠀾") == 1


async def test_a_letter_no_font_can_draw_waits_for_review(sample):
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, "P2026000950", "lapse_notice", Channel.LETTER,
                                 date(2026, 11, 23))
        out = await attempt_env().run(stack.activities().send_notifications, req)
        row = await sample.fetchrow("SELECT status, missing_glyphs, postal_address "
                                    "FROM print_queue")
    assert out.sent == 1
    assert (row["status"], row["missing_glyphs"]) == ("review", 2)  # salutation and envelope
    # 上海市 is province and city: written once.
    assert row["postal_address"].startswith("200120 上海市浦东新区世纪大道1号")


async def test_the_emailed_letter_carries_the_reference_of_its_record(sample):
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, "P2026000002", "lapse_notice", Channel.EMAIL,
                                 date(2026, 11, 23))
        await attempt_env().run(stack.activities().send_notifications, req)
        nid = f"{req.journey_id}/{req.milestone_key}/email/C0002"
        row = await record(sample, nid)
    [entry] = stack.sandbox.outbox.entries
    [pdf] = entry.attachments
    text = squeeze(text_of(pdf.content))
    assert row["provider_ref"] == provider_ref(nid)
    assert f"编号：{letter_reference(row['provider_ref'])}" in text
    # The failed debit: when, how much, why; the lapse date.
    for fact in ("2026年11月15日09:30", "¥5,280.00", "账户余额不足", "2027年1月15日零时起失效"):
        assert fact in text


# What docs/letters/ shows: each letter sent for real, to the print queue or by e-mail.
DOC_LETTERS = [
    ("lapse-notice", "P2026000002", "lapse_notice", Channel.EMAIL, "policyholder"),
    ("rescission", "P2026000005", "rescission_notice", Channel.LETTER, "policyholder"),
    ("elderly-paper-letter", "P2026000006", "lapse_notice", Channel.LETTER, "policyholder"),
    ("group-member", "P2026000007", "lapse_notice", Channel.LETTER, "members"),
]


@pytest.mark.parametrize("name, policy, message, channel, scope", DOC_LETTERS)
async def test_the_letters_in_docs_are_the_letters_we_send(sample, name, policy, message,
                                                          channel, scope):
    async with sample.acquire() as conn:
        bundle = await store.load_policy(conn, policy, with_members=False)
        calendar = BusinessCalendar(await store.load_calendar_years(conn))
    # The request the journey makes (the preview's builder), quote and all.
    plan, trigger = make_plan(bundle, calendar, datetime(2026, 11, 26, 8, tzinfo=TZ))
    milestone = next(m for m in plan.milestones if m.kind.value == message)
    slot = next((s for s in milestone.slots if s.channel is channel),
                ChannelSlot(channel=channel, at=milestone.at))
    req = preview_request(bundle, plan, trigger, milestone, slot, scope).model_copy(
        update={"limit": 1})
    async with sandbox_stack(sample) as stack:
        out = await attempt_env().run(stack.activities().send_notifications, req)
        if channel is Channel.EMAIL:
            pdf = stack.sandbox.outbox.entries[0].attachments[0].content
        else:
            pdf = await sample.fetchval("SELECT pdf FROM print_queue")
    assert out.sent == 1
    images = pages_as_images(pdf, scale=1.4)
    pngs = sorted(DOCS.glob(f"{name}-*.png"))
    if os.environ.get("RECORD_LETTERS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        for old in pngs:
            old.unlink()
        for i, image in enumerate(images, start=1):
            image.save(DOCS / f"{name}-{i}.png", optimize=True)
    else:
        assert len(pngs) == len(images), f"docs/letters/{name}-*.png: run with RECORD_LETTERS=1"
