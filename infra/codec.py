"""Payload encryption: the AES-256-GCM payload codec, where its keys come from, and the one
data converter every client, worker and replayer of the project uses."""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from infra.settings import PAYLOAD_KEY_BYTES, PayloadKey, Settings, parse_payload_keys

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"  # the metadata field naming the key a payload is sealed under
NONCE_BYTES = 12
# The embedded stack's own secrets, in its data folder (mode 0600).
LOCAL_KEYS_FILE = "payload-keys"
LOCAL_TOKEN_FILE = "codec-token"


class PayloadKeyError(ValueError):
    """A payload cannot be opened: its key is not configured, or it does not fit."""


class EncryptionCodec(PayloadCodec):
    """Seals every payload with the newest key and opens it with whichever key sealed it.

    The whole payload (its metadata and data) is sealed, so not even its encoding shows;
    the key id is authenticated with it. Payloads without our encoding were recorded
    before the codec (the replay tests' histories) and pass through unchanged.
    """

    def __init__(self, keys: Sequence[PayloadKey]) -> None:
        if not keys:
            raise ValueError("the codec needs at least one payload key")
        self._newest = keys[0].key_id
        self._ciphers = {key.key_id: AESGCM(key.secret.get_secret_value()) for key in keys}

    @property
    def key_ids(self) -> list[str]:
        """The configured key ids, newest first (never the keys)."""
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(payload) for payload in payloads]

    def seal(self, payload: Payload) -> Payload:
        key_id = self._newest.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._newest].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(
                f"payload sealed under key id {key_id!r}, which is not configured (have "
                f"{', '.join(self._ciphers)}): add that key to LAPSE_PAYLOAD_KEYS")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:],
                                   key_id.encode())
        except InvalidTag:
            raise PayloadKeyError(
                f"payload sealed under key id {key_id!r} does not open with the configured "
                "key of that id: the key is wrong or the payload was altered") from None
        return Payload.FromString(plain)


def data_converter(keys: Sequence[PayloadKey]) -> DataConverter:
    """The project's data converter: pydantic models, every payload sealed, and failure
    messages and stack traces moved into the sealed part of the failure."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def payload_keys(settings: Settings) -> tuple[PayloadKey, ...]:
    """LAPSE_PAYLOAD_KEYS, or the embedded stack's local key (made on first use)."""
    if settings.payload_keys:
        return settings.payload_keys
    path = settings.data_dir / LOCAL_KEYS_FILE
    return parse_payload_keys(str(path), _local_secret(path, new_payload_key))


def codec_token(settings: Settings) -> str:
    """LAPSE_CODEC_TOKEN, or the embedded stack's local token (made on first use)."""
    if settings.codec_token is not None:
        return settings.codec_token.get_secret_value()
    return _local_secret(settings.data_dir / LOCAL_TOKEN_FILE, lambda: secrets.token_urlsafe(32))


def new_payload_key(key_id: str | None = None) -> str:
    """A fresh `KEY_ID=BASE64` entry for LAPSE_PAYLOAD_KEYS; the id is dated by default."""
    key_id = key_id or f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"
    return f"{key_id}={base64.b64encode(os.urandom(PAYLOAD_KEY_BYTES)).decode()}"


def _local_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path`, made and written (0600) if the file does not exist yet.

    Written aside and linked into place, so that processes starting together agree on
    one secret and nobody ever reads half a file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, (make() + "\n").encode())
        finally:
            os.close(descriptor)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            draft.unlink()
    return path.read_text(encoding="utf-8").strip()
