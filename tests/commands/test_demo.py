"""`lapse demo --exit-when-done` with a few policies, as CI runs it, leaving nothing behind."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal

import psutil
from rich.console import Console, Group

from commands.demo import DEMO_LOG, SAMPLE, demo_time_scale
from commands.demo_personas import CAST, Player
from commands.demo_table import address_grid, journeys_table
from domain.journey import JourneyStatus, NextMilestone, NotificationView, Outcome, Stage
from domain.models import Channel
from domain.plan import TZ
from domain.policy_file import parse_policy_file
from infra.embedded import STACK_FILE
from sandbox.faults import DEFAULT_FAULTS
from tests.ops_helpers import clean_env, run_lapse


def test_the_time_scale_fits_eight_months_in_about_two_minutes():
    assert 170_000 < demo_time_scale(1.0) < 180_000
    assert demo_time_scale(5000.0) == 5000.0  # LAPSE_TIME_SCALE wins


def test_the_cast_covers_every_case_once_in_order():
    roles = [role.name for _, role in CAST]
    for name in ("pays in grace", "pays after 2nd", "reinstated", "refused", "unreachable",
                 "rescinded", "group", "elderly", "data held"):
        assert name in roles
    assert len({n for n, _ in CAST}) == len(CAST) == 20


def test_the_sample_personas_are_what_their_scenarios_need():
    parsed = parse_policy_file(SAMPLE.read_text(encoding="utf-8").splitlines())
    holder = {n: parsed.customers[p.policyholder_id] for n, p in parsed.policies.items()}
    role = {n: r.name for n, r in CAST}
    [lost] = [holder[n] for n in holder if role[n] == "unreachable"]
    # No usable channel: a number the sandbox refuses for good, and nothing else.
    assert [f.match for f in DEFAULT_FAULTS] == [lost.mobile]
    assert not (lost.email or lost.wechat_openid or lost.wecom_userid or lost.postal_address)
    assert lost.emergency_contact is not None  # whom the journey asks to pass a message on
    [held] = [holder[n] for n in holder if role[n] == "data held"]
    assert held.id_number[6:14] != held.birth_date.strftime("%Y%m%d")  # the check finds it
    [group] = [p for n, p in parsed.policies.items() if role[n] == "group"]
    people = [parsed.customers[c] for c in (group.policyholder_id, *group.member_ids)]
    assert sum(1 for c in people if c.wecom_userid) >= 2


def _status(stage: Stage, outcome: Outcome | None, sent: int, failed: int,
            nxt: str | None) -> JourneyStatus:
    at = datetime(2027, 12, 31, 10, tzinfo=TZ)
    notes = [NotificationView(id=f"n{i}", milestone="follow_up_6", channel=Channel.SMS,
                              status="sent" if i < sent else "failed", at=at)
             for i in range(sent + failed)]
    return JourneyStatus(
        policy_number="P2026000001", stage=stage, outcome=outcome, trigger="premium_overdue",
        due_date=date(2026, 11, 20), grace_ends_at=date(2027, 1, 19),
        lapses_at=datetime(2027, 1, 20, tzinfo=TZ), amount_due=Decimal("12800.00"),
        amount_paid=Decimal("0"), outstanding=Decimal("12800.00"),
        next_milestone=NextMilestone(name=nxt, at=at, channels=[Channel.SMS]) if nxt else None,
        notifications=notes, open_inquiries=[], reinstatement=None, segments=[],
        journey_now=at)


def test_the_live_view_fits_100_by_40_with_every_journey_sorted_and_the_addresses():
    started = [(n, r) for n, r in CAST if n not in ("P2026000012", "P2026000013",
                                                    "P2026000020")]
    worst = [_status(Stage.CLOSED, Outcome.FOLLOW_UP_ENDED, 18, 38, None),
             _status(Stage.REINSTATING, None, 10, 10, "second_reminder")]
    players = sorted((Player(n, r, status=worst[i % 2], done=["approved"])
                      for i, (n, r) in enumerate(started)), key=lambda p: p.policy_number)
    addresses = [("Temporal Web UI", "http://127.0.0.1:45678/namespaces/default/workflows"),
                 ("Codec server", "http://127.0.0.1:45679/codec  (keys 20261202-3f9a; "
                  "browsers from http://127.0.0.1:45678)"),
                 ("  sign in", "http://127.0.0.1:45679/codec/sign-in with the token in "
                  ".lapse-data/demo/codec-token"),
                 ("Agent console", "http://127.0.0.1:45680  (sign in as demo / demo-console)"),
                 ("Outbox", "http://127.0.0.1:45681/outbox"),
                 ("Other terminals", "LAPSE_DATA_DIR=.lapse-data/demo ./run lapse list   "
                  "(or: status P2026000001)"),
                 ("Worker log", ".lapse-data/demo-worker.log")]
    console = Console(width=100, height=40, record=True, force_terminal=True,
                      color_system=None)
    console.print(Group(address_grid(addresses), journeys_table(players)))
    lines = console.export_text().rstrip("\n").splitlines()
    assert len(lines) + 1 <= 40  # with the demo's first line above
    assert max(len(line) for line in lines) <= 100 and "…" not in "".join(lines)
    text = "\n".join(lines)
    for needle in ("http://127.0.0.1:45678/namespaces", "http://127.0.0.1:45680",
                   "http://127.0.0.1:45681/outbox", "./run lapse list"):
        assert needle in text
    head = next(line for line in lines if line.startswith("policy"))
    assert head.split()[:3] == ["policy", "scenario", "stage"]
    rows = [line.split()[0] for line in lines if line.startswith("P2026")]
    assert rows == sorted(n for n, _ in started)


async def test_demo_runs_three_journeys_to_their_end_and_stops_everything(short_tmp):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code, out, err = await run_lapse("demo", "--policies", "3", "--exit-when-done",
                                     env=clean_env(LAPSE_DATA_DIR=str(short_tmp),
                                                   COLUMNS="160"), limit=90)
    assert code == 0, err[-3000:]
    assert "Temporal Web UI  http://127.0.0.1:" in out
    assert re.search(r"Agent console +http://127\.0\.0\.1:\d+ +\(sign in as demo / demo-console\)",
                     out)
    assert "Codec server" in out and "/codec/sign-in with the token in" in out
    # What another terminal types, as it works there (a bare `lapse` is not on the PATH).
    assert re.search(r"Other terminals +LAPSE_DATA_DIR=\S+ \./run lapse list", out)
    assert "demo summary" in out
    for outcome in ("paid 1", "reinstated 1", "rescinded 1"):
        assert outcome in out
    # The reinstated customer paid the back premium with its interest (P2026000008:
    # ¥1,980.00 and interest) besides the ¥3,600.00 paid in grace.
    collected = re.search(r"premium collected +¥([\d,.]+)", out)
    assert collected and Decimal(collected[1].replace(",", "")) > Decimal("5580.00"), out[-2000:]
    assert not (short_tmp / "demo" / STACK_FILE).exists()
    # The worker's lines are in the log file, a JSON object a line, one per send among
    # them; none on the terminal, where the core's coloured warnings used to break the view.
    lines = [json.loads(line) for line in
             (short_tmp / DEMO_LOG).read_text(encoding="utf-8").splitlines()]
    assert any(line["logger"] == "lapse.sends" for line in lines)
    assert "temporalio_sdk_core" not in out + err and "\x1b[33m" not in err
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, f"processes left running: {left}"
