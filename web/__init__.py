"""The HTTP side: delivery callbacks from providers, the public unreachable notice, and
the app that serves them (with the sandbox providers mounted when they are in use)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from infra.signals import JourneySignals
from web.callbacks import DeliveryCallbacks
from web.notice import PublicNotice
from web.server import serve

__all__ = ["DeliveryCallbacks", "PublicNotice", "build_app", "serve"]


def build_app(pool: asyncpg.Pool, signals: JourneySignals, *, twilio_auth_token: str | None,
              sendgrid_public_key: str | None, public_url: str | None = None,
              sandbox=None) -> web.Application:
    """Callbacks and the public notice, plus the sandbox's provider APIs and outbox when
    `sandbox` is given (`lapse sandbox` runs them all on one port)."""
    app = web.Application(client_max_size=32 * 1024 * 1024)
    DeliveryCallbacks(pool, signals, twilio_auth_token=twilio_auth_token,
                      sendgrid_public_key=sendgrid_public_key,
                      public_url=public_url).add_routes(app)
    PublicNotice(pool).add_routes(app)
    if sandbox is not None:
        sandbox.add_routes(app)
    return app
