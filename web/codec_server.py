"""The codec server: Temporal's remote codec protocol (`POST …/codec/encode` and
`…/codec/decode`, a JSON `{"payloads": [...]}` body) over the project's payload codec, so
that the Web UI and the CLI show clear payloads to an authorised operator, and to nobody else.

Who is authorised: a caller with `Authorization: Bearer <token>` (the CLI's `--codec-auth`),
or a browser that signed in on `…/codec/sign-in` with that token and holds the session
cookie it set (HttpOnly, path /codec only). The Web UI sends that cookie when its codec
setting "include cross-origin credentials" is on. Browsers are also held to the allowed
origins (CORS); anything else gets 401 or 403 and one log line without payloads or tokens.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from infra.codec import EncryptionCodec, PayloadKeyError, codec_token, payload_keys
from infra.settings import Settings
from web.server import serve

log = logging.getLogger("lapse.codec")

CODEC_PATH = "/codec"
SIGN_IN_PATH = f"{CODEC_PATH}/sign-in"
SIGN_OUT_PATH = f"{CODEC_PATH}/sign-out"
SESSION_COOKIE = "lapse_codec_session"
SESSION_SECONDS = 8 * 3600
MAX_BODY = 16 * 1024 * 1024  # a few events' payloads at Temporal's 2 MB limit each
_ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization, Authorization-Extras"


class CodecServer:
    """The protocol, the sign-in and the rules of who may use them (in memory: a restart
    signs every browser out)."""

    def __init__(self, codec: EncryptionCodec, token: str, origins: Iterable[str] = ()) -> None:
        self._codec = codec
        self._token = token.encode()
        self._origins = set(origins)
        self._sessions: dict[str, float] = {}  # session id -> when it expires (monotonic)

    def allow_origin(self, origin: str) -> None:
        """Let a browser page from `origin` (the Web UI's) call the codec."""
        self._origins.add(origin.rstrip("/"))

    @property
    def origins(self) -> list[str]:
        return sorted(self._origins)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._cors])
        for operation in ("encode", "decode"):
            app.router.add_post(f"{CODEC_PATH}/{operation}", self._convert)
            app.router.add_route("OPTIONS", f"{CODEC_PATH}/{operation}", self._preflight)
        app.router.add_get(SIGN_IN_PATH, self._sign_in_page)
        app.router.add_post(SIGN_IN_PATH, self._sign_in)
        app.router.add_post(SIGN_OUT_PATH, self._sign_out)
        return app

    # --- the protocol ---------------------------------------------------------------------

    async def _convert(self, request: web.Request) -> web.Response:
        operation = request.path.rsplit("/", 1)[-1]
        if not self._authorised(request):
            _refused(request, 401, "no valid token or session")
            return _error(401, f"sign in at {SIGN_IN_PATH} or send Authorization: Bearer "
                          "<token>", headers={"WWW-Authenticate": 'Bearer realm="codec"'})
        if request.content_type != "application/json":
            return _error(415, "send the payloads as application/json")
        try:
            payloads = _payloads_from(await request.text())
        except ValueError:
            return _error(400, 'the body must be {"payloads": [...]}, as Temporal\'s codec '
                          "protocol has it")
        try:
            if operation == "encode":
                converted = await self._codec.encode(payloads)
            else:
                converted = await self._codec.decode(payloads)
        except PayloadKeyError as error:
            log.warning("codec: %s refused: %s", operation, error,
                        extra={"namespace": request.headers.get("X-Namespace")})
            return _error(422, str(error))
        return web.json_response(
            {"payloads": [json_format.MessageToDict(payload) for payload in converted]})

    async def _preflight(self, request: web.Request) -> web.Response:
        # The middleware adds the CORS headers for an allowed origin; others get none.
        if request.headers.get("Origin") not in self._origins:
            _refused(request, 403, "origin not allowed")
            return web.Response(status=403)
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
        })

    @web.middleware
    async def _cors(self, request: web.Request, handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        protocol = request.path in (f"{CODEC_PATH}/encode", f"{CODEC_PATH}/decode")
        if protocol and request.method == "POST" and origin and origin not in self._origins:
            # A page of another site, even one the operator signed in from: no answer.
            _refused(request, 403, "origin not allowed")
            return _error(403, "this origin may not use the codec server")
        response = await handler(request)
        if protocol and origin in self._origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        return response

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential:
            return hmac.compare_digest(credential.strip().encode(), self._token)
        session = request.cookies.get(SESSION_COOKIE)
        expires = self._sessions.get(session) if session else None
        return expires is not None and expires > time.monotonic()

    # --- signing in -----------------------------------------------------------------------

    async def _sign_in_page(self, request: web.Request) -> web.Response:
        return _page("Sign in to read payloads", _SIGN_IN_FORM)

    async def _sign_in(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", "")).strip().encode()
        if not hmac.compare_digest(token, self._token):
            _refused(request, 403, "sign-in with a wrong token")
            return _page("Wrong token", "<p>That is not the codec token.</p>" + _SIGN_IN_FORM,
                         status=403)
        now = time.monotonic()
        self._sessions = {sid: until for sid, until in self._sessions.items() if until > now}
        session = secrets.token_urlsafe(32)
        self._sessions[session] = now + SESSION_SECONDS
        endpoint = f"{_scheme(request)}://{request.host}{CODEC_PATH}"
        response = _page("Signed in", _SIGNED_IN.format(
            endpoint=html.escape(endpoint), hours=SESSION_SECONDS // 3600, sign_out=SIGN_OUT_PATH))
        secure = _scheme(request) == "https"
        # Cross-site UIs (Temporal Cloud) need SameSite=None, which browsers take only
        # with Secure; over plain http (a local UI on the same host) Strict is enough.
        response.set_cookie(SESSION_COOKIE, session, max_age=SESSION_SECONDS, path=CODEC_PATH,
                            httponly=True, secure=secure,
                            samesite="None" if secure else "Strict")
        log.info("codec: a browser signed in", extra={"origin": request.headers.get("Origin")})
        return response

    async def _sign_out(self, request: web.Request) -> web.Response:
        self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response = _page("Signed out", "<p>Payloads stay sealed in this browser.</p>")
        response.del_cookie(SESSION_COOKIE, path=CODEC_PATH)
        return response


def _payloads_from(body: str) -> list[Payload]:
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("payloads", []), list):
            raise ValueError("not a payloads object")
        return [json_format.ParseDict(item, Payload()) for item in data.get("payloads", [])]
    except (json.JSONDecodeError, json_format.ParseError, TypeError, AttributeError) as error:
        raise ValueError("malformed payloads") from error


def _scheme(request: web.Request) -> str:
    # Behind a TLS-terminating proxy the request itself is plain http.
    return request.headers.get("X-Forwarded-Proto", request.scheme)


def _refused(request: web.Request, status: int, why: str) -> None:
    log.warning("codec: refused %s %s (%d, %s)", request.method, request.path, status, why,
                extra={"origin": request.headers.get("Origin"),
                       "namespace": request.headers.get("X-Namespace")})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} - '
            f"lapse codec server</title></head><body><h1>{title}</h1>{body}</body></html>")
    return web.Response(text=text, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


_SIGN_IN_FORM = f"""
<p>Payloads in Temporal are sealed. Sign in with the codec token to read them in the
Temporal Web UI from this browser.</p>
<form method="post" action="{SIGN_IN_PATH}">
<label>Codec token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Sign in</button>
</form>"""

_SIGNED_IN = """
<p>This browser may read payloads for {hours} hours (or until the codec server restarts).</p>
<p>In the Temporal Web UI, open <b>Codec Server</b> (top right), choose <b>Use my browser
setting</b>, set the endpoint <code>{endpoint}</code>, switch on <b>Include cross-origin
credentials</b> and apply. Sealed payloads then read in clear.</p>
<form method="post" action="{sign_out}"><button type="submit">Sign out</button></form>"""


@dataclass(frozen=True)
class RunningCodecServer:
    server: CodecServer
    url: str  # the base URL; the codec endpoint is url + CODEC_PATH

    @property
    def endpoint(self) -> str:
        """What the Web UI (`--ui-codec-endpoint`) and the CLI (`--codec-endpoint`) take."""
        return self.url + CODEC_PATH


@asynccontextmanager
async def serve_codec(settings: Settings, host: str = "127.0.0.1", port: int = 0,
                      origins: Iterable[str] = ()) -> AsyncIterator[RunningCodecServer]:
    """The codec server on the settings' keys and token until the block ends."""
    server = CodecServer(EncryptionCodec(payload_keys(settings)), codec_token(settings),
                         [*settings.codec_origins, *origins])
    async with serve(server.app(), host, port) as url:
        yield RunningCodecServer(server, url)
