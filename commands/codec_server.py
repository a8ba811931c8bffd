"""`lapse codec-server`: Temporal's codec protocol over the payload keys, for the Web UI and
the CLI; `lapse codec-server --new-key` makes a key for LAPSE_PAYLOAD_KEYS."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from commands.common import command, until_stopped
from infra.codec import LOCAL_TOKEN_FILE, new_payload_key, payload_keys
from infra.embedded import read_stack_file
from infra.settings import Settings
from web.codec_server import SIGN_IN_PATH, RunningCodecServer, serve_codec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("codec-server", help="serve the payload codec to the Web UI and the CLI",
                       description="Serve Temporal's remote codec protocol (POST /codec/encode, "
                       "/codec/decode) with the payload keys, so that an operator with the codec "
                       "token reads payloads in the Web UI (after signing in at /codec/sign-in) "
                       "or with `temporal ... --codec-endpoint URL --codec-auth 'Bearer TOKEN'`. "
                       "Browsers are allowed from LAPSE_CODEC_ORIGINS and the running `lapse "
                       "dev`'s Web UI.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--new-key", action="store_true",
                   help="print a new KEY_ID=BASE64 entry for LAPSE_PAYLOAD_KEYS and exit")
    p.set_defaults(func=command(run_codec_server))


async def run_codec_server(args: argparse.Namespace, settings: Settings) -> int:
    if args.new_key:
        print(new_payload_key())
        print("put it first in LAPSE_PAYLOAD_KEYS (newest first) and keep the older keys "
              "after it while any history sealed under them may still be read",
              file=sys.stderr)
        return 0
    running = read_stack_file(settings.data_dir)
    ui = [running.ui_url] if running is not None and running.ui_url else []
    async with serve_codec(settings, args.host, args.port, ui) as codec:
        for label, value in codec_lines(codec, settings):
            print(f"{label:<16} {value}")
        print("Ctrl-C stops it.", flush=True)
        await until_stopped()
    return 0


def codec_lines(codec: RunningCodecServer, settings: Settings) -> list[tuple[str, str]]:
    """What `lapse dev`, the demo and `lapse codec-server` print about the codec server:
    where it is, how to sign in, which keys; never a key or the token."""
    token = ("LAPSE_CODEC_TOKEN" if settings.codec_token is not None
             else str(settings.data_dir / LOCAL_TOKEN_FILE))
    keys = ", ".join(key.key_id for key in payload_keys(settings))
    return [
        ("Codec server", f"{codec.endpoint}  (keys {keys}; " + (
            f"browsers from {', '.join(codec.server.origins)})" if codec.server.origins
            else "no browser origin allowed: set LAPSE_CODEC_ORIGINS)")),
        ("  sign in", f"{codec.url}{SIGN_IN_PATH} with the token in {token}"),
    ]


@asynccontextmanager
async def embedded_codec_server(settings: Settings) -> AsyncIterator[RunningCodecServer | None]:
    """The codec server `lapse dev` and the demo run for their embedded Web UI (none when
    TEMPORAL_ADDRESS points elsewhere: there is no embedded UI to serve)."""
    if not settings.temporal_embedded:
        yield None
        return
    async with serve_codec(settings) as codec:
        yield codec
