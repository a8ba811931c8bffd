"""Running an aiohttp application on a local port, for the sandbox and the callbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0
                ) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL. Port 0 picks a free one.

    No access log: request lines carry recipients, references and WeChat tokens.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
        bound = runner.addresses[0][1]
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
