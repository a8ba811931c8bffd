"""The HTTP side: delivery callbacks from providers, the public unreachable notice, and
the app that serves them (with the sandbox providers mounted when they are in use)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from infra.journeys import Journeys
from web.callbacks import DeliveryCallbacks
from web.gather import CallChoices, hotline_number
from web.notice import PublicNotice
from web.server import serve

__all__ = ["CallChoices", "DeliveryCallbacks", "PublicNotice", "build_app", "serve"]


def build_app(pool: asyncpg.Pool, journeys: Journeys, *, twilio_auth_token: str | None,
              sendgrid_public_key: str | None, public_url: str | None = None,
              sandbox=None, agent_number: str | None = None) -> web.Application:
    """Callbacks and the public notice, plus the sandbox's provider APIs and outbox when
    `sandbox` is given (`lapse sandbox` runs them all on one port). `agent_number`: where
    a caller who presses 1 is connected (LAPSE_AGENT_NUMBER; default the hotline)."""
    app = web.Application(client_max_size=32 * 1024 * 1024)
    DeliveryCallbacks(pool, journeys, twilio_auth_token=twilio_auth_token,
                      sendgrid_public_key=sendgrid_public_key,
                      public_url=public_url).add_routes(app)
    CallChoices(pool, twilio_auth_token=twilio_auth_token, public_url=public_url,
                agent_number=agent_number or hotline_number()).add_routes(app)
    PublicNotice(pool).add_routes(app)
    if sandbox is not None:
        sandbox.add_routes(app)
    return app
