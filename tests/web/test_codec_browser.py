"""An operator in a real browser (Debian's chromium, driven by Playwright) reads a journey's
sealed input in the embedded Web UI through the codec server, and only after signing in."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, async_playwright, expect
from temporalio.client import Client

from domain.policy_file import parse_policy_file
from domain.triggers import detect_trigger
from infra.embedded import EmbeddedTemporal
from infra.journeys import Journeys
from infra.settings import Settings
from tests.codec_helpers import DATA_CONVERTER, TEST_KEYS
from tests.journey_helpers import SAMPLE, at
from web.codec_server import SIGN_IN_PATH, serve_codec

TOKEN = "operator-token-" + "o" * 32
POLICY = "P2026000001"
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 20_000


@pytest.fixture
async def ui_with_codec(short_tmp) -> AsyncIterator[tuple[str, str]]:
    """The dev server's Web UI pointed at the codec server (as `lapse dev` runs them), and
    the page of a journey whose input is sealed; yields (journey page URL, codec base URL)."""
    settings = Settings(data_dir=short_tmp, payload_keys=TEST_KEYS, codec_token=TOKEN)
    async with (
        serve_codec(settings) as codec,
        EmbeddedTemporal(short_tmp / "temporal", ui=True, codec_endpoint=codec.endpoint) as ui,
    ):
        codec.server.allow_origin(ui.ui_url)
        client = await Client.connect(ui.address, data_converter=DATA_CONVERTER)
        parsed = parse_policy_file(SAMPLE.read_text(encoding="utf-8").splitlines())
        policy = parsed.policies[POLICY]
        product = parsed.products[policy.product_code]
        trigger = detect_trigger(policy, product, at("2026-11-21 08:00").date())
        # Nobody polls this queue: the journey waits with its input in the history.
        handle = await Journeys(client, "nobody-polls-this").start(
            trigger, product.kind.value, journey_start=at("2026-11-21 08:00"))
        run_id = (await handle.describe()).run_id
        yield (f"{ui.ui_url}/namespaces/default/workflows/{handle.id}/{run_id}/history",
               codec.url)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is missing: `./run tests` installs it (apt-get, as root)")
    return path


async def use_codec_with_credentials(page: Page, endpoint: str) -> None:
    """What the operator does once in the Web UI: Codec Server, the browser setting with
    the same endpoint, include cross-origin credentials (so the sign-in cookie goes along)."""
    await page.locator("[data-testid^=data-encoder-status]").first.click()
    await page.locator("[data-testid=use-local-endpoint-input]").click()
    await page.locator("#data-encoder-endpoint-input").fill(endpoint)
    await page.locator("[data-testid=data-encoder-include-credentials]").click()
    await page.get_by_role("button", name="Apply").click()


async def test_an_operator_reads_a_journey_input_only_after_signing_in(ui_with_codec):
    journey_page, codec_url = ui_with_codec
    decode_statuses: list[int] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), headless=True,
            args=[*(["--no-sandbox"] if os.geteuid() == 0 else []), *CHROMIUM_ARGS])
        try:
            page = await browser.new_page()
            page.on("response", lambda r: decode_statuses.append(r.status)
                    if "/codec/decode" in r.url else None)
            input_block = page.get_by_text('"amount_due"')
            codec_failed = page.locator("[data-testid=data-encoder-status-error]")

            # Not signed in: the codec refuses, the UI shows the input sealed.
            async with page.expect_response(lambda r: "/codec/decode" in r.url) as refused:
                await page.goto(journey_page)
            assert (await refused.value).status == 401
            await expect(codec_failed).to_be_visible(timeout=WAIT_MS)
            await use_codec_with_credentials(page, codec_url + "/codec")
            async with page.expect_response(lambda r: "/codec/decode" in r.url) as still:
                await page.reload()
            assert (await still.value).status == 401  # credentials, but no session yet
            await expect(codec_failed).to_be_visible(timeout=WAIT_MS)
            assert await input_block.count() == 0

            # Signing in with the token, as the operator would, on the codec server's page.
            await page.goto(codec_url + SIGN_IN_PATH)
            await page.fill("input[name=token]", "not-the-token")
            await page.click("button[type=submit]")
            await expect(page.get_by_role("heading")).to_have_text("Wrong token")
            await page.fill("input[name=token]", TOKEN)
            await page.click("button[type=submit]")
            await expect(page.get_by_role("heading")).to_have_text("Signed in")

            decode_statuses.clear()
            await page.goto(journey_page)
            await expect(input_block.first).to_be_visible(timeout=WAIT_MS)
            body = await page.inner_text("body")
        finally:
            await browser.close()
    assert '"amount_due": "3600.00"' in body and f'"policy_number": "{POLICY}"' in body
    assert decode_statuses and set(decode_statuses) == {200}
