"""The payload codec: sealed payloads and failures, key rotation on a real journey, unknown
keys, the embedded stack's local key and token, and the codec server's protocol and rules."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import stat
import uuid
from decimal import Decimal

import aiohttp
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.exceptions import ApplicationError

from domain.journey import Outcome, Payment
from infra.codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    PayloadKeyError,
    codec_token,
    data_converter,
    payload_keys,
)
from infra.settings import PayloadKey, Settings
from tests.journey_helpers import ProviderDouble, at, journey_worker, load_sample, start_journey
from tests.ops_helpers import eventually, terminate_journeys
from web.codec_server import CODEC_PATH, SESSION_COOKIE, SIGN_IN_PATH, SIGN_OUT_PATH, serve_codec
from workflows.policy_lapse import PolicyLapseWorkflow

KEY_A = PayloadKey(key_id="key-a", secret=b"a" * 32)
KEY_B = PayloadKey(key_id="key-b", secret=b"b" * 32)
TOKEN = "t" * 40
NOTE = "客户新手机 13912345678，住址 建国路99号"


def clear(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_a_payload_is_sealed_whole_under_the_newest_key_and_opens_again():
    codec = EncryptionCodec([KEY_B, KEY_A])
    [sealed] = await codec.encode([clear(NOTE)])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"key-b"
    assert set(sealed.metadata) == {"encoding", KEY_ID}  # not even the inner encoding shows
    assert NOTE.encode() not in sealed.data and b"json/plain" not in sealed.data
    assert await codec.decode([sealed]) == [clear(NOTE)]
    [again] = await codec.encode([clear(NOTE)])
    assert again.data != sealed.data  # a fresh nonce every time


async def test_an_older_key_still_opens_what_it_sealed():
    [under_a] = await EncryptionCodec([KEY_A]).encode([clear(NOTE)])
    rotated = EncryptionCodec([KEY_B, KEY_A])
    assert await rotated.decode([under_a]) == [clear(NOTE)]
    [under_b] = await rotated.encode([clear(NOTE)])
    assert under_b.metadata[KEY_ID] == b"key-b"


async def test_an_unknown_key_id_is_a_clear_error_naming_it():
    [under_a] = await EncryptionCodec([KEY_A]).encode([clear(NOTE)])
    with pytest.raises(PayloadKeyError) as caught:
        await EncryptionCodec([KEY_B]).decode([under_a])
    message = str(caught.value)
    assert "'key-a'" in message and "key-b" in message and "LAPSE_PAYLOAD_KEYS" in message
    assert base64.b64encode(KEY_A.secret.get_secret_value()).decode() not in message


async def test_a_wrong_key_or_an_altered_payload_does_not_open():
    [sealed] = await EncryptionCodec([KEY_A]).encode([clear(NOTE)])
    impostor = PayloadKey(key_id="key-a", secret=b"z" * 32)
    with pytest.raises(PayloadKeyError, match="'key-a' does not open"):
        await EncryptionCodec([impostor]).decode([sealed])
    altered = Payload()
    altered.CopyFrom(sealed)
    altered.metadata[KEY_ID] = b"key-b"  # the key id is authenticated with the payload
    with pytest.raises(PayloadKeyError, match="'key-b' does not open"):
        await EncryptionCodec([KEY_B, KEY_A]).decode([altered])


async def test_payloads_recorded_before_the_codec_pass_through():
    old = clear("recorded without a codec")
    assert await EncryptionCodec([KEY_A]).decode([old]) == [old]


async def test_failure_messages_and_stack_traces_are_sealed_too():
    converter = data_converter([KEY_A])
    failure = Failure()
    try:
        raise ApplicationError(f"customer said: {NOTE}", type="InquiryError")
    except ApplicationError as error:
        await converter.encode_failure(error, failure)
    assert NOTE not in failure.message and NOTE not in failure.stack_trace
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    assert NOTE.encode() not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert NOTE in str(decoded)


def test_the_embedded_stack_keeps_one_local_key_and_token_private(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    [key] = payload_keys(settings)
    token = codec_token(settings)
    for name in ("payload-keys", "codec-token"):
        assert stat.S_IMODE(os.stat(tmp_path / "data" / name).st_mode) == 0o600
    assert payload_keys(settings) == (key,) and codec_token(settings) == token
    assert len(key.secret.get_secret_value()) == 32 and len(token) >= 32
    configured = Settings(data_dir=tmp_path / "data", payload_keys=(KEY_A,), codec_token=TOKEN)
    assert payload_keys(configured) == (KEY_A,) and codec_token(configured) == TOKEN


async def test_processes_making_the_local_key_at_once_agree_on_one(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    made = await asyncio.gather(*(asyncio.to_thread(payload_keys, settings) for _ in range(8)))
    assert len(set(made)) == 1
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["payload-keys"]  # no drafts


# --- rotation on a real journey -----------------------------------------------------------


async def connect(address: str, *keys: PayloadKey) -> Client:
    return await Client.connect(address, data_converter=data_converter(keys))


async def planned(handle):
    """The status once the journey has its plan (until then its query fails)."""
    async def status():
        try:
            return await handle.query(PolicyLapseWorkflow.status)
        except WorkflowQueryFailedError:
            return None
    return await eventually(status)


def key_ids(history) -> set[bytes]:
    """The key ids of every event's input and result payloads."""
    found = set()
    for event in history.events:
        attributes = getattr(event, event.WhichOneof("attributes"))
        for name in ("input", "result"):
            if name in attributes.DESCRIPTOR.fields_by_name and attributes.HasField(name):
                found |= {p.metadata[KEY_ID] for p in getattr(attributes, name).payloads}
    return found


async def test_a_journey_started_under_key_a_finishes_after_key_b_becomes_the_newest(
        dev_server, pool):
    await load_sample(pool)
    number = "P2026000001"
    queue = f"test-rotation-{uuid.uuid4().hex[:8]}"
    under_a = await connect(dev_server, KEY_A)
    under_b_then_a = await connect(dev_server, KEY_B, KEY_A)
    try:
        # No workflow cache: the next worker replays the journey's history from the start.
        async with journey_worker(under_a, pool, ProviderDouble(), queue,
                                  max_cached_workflows=0) as journeys:
            handle = await start_journey(journeys, pool, number, at("2026-11-21 08:00"))
            before = await planned(handle)  # the plan is in the history, under key A
        async with journey_worker(under_b_then_a, pool, ProviderDouble(), queue) as journeys:
            handle = journeys.handle(number)
            await handle.signal("payment_received", Payment(
                transaction_id="T-ROTATE", amount=Decimal("3600.00"), currency="CNY",
                paid_at=at("2026-11-21 09:00")))
            result = await handle.result()
        history = await handle.fetch_history()
    finally:
        await terminate_journeys(under_b_then_a, [number])
    assert before.stage.value == "at_risk"
    assert result.outcome is Outcome.PAID
    # Sealed under A before the rotation, under B after it, and both open under [B, A].
    assert key_ids(history) == {b"key-a", b"key-b"}
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata[KEY_ID] == b"key-a"
    completed = history.events[-1].workflow_execution_completed_event_attributes
    assert completed.result.payloads[0].metadata[KEY_ID] == b"key-b"
    with pytest.raises(PayloadKeyError, match="'key-a', which is not configured"):
        await data_converter([KEY_B]).decode(started.input.payloads)


# --- the codec server ----------------------------------------------------------------------


@pytest.fixture
async def codec_server(tmp_path):
    settings = Settings(data_dir=tmp_path, payload_keys=(KEY_B, KEY_A), codec_token=TOKEN)
    async with serve_codec(settings, origins=["http://127.0.0.1:8233"]) as running:
        yield running


def protocol(*payloads: Payload) -> dict:
    return {"payloads": [{"metadata": {k: base64.b64encode(v).decode()
                                       for k, v in p.metadata.items()},
                          "data": base64.b64encode(p.data).decode()} for p in payloads]}


def from_protocol(body: dict) -> list[Payload]:
    return [Payload(metadata={k: base64.b64decode(v) for k, v in p["metadata"].items()},
                    data=base64.b64decode(p.get("data", ""))) for p in body["payloads"]]


BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def test_the_codec_server_encodes_and_decodes_for_a_bearer_of_the_token(codec_server):
    async with aiohttp.ClientSession() as http:
        async with http.post(codec_server.endpoint + "/encode", json=protocol(clear(NOTE)),
                             headers={**BEARER, "X-Namespace": "default"}) as response:
            assert response.status == 200
            [sealed] = from_protocol(await response.json())
        assert sealed.metadata[KEY_ID] == b"key-b"
        # The Web UI adds a query to the URL; only the last path part counts.
        async with http.post(codec_server.endpoint + "/decode?preserveStorageRefs=true",
                             json=protocol(sealed), headers=BEARER) as response:
            assert response.status == 200
            assert from_protocol(await response.json()) == [clear(NOTE)]


async def test_without_a_valid_token_nothing_is_decoded_and_the_log_holds_no_payload(
        codec_server, caplog):
    [sealed] = await EncryptionCodec([KEY_A]).encode([clear(NOTE)])
    body = protocol(sealed)
    caplog.set_level(logging.INFO, logger="lapse.codec")
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong-" + TOKEN}, {"Authorization": TOKEN}):
            async with http.post(codec_server.endpoint + "/decode", json=body,
                                 headers=headers) as response:
                assert response.status == 401
                assert "sign in" in (await response.json())["error"]
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert len([r for r in caplog.records if "refused POST /codec/decode" in r.getMessage()]) == 3
    logged = caplog.text
    assert body["payloads"][0]["data"] not in logged and TOKEN not in logged


async def test_cors_lets_only_the_web_ui_origin_in(codec_server):
    async with aiohttp.ClientSession() as http:
        ui = {"Origin": "http://127.0.0.1:8233", "Access-Control-Request-Method": "POST",
              "Access-Control-Request-Headers": "content-type,x-namespace"}
        async with http.options(codec_server.endpoint + "/decode", headers=ui) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8233"
            assert response.headers["Access-Control-Allow-Credentials"] == "true"
            assert "X-Namespace" in response.headers["Access-Control-Allow-Headers"]
        other = {**ui, "Origin": "https://evil.example"}
        async with http.options(codec_server.endpoint + "/decode", headers=other) as response:
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers
        async with http.post(codec_server.endpoint + "/decode", json=protocol(),
                             headers={**BEARER, "Origin": "https://evil.example"}) as response:
            assert response.status == 403


async def test_a_browser_signs_in_reads_with_its_cookie_and_signs_out(codec_server):
    [sealed] = await EncryptionCodec([KEY_A]).encode([clear(NOTE)])
    base = codec_server.url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(base + SIGN_IN_PATH) as response:
            assert response.status == 200 and 'type="password"' in await response.text()
        async with http.post(base + SIGN_IN_PATH, data={"token": "nope"}) as response:
            assert response.status == 403
        async with http.post(base + SIGN_IN_PATH, data={"token": TOKEN}) as response:
            assert response.status == 200
            cookie = response.cookies[SESSION_COOKIE]
            assert cookie["httponly"] and cookie["path"] == CODEC_PATH
            assert cookie["samesite"] == "Strict"
            assert cookie.value != TOKEN
        async with http.post(codec_server.endpoint + "/decode", json=protocol(sealed)) as response:
            assert response.status == 200
            assert from_protocol(await response.json()) == [clear(NOTE)]
        async with http.post(base + SIGN_OUT_PATH) as response:
            assert response.status == 200
        async with http.post(codec_server.endpoint + "/decode", json=protocol(sealed)) as response:
            assert response.status == 401


async def test_bad_requests_get_clear_answers(codec_server):
    [unknown] = await EncryptionCodec([PayloadKey(key_id="key-old", secret=b"o" * 32)]).encode(
        [clear(NOTE)])
    async with aiohttp.ClientSession() as http:
        async with http.post(codec_server.endpoint + "/decode", json=protocol(unknown),
                             headers=BEARER) as response:
            assert response.status == 422
            assert "'key-old'" in (await response.json())["error"]
        async with http.post(codec_server.endpoint + "/decode", data="not json",
                             headers={**BEARER, "Content-Type": "application/json"}) as response:
            assert response.status == 400
        async with http.post(codec_server.endpoint + "/decode", data="{}",
                             headers={**BEARER, "Content-Type": "text/plain"}) as response:
            assert response.status == 415
