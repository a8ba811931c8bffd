"""`lapse demo --exit-when-done` with a few policies, as CI runs it, leaving nothing behind."""

from __future__ import annotations

import psutil

from commands.demo import CAST, demo_time_scale
from infra.embedded import STACK_FILE
from tests.ops_helpers import clean_env, run_lapse


def test_the_time_scale_fits_eight_months_in_about_two_minutes():
    assert 170_000 < demo_time_scale(1.0) < 180_000
    assert demo_time_scale(5000.0) == 5000.0  # LAPSE_TIME_SCALE wins


def test_the_cast_covers_every_case_once_in_order():
    roles = [role.name for _, role in CAST]
    for name in ("pays in grace", "pays after 2nd reminder", "lapses, reinstated",
                 "lapses, refused", "unreachable", "rescinded", "group, not renewed"):
        assert name in roles
    assert len({n for n, _ in CAST}) == len(CAST) == 20


async def test_demo_runs_three_journeys_to_their_end_and_stops_everything(short_tmp):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code, out, err = await run_lapse("demo", "--policies", "3", "--exit-when-done",
                                     env=clean_env(LAPSE_DATA_DIR=str(short_tmp),
                                                   COLUMNS="160"), limit=90)
    assert code == 0, err[-3000:]
    assert "Temporal Web UI  http://127.0.0.1:" in out
    assert "Codec server" in out and "/codec/sign-in with the token in" in out
    assert "demo summary" in out
    for outcome in ("paid 1", "reinstated 1", "rescinded 1"):
        assert outcome in out
    assert not (short_tmp / "demo" / STACK_FILE).exists()
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, f"processes left running: {left}"
