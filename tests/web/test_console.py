"""The agents' console in a real browser (Debian's chromium driven by Playwright): signing
in, finding a sample policy, reading its journey, telling the journey what a customer
said, working the task queue, and the refusals. The journeys run on the dev server with a
worker and the real senders talking to the sandbox providers; one browser for the module."""

from __future__ import annotations

import io
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from pypdf import PdfReader
from temporalio.client import Client

from domain.journey import Payment
from domain.plan import TZ
from infra.db import connect_pool, create_database, drop_database, dsn_with_database
from infra.journeys import Journeys, PaymentSystem
from infra.migrate import migrate
from tests.channel_helpers import sandbox_stack
from tests.codec_helpers import DATA_CONVERTER
from tests.journey_helpers import load_sample, start_journey
from tests.ops_helpers import eventually, load_sample_as, terminate_journeys, unique_prefix
from web import serve
from web.console import JourneyPort, build_console, save_agent
from worker import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "correct-horse-7"
WEB_UI = "http://127.0.0.1:8233"  # only for the link: the test's dev server has no UI
BROWSER_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


@dataclass
class World:
    base: str
    pool: asyncpg.Pool
    journeys: Journeys
    payments: PaymentSystem
    elderly: str  # 赵建国, 76: letter at the first reminder, an agent call at the second
    other: str  # 钱秀英, 77: the same journey; one test closes it with a payment
    journey_key: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(postgres, dev_server) -> AsyncIterator[World]:
    name = f"test_{uuid.uuid4().hex}"
    await create_database(postgres.server_dsn, name)
    url = dsn_with_database(postgres.server_dsn, name)
    await migrate(url)
    pool = await connect_pool(url, max_size=10)
    client = await Client.connect(dev_server, data_converter=DATA_CONVERTER)
    if RECORDING:  # the sample's own numbers for the README's pictures
        await load_sample(pool)
        elderly, other = "P2026000006", "P2026000018"
    else:  # the dev server is shared: journeys of our own
        prefix = unique_prefix()
        await load_sample_as(pool, prefix)
        elderly, other = f"{prefix}-P2026000006", f"{prefix}-P2026000018"
    queue = f"test-{uuid.uuid4().hex[:8]}"
    try:
        async with sandbox_stack(pool, Journeys(client)) as stack:
            worker = build_worker(client, pool, queue, senders=stack.senders,
                                  graceful_shutdown_timeout=timedelta(seconds=1))
            async with worker:
                journeys = Journeys(client, queue)
                # Two seconds before each second reminder (the first goes out at once); the
                # lapse is then weeks away, so the journeys stay open for the whole module.
                for number, start in ((elderly, "2026-12-25 09:59:58"),
                                      (other, "2026-12-28 09:59:58")):
                    await start_journey(journeys, pool, number,
                                        datetime.fromisoformat(start).replace(tzinfo=TZ))

                async def calls_queued() -> bool:
                    return await pool.fetchval(
                        "SELECT count(*) FROM agent_tasks WHERE kind = 'outbound_call'") == 2
                assert await eventually(calls_queued, 30)
                await save_agent(pool, "agent1", PASSWORD, display_name="王坐席")
                await save_agent(pool, "agent2", PASSWORD, display_name="李坐席")
                port = JourneyPort(client, queue, web_ui_url=WEB_UI)
                key = (await port.link(elderly)).records_key
                async with serve(build_console(pool, port)) as base:
                    yield World(base, pool, journeys, PaymentSystem(journeys, pool),
                                elderly, other, key)
    finally:
        await terminate_journeys(client, [elderly, other])
        await pool.close()
        await drop_database(postgres.server_dsn, name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `./run tests` installs it (apt-get install chromium)"
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium, headless=True,
                                           args=BROWSER_ARGS)
        yield launched
        await launched.close()


async def new_page(browser: Browser, width: int = 1280) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": 900},
                                        locale="zh-CN")
    return await context.new_page()


async def sign_in(browser: Browser, world: World, name: str = "agent1") -> Page:
    page = await new_page(browser)
    await page.goto(world.base + "/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button:has-text('登录')")
    await page.wait_for_url("**/find")
    return page


DOCS = Path(__file__).resolve().parents[2] / "docs"
RECORDING = os.environ.get("RECORD_SCREENSHOTS") == "1"


async def keep_screenshot(page: Page, name: str) -> None:
    """With RECORD_SCREENSHOTS=1, save the page for the README (docs/NAME.png)."""
    if not RECORDING:
        return
    await page.evaluate("document.querySelector('details.message')?.setAttribute('open', '')")
    await page.locator("body").screenshot(path=DOCS / f"{name}.png")  # as tall as it is


async def open_policy(page: Page, world: World, number: str) -> None:
    """By the search box every page has."""
    await page.fill("header input[name=policy]", number)
    await page.click("header button:has-text('查找')")
    await page.wait_for_url(f"**/policy/{number}")


async def test_without_signing_in_nothing_is_shown_and_forms_are_refused(browser, world):
    page = await new_page(browser)
    await page.goto(f"{world.base}/policy/{world.elderly}")
    assert "/login" in page.url  # sent to sign in first
    assert "赵建国" not in await page.content()
    posted = await page.request.post(f"{world.base}/policy/{world.elderly}/actions/inquiry",
                                     form={"kind": "complaint", "confirm": "yes"},
                                     max_redirects=0)
    assert posted.status == 401
    # A wrong password: refused, said so, and on record.
    await page.fill("input[name=name]", "agent1")
    await page.fill("input[name=password]", "not-the-password")
    await page.click("button:has-text('登录')")
    await expect(page.locator(".error")).to_have_text("用户名或密码不正确。")
    refused = await world.pool.fetchval(
        "SELECT count(*) FROM console_audit WHERE agent = 'agent1' AND action = 'sign_in' "
        "AND result = 'refused'")
    assert refused >= 1
    await page.context.close()


async def test_find_by_phone_tail_shows_masked_results_then_the_journey(browser, world):
    page = await sign_in(browser, world)
    await page.fill("main input[name=phone]", "0006")
    await page.click("main button:has-text('查找')")
    rows = page.locator("table.list tbody tr")
    await expect(rows).to_have_count(1)
    text = await rows.first.inner_text()
    assert "赵先生" in text and "138****0006" in text and "****0006" in text
    html = await page.content()
    # Masked only: no full name, phone number or policy number anywhere on the page.
    assert "赵建国" not in html and "13800000006" not in html and world.elderly not in html
    await rows.first.locator("button:has-text('打开')").click()
    await page.wait_for_url(f"**/policy/{world.elderly}")

    await expect(page.locator(".stage")).to_contain_text("有失效风险")
    timeline = page.locator(".timeline")
    for title in ("保费应缴日", "首次提醒（正式催告）", "第二次提醒", "宽限期最后一天",
                  "保单效力中止"):
        await expect(timeline).to_contain_text(title)
    await expect(page.locator(".side")).to_contain_text("老年客户")
    await expect(page.locator(".amounts").first).to_contain_text("¥6,800.00")
    link = page.locator("a:has-text('Temporal Web UI')")
    assert re.fullmatch(rf"{WEB_UI}/namespaces/default/workflows/lapse-{world.elderly}/"
                        r"[0-9a-f-]+/history", await link.get_attribute("href"))

    # Each message with its channel, recipient, status in words and the exact text sent.
    record = await world.pool.fetchrow(
        "SELECT body, status FROM notifications WHERE journey_id = $1 "
        "AND milestone = 'first_reminder' AND channel = 'sms'", world.journey_key)
    sms = timeline.locator("details.message", has_text="短信").first
    await expect(sms.locator("summary")).to_contain_text("发给投保人")
    await expect(sms.locator("summary")).to_contain_text(
        {"sent": "已发出", "delivered": "已送达"}[record["status"]])
    await sms.locator("summary").click()
    assert await sms.locator("pre.text").inner_text() == record["body"]

    # The paper letter as the print vendor gets it.
    letter = timeline.locator("details.message", has_text="纸质信函").first
    await letter.locator("summary").click()
    href = await letter.locator("a:has-text('PDF')").get_attribute("href")
    pdf = await page.request.get(world.base + href)
    assert pdf.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(await pdf.body())).pages)
    assert "赵建国" in text

    views = {r["page"] for r in await world.pool.fetch(
        "SELECT page FROM console_page_views WHERE agent = 'agent1' AND policy_number = $1",
        world.elderly)}
    assert views >= {"phone_search", "journey", "letter"}
    await page.context.close()


async def test_an_inquiry_is_confirmed_sent_answered_by_the_journey_and_audited(browser, world):
    page = await sign_in(browser, world)
    await open_policy(page, world, world.elderly)
    await page.check("#actions input[name=kind][value=complaint]")
    await page.click("#actions button:has-text('登记询问')")
    await expect(page.locator(".confirm")).to_contain_text("类别投诉")  # asks first
    reference = await page.locator(".confirm input[name=reference]").get_attribute("value")
    await page.click("button:has-text('确认发送')")
    await page.wait_for_url(f"**/policy/{world.elderly}?answer=*")

    answer = page.locator("#answer")
    await expect(answer).to_contain_text(f"旅程已登记询问 {reference}（投诉）")
    await expect(answer).to_contain_text("前答复客户")
    await expect(page.locator("#inquiries")).to_contain_text(reference)
    await keep_screenshot(page, "console-journey")
    # What the page asks again (htmx) while the journey has not answered yet: once it has,
    # the banner says so and tells the browser to reload the page.
    audit_id = page.url.split("answer=")[1].split("#")[0]
    fragment = await page.request.get(
        f"{world.base}/policy/{world.elderly}/answer?answer={audit_id}",
        headers={"HX-Request": "true"})
    assert fragment.headers.get("hx-refresh") == "true"
    assert f"旅程已登记询问 {reference}" in await fragment.text()
    status = await world.journeys.status(world.elderly)
    [inquiry] = [i for i in status.open_inquiries if i.inquiry_id == reference]
    assert inquiry.kind.value == "complaint"
    audited = await world.pool.fetchrow(
        "SELECT agent, action, detail, result FROM console_audit WHERE reference = $1",
        reference)
    assert dict(audited) == {"agent": "agent1", "action": "inquiry", "detail": "complaint",
                             "result": "sent"}

    # Handled, with a note for the journey (the audit keeps only the reference).
    form = page.locator("#inquiries .inquiry", has_text=reference)
    await form.locator("textarea[name=note]").fill("已解释宽限期与缴费方式")
    await form.locator("button:has-text('标记已处理')").click()
    await page.click("button:has-text('确认发送')")
    await expect(page.locator("#answer")).to_contain_text(f"旅程已关闭询问 {reference}")
    await expect(page.locator("#inquiries")).not_to_contain_text(reference)
    status = await world.journeys.status(world.elderly)
    assert reference not in {i.inquiry_id for i in status.open_inquiries}
    details = await world.pool.fetch(
        "SELECT detail FROM console_audit WHERE action = 'handled' AND reference = $1",
        reference)
    assert [r["detail"] for r in details] == [None]
    await page.context.close()


async def test_a_forged_form_is_refused_and_nothing_reaches_the_journey(browser, world):
    page = await sign_in(browser, world)
    await open_policy(page, world, world.elderly)
    await page.check("#actions input[name=kind][value=question]")
    reference = await page.locator(
        "#actions form:has(input[name=kind]) input[name=reference]").get_attribute("value")
    # As a forged form would: the right fields, a token that is not this session's.
    await page.locator("#actions form:has(input[name=kind]) input[name=csrf]").evaluate(
        "input => input.value = 'forged-token'")
    await page.click("#actions button:has-text('登记询问')")
    await expect(page.locator(".refused")).to_contain_text("表单已失效或来源不明")
    posted = await page.request.post(
        f"{world.base}/policy/{world.elderly}/actions/inquiry", max_redirects=0,
        form={"kind": "question", "reference": reference, "confirm": "yes"})
    assert posted.status == 403  # signed in, but no token at all
    status = await world.journeys.status(world.elderly)
    assert reference not in {i.inquiry_id for i in status.open_inquiries}
    assert not await world.pool.fetchval(
        "SELECT count(*) FROM console_audit WHERE reference = $1", reference)
    await page.context.close()


async def test_take_a_call_see_its_script_and_complete_it_and_the_journey_is_told(
        browser, world):
    page = await sign_in(browser, world)
    await page.click("nav a:has-text('任务队列')")
    row = page.locator("table.tasks tbody tr", has_text=world.elderly)
    await expect(row).to_contain_text("外呼")
    await expect(row).to_contain_text("已超时")  # its call window was on 2026-11-23
    await keep_screenshot(page, "console-tasks")
    await row.locator("button:has-text('领取')").click()
    await page.wait_for_url("**/tasks/task?id=**")
    task_url = page.url
    script = await world.pool.fetchval(
        "SELECT n.body FROM agent_tasks t JOIN notifications n USING (notification_id) "
        "WHERE t.policy_number = $1 AND t.kind = 'outbound_call'", world.elderly)
    assert await page.locator(".script pre.text").inner_text() == script
    await expect(page.locator(".script")).to_contain_text("+8613800000006")  # to dial

    # Another agent sees the task, not the customer or the script.
    other = await sign_in(browser, world, "agent2")
    await other.goto(task_url)
    await expect(other.locator("main")).to_contain_text("只向领取人显示")
    assert "+8613800000006" not in await other.content()
    assert await other.locator(".script").count() == 0
    await other.context.close()

    await page.check("input[name=outcome][value=hardship]")
    await page.click("button:has-text('完成')")
    await expect(page.locator(".confirm")).to_contain_text("客户经济困难")
    await page.click("button:has-text('确认发送')")
    await page.wait_for_url("**/tasks?done=*")
    await expect(page.locator(".answer")).to_contain_text("旅程已登记经济困难询问")
    await expect(page.locator("table.tasks")).not_to_contain_text(world.elderly)
    assert await world.pool.fetchval(
        "SELECT status FROM agent_tasks WHERE policy_number = $1 AND kind = 'outbound_call'",
        world.elderly) == "done"

    async def hardship() -> bool:
        s = await world.journeys.status(world.elderly)
        return "hardship" in s.segments
    assert await eventually(hardship)
    await page.context.close()


async def test_tasks_of_a_closed_journey_are_not_offered(browser, world):
    page = await sign_in(browser, world)
    await page.goto(world.base + "/tasks")
    await expect(page.locator("table.tasks")).to_contain_text(world.other)
    # Taken while the journey is open: the script shows, until the customer pays.
    row = page.locator("table.tasks tbody tr", has_text=world.other)
    await row.locator("button:has-text('领取')").click()
    await page.wait_for_url("**/tasks/task?id=**")
    task_url = page.url
    await expect(page.locator(".script")).to_contain_text("通话脚本")
    status = await world.journeys.status(world.other)
    await world.payments.payment_received(world.other, Payment(
        transaction_id=f"T-{uuid.uuid4().hex[:8]}", amount=status.outstanding,
        currency="CNY", paid_at=status.journey_now))

    async def closed() -> bool:
        return bool(await world.pool.fetchval(
            "SELECT closed_at IS NOT NULL FROM journeys WHERE policy_number = $1",
            world.other))
    assert await eventually(closed)
    await page.goto(task_url)  # the agent's own taken task: nothing left to read out
    await expect(page.locator(".notice")).to_contain_text("该旅程已结束（已缴清保费）")
    assert await page.locator(".script").count() == 0
    assert "+8613800000021" not in await page.content()
    await page.goto(world.base + "/tasks")
    assert world.other not in await page.locator("main").inner_text()
    await open_policy(page, world, world.other)
    await expect(page.locator(".stage")).to_contain_text("已结束：已缴清保费")
    assert await page.locator("#actions").count() == 0  # nothing to tell a closed journey
    await page.context.close()


async def test_the_journey_page_fits_a_tablet(browser, world):
    page = await sign_in(browser, world)
    await page.set_viewport_size({"width": 820, "height": 1180})
    await open_policy(page, world, world.elderly)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 820  # one column, nothing off the side
    side, timeline = page.locator(".side"), page.locator(".timeline")
    assert (await timeline.bounding_box())["y"] > (await side.bounding_box())["y"]
    await page.context.close()


async def test_an_idle_session_ends(browser, world):
    page = await sign_in(browser, world)
    await world.pool.execute("UPDATE console_sessions SET last_seen_at = now() - "
                             "interval '31 minutes' WHERE agent = 'agent1'")
    await page.goto(f"{world.base}/policy/{world.elderly}")
    assert "/login" in page.url
    await page.context.close()
