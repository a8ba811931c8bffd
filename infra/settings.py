"""Settings from environment variables, validated once, with secrets kept out of sight."""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr

from contract import TASK_QUEUE

DEFAULT_NAMESPACE = "default"
DEFAULT_DATA_DIR = ".lapse-data"
DEFAULT_SANDBOX_URL = "http://127.0.0.1:8025"
MAX_TIME_SCALE = 10_000_000

Provider = Literal["twilio", "sendgrid", "wechat", "wecom"]

_HOST_PORT = re.compile(
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$"
)
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_TASK_QUEUE = re.compile(r"^\S{1,1000}$")
_TWILIO_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_TOKEN = re.compile(r"^\S+$")
_WECHAT_TOKEN = re.compile(r"^[A-Za-z0-9]{3,32}$")
_WECOM_CORP_ID = re.compile(r"^w[wx][0-9A-Za-z]{16}$")
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
PAYLOAD_KEY_BYTES = 32  # AES-256
MIN_CODEC_TOKEN_LENGTH = 32


class SettingsError(ValueError):
    """A setting is missing or malformed; the message is one line naming the variable."""

    def __init__(self, variable: str, expected: str) -> None:
        super().__init__(f"{variable}: {expected}")
        self.variable = variable


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TwilioSettings(_Frozen):
    account_sid: str
    auth_token: SecretStr
    from_number: str


class SendGridSettings(_Frozen):
    api_key: SecretStr
    from_email: str
    # The Event Webhook's verification key (base64 DER, from SendGrid's mail settings);
    # without it the callback endpoint refuses every SendGrid event.
    webhook_public_key: str | None = None


class WeChatSettings(_Frozen):
    app_id: str
    app_secret: SecretStr
    # Message kind -> the template id the official account registered for it.
    template_ids: dict[str, str] = Field(default_factory=dict)
    # The token of the account's server configuration, which signs WeChat's event pushes;
    # without it every event is refused.
    server_token: SecretStr | None = None


class WeComSettings(_Frozen):
    corp_id: str
    agent_id: int  # the self-built application that sends the messages
    secret: SecretStr  # that application's secret


class PayloadKey(_Frozen):
    """One payload encryption key: its id travels with every payload it sealed."""

    key_id: str
    secret: SecretBytes


class Settings(_Frozen):
    """Everything the commands and the worker read from the environment."""

    temporal_address: str | None = None
    temporal_namespace: str = DEFAULT_NAMESPACE
    temporal_api_key: SecretStr | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_task_queue: str = TASK_QUEUE
    # A URL may carry a password, so it is kept as a secret like the rest.
    database_url: SecretStr | None = None
    twilio: TwilioSettings | None = None
    sendgrid: SendGridSettings | None = None
    wechat: WeChatSettings | None = None
    wecom: WeComSettings | None = None
    time_scale: float = 1.0
    data_dir: Path = Field(default_factory=lambda: Path(DEFAULT_DATA_DIR).resolve())
    # The public base URL of the callback endpoint, given to providers for delivery status.
    callback_url: str | None = None
    # Where `lapse sandbox` serves the sandbox providers (and callbacks) for local work.
    sandbox_url: str = DEFAULT_SANDBOX_URL
    # Messages per second per channel and worker process; unset channels use the defaults.
    send_rates: dict[str, float] = Field(default_factory=dict)
    # Where a caller who presses 1 during an automated call is connected; None: the hotline.
    agent_number: str | None = None
    # The branch file (home visits); None: the sample, data/branches.json.
    branches_file: Path | None = None
    # Payload encryption keys, newest first (unset: the embedded stack's local key).
    payload_keys: tuple[PayloadKey, ...] = ()
    # What the codec server asks of a caller before it decodes (unset: the local token).
    codec_token: SecretStr | None = None
    # Browser origins (the Web UI's) allowed to call the codec server.
    codec_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read and check every setting; raise `SettingsError` on the first bad one."""
        env = _Env(environ)
        temporal_address = env.get("TEMPORAL_ADDRESS", _check_address)
        api_key = env.secret("TEMPORAL_API_KEY")
        tls_cert, tls_key = _tls_files(env)
        if temporal_address is None:
            for name, value in (
                ("TEMPORAL_API_KEY", api_key),
                ("TEMPORAL_TLS_CERT", tls_cert),
            ):
                if value is not None:
                    raise SettingsError(
                        name, "needs TEMPORAL_ADDRESS (the embedded server takes no credentials)"
                    )
        payload_keys = env.get("LAPSE_PAYLOAD_KEYS", parse_payload_keys) or ()
        if temporal_address is not None and not payload_keys:
            # Every worker and client of a cluster must share the keys: a local one each
            # would seal payloads that no other process can open.
            raise SettingsError("LAPSE_PAYLOAD_KEYS", "must be set when TEMPORAL_ADDRESS is "
                                "(make a key with `lapse codec-server --new-key`)")
        return cls(
            temporal_address=temporal_address,
            temporal_namespace=env.get("TEMPORAL_NAMESPACE", _check_namespace) or DEFAULT_NAMESPACE,
            temporal_api_key=api_key,
            temporal_tls_cert=tls_cert,
            temporal_tls_key=tls_key,
            temporal_task_queue=env.get("TEMPORAL_TASK_QUEUE", _check_task_queue)
            or TASK_QUEUE,
            database_url=env.secret("DATABASE_URL", _check_database_url),
            twilio=_twilio(env),
            sendgrid=_sendgrid(env),
            wechat=_wechat(env),
            wecom=_wecom(env),
            time_scale=env.get("LAPSE_TIME_SCALE", _parse_time_scale) or 1.0,
            data_dir=_parse_data_dir(
                "LAPSE_DATA_DIR", env.raw("LAPSE_DATA_DIR") or DEFAULT_DATA_DIR
            ),
            callback_url=env.get("LAPSE_CALLBACK_URL", _check_http_url),
            sandbox_url=env.get("LAPSE_SANDBOX_URL", _check_http_url) or DEFAULT_SANDBOX_URL,
            send_rates=env.get("LAPSE_SEND_RATES", _parse_send_rates) or {},
            agent_number=env.get("LAPSE_AGENT_NUMBER", _check_e164),
            branches_file=env.get("LAPSE_BRANCHES_FILE", _existing_file),
            payload_keys=payload_keys,
            codec_token=env.secret("LAPSE_CODEC_TOKEN", _check_codec_token),
            codec_origins=env.get("LAPSE_CODEC_ORIGINS", _parse_origins) or (),
        )

    @property
    def providers_sandboxed(self) -> list[Provider]:
        """The providers without credentials, which talk to the local sandbox instead."""
        configured = {"twilio": self.twilio, "sendgrid": self.sendgrid, "wechat": self.wechat,
                      "wecom": self.wecom}
        return [name for name, value in configured.items() if value is None]

    @property
    def temporal_auth(self) -> Literal["api key", "mTLS", "none"]:
        if self.temporal_api_key is not None:
            return "api key"
        return "mTLS" if self.temporal_tls_cert is not None else "none"

    @property
    def temporal_embedded(self) -> bool:
        return self.temporal_address is None

    @property
    def database_embedded(self) -> bool:
        return self.database_url is None

    def describe(self) -> dict[str, object]:
        """What is safe to print: endpoints and choices, never a secret."""
        return {
            "temporal_address": self.temporal_address or "embedded",
            "temporal_namespace": self.temporal_namespace,
            "temporal_auth": self.temporal_auth,
            "task_queue": self.temporal_task_queue,
            "database": redact_dsn(self.database_url.get_secret_value())
            if self.database_url
            else "embedded",
            "providers_sandboxed": self.providers_sandboxed,
            "time_scale": self.time_scale,
            "data_dir": str(self.data_dir),
            "callback_url": self.callback_url,
            "sandbox_url": self.sandbox_url if self.providers_sandboxed else None,
            "send_rates": self.send_rates,
            "payload_keys": [key.key_id for key in self.payload_keys] or "local",
            "codec_origins": list(self.codec_origins),
        }


def redact_dsn(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return parts._replace(netloc=f"{user}@{netloc[-1]}").geturl()


class _Env:
    """Reads variables, treating empty ones as unset, and checks them as it goes."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def get(self, name: str, parse):
        value = self.raw(name)
        return None if value is None else parse(name, value)

    def secret(self, name: str, check=None) -> SecretStr | None:
        value = self.raw(name)
        if value is None:
            return None
        if check is not None:
            check(name, value)
        elif not _TOKEN.match(value):
            raise SettingsError(name, "must not contain spaces")
        return SecretStr(value)

    def group(self, names: tuple[str, ...], unset_means: str = "to use the sandbox") -> bool:
        """True if all of the variables are set, False if none; else an error."""
        missing = [name for name in names if self.raw(name) is None]
        if not missing:
            return True
        if len(missing) == len(names):
            return False
        present = [name for name in names if name not in missing]
        raise SettingsError(
            missing[0],
            f"must be set together with {', '.join(present)} "
            f"(or leave all of {', '.join(names)} unset {unset_means})",
        )


def _check_address(name: str, value: str) -> str:
    match = _HOST_PORT.match(value)
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise SettingsError(name, f"must be host:port, e.g. localhost:7233 (got {value!r})")
    return value


def _check_namespace(name: str, value: str) -> str:
    if not _NAMESPACE.match(value):
        raise SettingsError(name, f"must be letters, digits, '.', '-' or '_' (got {value!r})")
    return value


def _check_task_queue(name: str, value: str) -> str:
    if not _TASK_QUEUE.match(value):
        raise SettingsError(name, "must be a name without spaces")
    return value


def _check_database_url(name: str, value: str) -> str:
    # The value may hold a password: only its scheme is ever shown.
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in ("postgres", "postgresql"):
        shown = f"{scheme}://..." if scheme else "no scheme"
        raise SettingsError(name, f"must be a postgres:// or postgresql:// URL (got {shown})")
    try:
        urlsplit(value).port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise SettingsError(name, "has a malformed host or port") from None
    return value


def _parse_time_scale(name: str, value: str) -> float:
    expected = f"must be a number greater than 0 and at most {MAX_TIME_SCALE:_}"
    try:
        scale = float(value)
    except ValueError:
        raise SettingsError(name, f"{expected} (got {value!r})") from None
    if not math.isfinite(scale) or not 0 < scale <= MAX_TIME_SCALE:
        raise SettingsError(name, f"{expected} (got {value!r})")
    return scale


_CHANNELS = ("sms", "wechat", "wecom", "voice", "agent_call", "email", "letter")


def _check_http_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise SettingsError(name, f"must be an http(s) URL without a query (got {value!r})")
    return value.rstrip("/")


def _pairs(name: str, value: str, keys: tuple[str, ...] | None) -> dict[str, str]:
    """`a=1,b=2` as a dict; with `keys`, only those keys are allowed."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key or not val:
            raise SettingsError(name, f"must be key=value pairs separated by commas (got {item!r})")
        if keys is not None and key not in keys:
            raise SettingsError(name, f"{key!r} is not one of {', '.join(keys)}")
        pairs[key] = val
    return pairs


def _parse_send_rates(name: str, value: str) -> dict[str, float]:
    rates = {}
    for channel, text in _pairs(name, value, _CHANNELS).items():
        try:
            rate = float(text)
        except ValueError:
            rate = -1.0
        if not math.isfinite(rate) or rate <= 0:
            raise SettingsError(name, f"{channel}: must be messages per second > 0 (got {text!r})")
        rates[channel] = rate
    return rates


def _check_e164(name: str, value: str) -> str:
    if not _E164.match(value):
        raise SettingsError(name, f"must be a phone number in E.164 form, e.g. +864008001234 "
                                  f"(got {value!r})")
    return value


def _existing_file(name: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise SettingsError(name, f"must be an existing file (got {str(path)!r})")
    return path.resolve()


def _parse_data_dir(name: str, value: str) -> Path:
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise SettingsError(name, f"must be a folder, not a file (got {str(path)!r})")
    return path


def _tls_files(env: _Env) -> tuple[Path | None, Path | None]:
    names = ("TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY")
    if not env.group(names, "for a server without mTLS"):
        return None, None
    cert, key = (_existing_file(name, env.raw(name)) for name in names)
    return cert, key


def _twilio(env: _Env) -> TwilioSettings | None:
    if not env.group(("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER")):
        return None
    sid = env.raw("TWILIO_ACCOUNT_SID")
    if not _TWILIO_SID.match(sid):
        raise SettingsError(
            "TWILIO_ACCOUNT_SID", f"must be 'AC' followed by 32 hex digits (got {sid!r})"
        )
    number = env.raw("TWILIO_FROM_NUMBER")
    if not _E164.match(number):
        raise SettingsError(
            "TWILIO_FROM_NUMBER",
            f"must be a phone number in E.164 form, e.g. +8610xxxxxxxx (got {number!r})",
        )
    return TwilioSettings(
        account_sid=sid, auth_token=env.secret("TWILIO_AUTH_TOKEN"), from_number=number
    )


def _sendgrid(env: _Env) -> SendGridSettings | None:
    if not env.group(("SENDGRID_API_KEY", "SENDGRID_FROM")):
        return None
    sender = env.raw("SENDGRID_FROM")
    if not _EMAIL.match(sender):
        raise SettingsError(
            "SENDGRID_FROM", f"must be an e-mail address, e.g. notices@example.com (got {sender!r})"
        )
    return SendGridSettings(api_key=env.secret("SENDGRID_API_KEY"), from_email=sender,
                            webhook_public_key=env.raw("SENDGRID_WEBHOOK_PUBLIC_KEY"))


def _wechat(env: _Env) -> WeChatSettings | None:
    if not env.group(("WECHAT_APP_ID", "WECHAT_APP_SECRET")):
        return None
    app_id = env.raw("WECHAT_APP_ID")
    if not _TOKEN.match(app_id):
        raise SettingsError("WECHAT_APP_ID", f"must not contain spaces (got {app_id!r})")
    templates = env.raw("WECHAT_TEMPLATE_IDS")
    token = env.raw("WECHAT_TOKEN")
    if token is not None and not _WECHAT_TOKEN.match(token):
        raise SettingsError("WECHAT_TOKEN", "must be the server configuration's token: 3-32 "
                                            "letters or digits")
    return WeChatSettings(app_id=app_id, app_secret=env.secret("WECHAT_APP_SECRET"),
                          template_ids=_pairs("WECHAT_TEMPLATE_IDS", templates, None)
                          if templates else {},
                          server_token=SecretStr(token) if token else None)


def _wecom(env: _Env) -> WeComSettings | None:
    if not env.group(("WECOM_CORP_ID", "WECOM_AGENT_ID", "WECOM_SECRET")):
        return None
    corp_id = env.raw("WECOM_CORP_ID")
    if not _WECOM_CORP_ID.match(corp_id):
        raise SettingsError("WECOM_CORP_ID", "must be the corp id from WeCom's admin console "
                            f"('ww' and 16 letters or digits) (got {corp_id!r})")
    agent = env.raw("WECOM_AGENT_ID")
    if not agent.isdigit() or not 0 < int(agent) < 2**31:
        raise SettingsError("WECOM_AGENT_ID", "must be the application's AgentId, a positive "
                            f"whole number such as 1000002 (got {agent!r})")
    return WeComSettings(corp_id=corp_id, agent_id=int(agent), secret=env.secret("WECOM_SECRET"))


def parse_payload_keys(name: str, value: str) -> tuple[PayloadKey, ...]:
    """`id1=BASE64,id2=BASE64`, newest first, each a 32-byte AES-256 key.

    An entry is named by its position, never shown, its id neither: in a malformed entry
    (a key pasted without its id, whose base64 ends in '=') the "id" is the key.
    """
    keys: list[PayloadKey] = []
    entries = [part.strip() for part in value.split(",") if part.strip()]
    expected = (f"must be KEY_ID=BASE64 entries separated by commas, each key "
                f"{PAYLOAD_KEY_BYTES} random bytes in base64")
    for position, entry in enumerate(entries, start=1):
        key_id, sep, encoded = (part.strip() for part in entry.partition("="))
        if not sep or not _KEY_ID.match(key_id):
            raise SettingsError(name, f"entry {position}: {expected} (the id: letters, digits, "
                                "'.', '-' or '_', at most 64)")
        try:
            secret = base64.b64decode(encoded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            secret = b""
        if len(secret) != PAYLOAD_KEY_BYTES:
            raise SettingsError(name, f"entry {position}: {expected}")
        if any(key.key_id == key_id for key in keys):
            raise SettingsError(name, f"entry {position}: its key id appears twice")
        keys.append(PayloadKey(key_id=key_id, secret=secret))
    if not keys:
        raise SettingsError(name, expected)
    return tuple(keys)


def _check_codec_token(name: str, value: str) -> str:
    if len(value) < MIN_CODEC_TOKEN_LENGTH or not _TOKEN.match(value):
        raise SettingsError(name, f"must be at least {MIN_CODEC_TOKEN_LENGTH} characters "
                            "without spaces (a random secret)")
    return value


def _parse_origins(name: str, value: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise SettingsError(name, "must be origins like https://temporal.example.com "
                                "(scheme, host and port only) separated by commas "
                                f"(got {origin!r})")
    return origins
