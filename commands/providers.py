"""The sandbox providers, callbacks and public notice on a free local port, for dev and demo."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
from temporalio.client import Client

import sandbox as sb
from activities.wechat_sender import WECHAT_EVENTS_PATH
from infra.deliveries import policies_for_refs
from infra.journeys import Journeys
from web import build_app, serve
from web.callbacks import SENDGRID_EVENTS_PATH


@contextlib.asynccontextmanager
async def local_providers(pool: asyncpg.Pool, client: Client) -> AsyncIterator[str]:
    """Serve the sandbox (Twilio, SendGrid, WeChat, outbox) with the callback endpoint that
    its signed delivery callbacks reach; yields the base URL."""
    async def describe(refs: list[str]) -> dict[str, str]:
        # The outbox groups messages by policy: providers only ever see opaque references.
        async with pool.acquire() as conn:
            return await policies_for_refs(conn, refs)

    box = sb.Sandbox(faults=list(sb.DEFAULT_FAULTS), describe=describe)
    app = build_app(pool, Journeys(client), twilio_auth_token=sb.TWILIO_AUTH_TOKEN,
                    sendgrid_public_key=box.public_key, sandbox=box)
    async with serve(app) as url:
        box.event_webhook_url = url + SENDGRID_EVENTS_PATH
        box.wechat_server_url = url + WECHAT_EVENTS_PATH
        yield url
