"""The PDF letter: its text, extracted again, is the template's text, in a font that has
the Chinese glyphs; a character the font lacks sends the paper letter to review."""

from __future__ import annotations

import io
import re
from datetime import date

import pytest
from pypdf import PdfReader
from temporalio.testing import ActivityEnvironment

from activities.content import render_for
from activities.letters import missing_glyphs, render_letter_pdf
from domain.models import Channel
from infra import store
from tests.channel_helpers import sandbox_stack, send_request
from tests.journey_helpers import load_sample

RARE = [  # a name with a character outside the font (CJK extension B)
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


async def letter(pool, policy: str, message: str, on: date):
    req = await send_request(pool, policy, message, Channel.LETTER, on)
    async with pool.acquire() as conn:
        bundle = await store.load_policy(conn, policy, with_members=False)
    return render_for(req, bundle, bundle.policyholder, "policyholder")


@pytest.mark.parametrize("policy, message, on", [
    ("P2026000001", "lapse_notice", date(2026, 11, 23)),
    ("P2026000005", "rescission_notice", date(2026, 11, 26)),
    ("P2026000016", "lapse_notice", date(2026, 11, 23)),  # 龘堃: rare but in the font
])
async def test_the_pdf_says_exactly_what_the_template_says(sample, policy, message, on):
    rendered = await letter(sample, policy, message, on)
    pdf = render_letter_pdf(rendered.subject, rendered.body)
    extracted = text_of(pdf.content)
    assert pdf.missing_glyphs == 0 and pdf.pages >= 1
    assert squeeze(extracted) == squeeze(rendered.body)
    assert rendered.subject in extracted


def test_the_font_has_the_glyphs_of_the_templates_and_not_of_extension_b():
    assert missing_glyphs("保险合同效力中止（失效）通知书：¥3,600.00 龘堃欧阳「」—…") == 0
    assert missing_glyphs("司马𠀾") == 1


async def test_a_letter_the_font_cannot_draw_waits_for_review(sample):
    async with sandbox_stack(sample) as stack:
        req = await send_request(sample, "P2026000950", "lapse_notice", Channel.LETTER,
                                 date(2026, 11, 23))
        out = await ActivityEnvironment().run(stack.activities().send_notifications, req)
        row = await sample.fetchrow("SELECT status, missing_glyphs, postal_address "
                                    "FROM print_queue")
    assert out.sent == 1
    assert (row["status"], row["missing_glyphs"]) == ("review", 2)  # salutation and envelope
    assert row["postal_address"].startswith("200120 上海市")
