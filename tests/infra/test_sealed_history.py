"""Personal data never reaches Temporal in clear: journeys of several kinds on a dev server
with its own SQLite file, every history dumped raw (the CLI without a codec, and the
database file itself) and searched for every customer's personal data and the texts typed
in; the same histories read in clear through the codec server."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from decimal import Decimal

import pytest
from temporalio.client import Client, WorkflowQueryFailedError

from activities.scan import scan_policies
from contract import workflow_id
from domain.journey import (
    DebitFailedSignal,
    InquiryHandled,
    InquiryKind,
    InquiryReceived,
    Outcome,
    Payment,
    PaymentAnswer,
)
from domain.models import Customer, DebitFailureReason
from domain.policy_file import parse_policy_file
from infra import store
from infra.embedded import TEMPORAL_BIN, EmbeddedTemporal
from infra.settings import Settings
from tests.channel_helpers import eventually
from tests.codec_helpers import DATA_CONVERTER, TEST_KEYS
from tests.journey_helpers import (
    SAMPLE,
    ProviderDouble,
    at,
    begin_journey,
    journey_worker,
    load_sample,
)
from web.codec_server import serve_codec
from workflows.policy_lapse import PolicyLapseWorkflow

COMPRESSED = 10_000_000  # months of journey in seconds
NEVER_PAID, PAID, DEBIT, GROUP, UNREACHABLE = (
    "P2026000001", "P2026000003", "P2026000002", "P2026000007", "P2026000009")
# What an agent and the payment system type in: a phone number, an address, a card number.
CARD = "6222020200112233445"
NOTE = "客户新手机 13912345678，住址 北京市朝阳区建国路99号，下周三前缴费"
REASON = f"客户来电说卡号 {CARD} 已挂失"
TOKEN = "codec-test-token-" + "k" * 32


def personal_values() -> set[str]:
    """Everything personal in the policy file, as it could be written anywhere."""
    parsed = parse_policy_file(SAMPLE.read_text(encoding="utf-8").splitlines())
    values: set[str] = set()
    for customer in parsed.customers.values():
        values |= _of_customer(customer)
    for policy in parsed.policies.values():
        digits = policy.payment_method.card_last4
        if digits:  # four digits alone occur by chance: look for them as card digits
            values |= {f"尾号{digits}", f"****{digits}", f'"{digits}"'}
    return values


def _of_customer(customer: Customer) -> set[str]:
    found = {customer.name, customer.mobile, customer.email, customer.id_number,
             customer.wechat_openid}
    if customer.postal_address is not None:
        a = customer.postal_address
        found |= {a.street, f"{a.province}{a.city}{a.district}{a.street}"}
    if customer.emergency_contact is not None:
        found |= {customer.emergency_contact.name, customer.emergency_contact.phone}
    return {value for value in found if value}


TYPED_IN = {NOTE, "13912345678", "建国路99号", CARD, REASON}


def readable(dump: str) -> str:
    """The CLI's JSON with every string in it, and what each base64 string decodes to (the
    CLI shows some payloads as base64, and would show a leaked one that way too)."""
    texts = [dump]

    def walk(value) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            texts.append(value)
            try:
                texts.append(base64.b64decode(value, validate=True).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                pass

    walk(json.loads(dump))
    return "\n".join(texts)


async def temporal_cli(*args: str) -> str:
    """The `temporal` CLI of the venv, with no configuration but its flags (no codec)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    process = await asyncio.create_subprocess_exec(
        str(TEMPORAL_BIN), *args, "--disable-config-file", "--disable-config-env",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def status_when(handle, check):
    """The status query's answer once `check` holds (the query fails until planned)."""
    async def ask():
        try:
            status = await handle.query(PolicyLapseWorkflow.status)
        except WorkflowQueryFailedError:
            return None
        return status if check(status) else None
    found = await eventually(ask)
    assert found is not None, "the journey did not get there"
    return found


async def run_journeys(client: Client, pool) -> dict[str, Outcome | None]:
    """Never paid, paid in grace, a failed debit with notes, a group, an unreachable
    customer: each the way a user would drive it. The journeys' outcomes."""
    async with pool.acquire() as conn:
        lost = await store.load_policy(conn, UNREACHABLE, with_members=False)
    # The provider refuses its number; it has no e-mail, WeChat or postal address.
    sender = ProviderDouble(permanent={lost.policyholder.mobile})
    async with journey_worker(client, pool, sender) as journeys:
        # Started by the daily scan: its plan is in its input.
        await scan_policies(pool, journeys, at("2026-11-21 08:00").date(),
                            time_scale=COMPRESSED, journey_start=at("2026-11-21 08:00"),
                            policy_numbers=[NEVER_PAID])
        never = journeys.handle(NEVER_PAID)
        group = await begin_journey(journeys, pool, GROUP, at("2026-11-17 08:00"), COMPRESSED)
        unreachable = await begin_journey(journeys, pool, UNREACHABLE, at("2026-11-18 08:00"),
                                          COMPRESSED)

        # Paid in grace, after the first reminder (started after it was due: sent at once).
        paid = await begin_journey(journeys, pool, PAID, at("2026-11-27 11:00"))
        await status_when(paid, lambda s: any(n.status == "sent" for n in s.notifications))
        await paid.signal("payment_received", Payment(
            transaction_id="T-SEALED-1", amount=Decimal("2400.00"), currency="CNY",
            paid_at=at("2026-11-27 12:00")))

        # A failed debit: a second failure typed in with a card number, an inquiry handled
        # with a note holding a phone number and an address, a partial payment by update.
        debit = await begin_journey(journeys, pool, DEBIT, at("2026-11-16 08:00"))
        await debit.signal("debit_failed", DebitFailedSignal(
            failed_at=at("2026-11-16 09:00"), amount=Decimal("5280.00"),
            reason_code=DebitFailureReason.CARD_CANCELLED, reason_text=REASON))
        await debit.signal("inquiry_received", InquiryReceived(
            inquiry_id="Q-SEALED", kind=InquiryKind.HARDSHIP, received_at=at("2026-11-16 09:10")))
        await debit.signal("inquiry_handled", InquiryHandled(
            inquiry_id="Q-SEALED", handled_at=at("2026-11-16 09:30"), note=NOTE))
        answer = await debit.execute_update("record_payment", Payment(
            transaction_id="T-SEALED-2", amount=Decimal("1000.00"), currency="CNY",
            paid_at=at("2026-11-16 09:40")), result_type=PaymentAnswer)
        assert answer.accepted
        await status_when(debit, lambda s: not s.open_inquiries and len(s.debit_failures) == 2)
        await debit.terminate("test over")

        results = await asyncio.gather(never.result(), group.result(), unreachable.result(),
                                       paid.result())
    outcomes = {h.id: r.outcome for h, r in zip((never, group, unreachable, paid), results,
                                                strict=True)}
    outcomes[debit.id] = None  # terminated while still at risk
    return outcomes


@pytest.fixture
async def dev_server_on_file(short_tmp):
    """A dev server of this test alone, its history in a SQLite file we can read."""
    async with EmbeddedTemporal(short_tmp / "temporal", ui=False) as server:
        yield server


async def test_no_personal_data_in_any_history_and_all_of_it_through_the_codec(
        dev_server_on_file, pool, short_tmp):
    await load_sample(pool)
    server = dev_server_on_file
    client = await Client.connect(server.address, data_converter=DATA_CONVERTER)
    outcomes = await run_journeys(client, pool)
    assert outcomes[workflow_id(NEVER_PAID)] is Outcome.FOLLOW_UP_ENDED
    assert outcomes[workflow_id(PAID)] is Outcome.PAID
    assert outcomes[workflow_id(GROUP)] is Outcome.NOT_RENEWED

    wanted = {workflow_id(p) for p in (NEVER_PAID, PAID, DEBIT, GROUP, UNREACHABLE)}

    async def every_run():  # visibility catches up with the last closes
        listed = [(w.id, w.run_id) async for w in client.list_workflows()]
        return listed if wanted <= {run[0] for run in listed} else None

    runs = await eventually(every_run)
    assert runs, "not every journey is listed"
    address = ["--address", server.address, "--namespace", "default"]
    raw = {run: readable(await temporal_cli("workflow", "show", "-w", run[0], "-r", run[1],
                                            "-o", "json", *address)) for run in runs}
    settings = Settings(data_dir=short_tmp, payload_keys=TEST_KEYS, codec_token=TOKEN)
    async with serve_codec(settings) as codec:
        decoded = {run: readable(await temporal_cli(
            "workflow", "show", "-w", run[0], "-r", run[1], "-o", "json", *address,
            "--codec-endpoint", codec.endpoint, "--codec-auth", f"Bearer {TOKEN}"))
            for run in runs}
    await server.stop()  # the database file is complete once the server has closed it
    database = b"".join(path.read_bytes() for path in server.db_file.parent.iterdir()
                        if path.name.startswith(server.db_file.name))

    secrets = personal_values() | TYPED_IN
    for run, text in raw.items():
        assert [value for value in secrets if value in text] == [], run
        # The dump is the real history: search attributes read, payloads are sealed.
        assert run[0].removeprefix("lapse-") in text and "binary/encrypted" in text
    assert [value for value in secrets if value.encode() in database] == []
    assert NEVER_PAID.encode() in database and b"binary/encrypted" in database

    # Opened, a journey planned by the scan (its plan in its input) and left alone holds no
    # personal data either: activities read it from the database when they need it.
    [never_run] = [text for run, text in decoded.items() if run[0] == workflow_id(NEVER_PAID)]
    assert '"preparation"' in never_run and "prepare_journey" not in never_run
    assert [value for value in personal_values() if value in never_run] == []
    # Through the codec server the same histories read in clear, the typed-in texts too.
    [debit_run] = [text for run, text in decoded.items() if run[0] == workflow_id(DEBIT)]
    for typed in (NOTE, REASON, "Q-SEALED", "T-SEALED-2"):
        assert typed in debit_run
    assert all("binary/encrypted" not in text for text in decoded.values())
