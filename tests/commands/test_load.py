"""The policy model's validation and `lapse load`: all or nothing, errors by line and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain.models import Customer, Policy, Product, Trigger
from domain.policy_file import PolicyFileError, json_schema, parse_policy_file
from tests.journey_helpers import SAMPLE

ROOT = Path(__file__).resolve().parents[2]


def lapse(*args: str, db_url: str, data_dir: Path,
          settings: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": db_url, "LAPSE_DATA_DIR": str(data_dir),
           **(settings or {})}
    return subprocess.run([sys.executable, str(ROOT / "starter.py"), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def customer(**changes) -> dict:
    return {"record": "customer", "customer_id": "C1", "name": "张伟", "gender": "M",
            "birth_date": "1985-03-12", "mobile": "+8613800138000",
            "id_number": "11010519491231002X", **changes}


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"mobile": "13800138000"}, "mobile", "E.164"),
    ({"mobile": "+8612800138000"}, "mobile", "mainland mobile"),
    ({"id_number": "110105194912310021"}, "id_number", "check digit"),
    ({"id_number": "1101051949"}, "id_number", "18-character"),
    ({"email": "not-an-address"}, "email", "e-mail"),
    ({"birth_date": "1850-01-01"}, "birth_date", "1900"),
    ({"shoe_size": 42}, "shoe_size", "Extra inputs"),
])
def test_customer_validation_names_the_field(changes, field, message):
    with pytest.raises(ValidationError) as err:
        Customer.model_validate(customer(**changes))
    problems = err.value.errors(include_input=False)
    assert [p["loc"][-1] for p in problems] == [field]
    assert message in problems[0]["msg"]


def test_valid_id_number_with_x_check_digit_is_accepted():
    assert Customer.model_validate(customer()).id_number == "11010519491231002X"


def test_short_term_product_cannot_be_reinstatable():
    with pytest.raises(ValidationError, match="cannot be reinstatable"):
        Product(code="ST", name="一年期意外险", kind="short_term")


def test_policy_cannot_have_both_insured_and_members():
    with pytest.raises(ValidationError, match="not both"):
        Policy(policy_number="P0000001", product_code="X", policyholder_id="C1",
               insured_ids=["C2"], member_ids=["C3"], effective_date=date(2020, 1, 1),
               premium=Decimal("1"), due_date=date(2026, 1, 1),
               payment_method={"kind": "manual"})


def test_debit_failed_trigger_needs_its_details():
    with pytest.raises(ValidationError, match="debit_failure"):
        Trigger(kind="debit_failed", policy_number="P0000001", due_date=date(2026, 1, 1),
                amount_due=Decimal("10"))


def test_sample_file_is_valid_and_varied():
    parsed = parse_policy_file(SAMPLE.read_text(encoding="utf-8").splitlines())
    assert len(parsed.policies) == 20
    assert {p.kind.value for p in parsed.products.values()} == {"long_term", "short_term"}
    assert any(len(p.member_ids) == 3 for p in parsed.policies.values())
    assert any(p.rescission for p in parsed.policies.values())
    reasons = {a.reason_code.value for p in parsed.policies.values() for a in p.debit_attempts
               if a.reason_code}
    assert {"insufficient_balance", "card_expired"} <= reasons
    assert any(c.email is None for c in parsed.customers.values())


def test_errors_list_every_bad_line_without_echoing_values():
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    broken = list(lines)
    broken[5] = broken[5].replace('"+86138', '"138')  # a customer's mobile, not E.164
    broken.append('{"record": "policy", "policy_number": "BAD-1"')  # cut short
    broken.append(json.dumps({"record": "policy", "policy_number": "P9999999",
                              "product_code": "NOPE", "policyholder_id": "C0001",
                              "effective_date": "2020-01-01", "premium": "1.00",
                              "due_date": "2026-01-01", "payment_method": {"kind": "manual"}}))
    with pytest.raises(PolicyFileError) as err:
        parse_policy_file(broken, "f.jsonl")
    text = str(err.value)
    assert "line 6 field mobile" in text
    assert f"line {len(lines) + 1}: not valid JSON" in text
    assert f"line {len(lines) + 2} field product_code: unknown product" in text
    assert "13800000001" not in text  # the rejected phone number is not echoed


def test_json_schema_describes_the_three_record_kinds():
    schema = json_schema()
    assert set(schema["discriminator"]["mapping"]) == {"product", "customer", "policy"}


async def test_lapse_load_stores_the_sample(db_url, short_tmp, pool):
    done = lapse("load", str(SAMPLE), db_url=db_url, data_dir=short_tmp)
    assert done.returncode == 0, done.stderr
    assert "loaded 20 policies" in done.stdout
    assert await pool.fetchval("SELECT count(*) FROM policies") == 20
    assert await pool.fetchval("SELECT count(*) FROM policy_insured WHERE role = 'member'") == 3
    # Loading again updates in place: still 20.
    again = lapse("load", str(SAMPLE), db_url=db_url, data_dir=short_tmp)
    assert again.returncode == 0, again.stderr
    assert await pool.fetchval("SELECT count(*) FROM policies") == 20


async def test_lapse_load_with_a_broken_line_changes_nothing(db_url, short_tmp, pool):
    assert lapse("load", str(SAMPLE), db_url=db_url, data_dir=short_tmp).returncode == 0
    before = await pool.fetch("SELECT policy_number, premium, due_date FROM policies "
                              "ORDER BY 1")
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    changed = [line.replace('"3600.00"', '"9999.00"') for line in lines]
    changed.insert(10, '{"record": "customer", "customer_id": "CX", "name": "某",'
                       ' "birth_date": "1990-13-01"}')
    bad = short_tmp / "bad.jsonl"
    bad.write_text("\n".join(changed), encoding="utf-8")
    done = lapse("load", str(bad), db_url=db_url, data_dir=short_tmp)
    assert done.returncode == 2
    assert "line 11 field birth_date" in done.stderr
    assert "nothing was loaded" in done.stderr
    assert await pool.fetch("SELECT policy_number, premium, due_date FROM policies "
                            "ORDER BY 1") == before


async def test_lapse_schema_prints_json(db_url, short_tmp):
    done = lapse("schema", db_url=db_url, data_dir=short_tmp)
    assert done.returncode == 0
    assert "policy_number" in json.loads(done.stdout)["$defs"]["Policy"]["properties"]


async def test_lapse_plan_shows_the_timeline_of_a_loaded_policy(db_url, short_tmp):
    assert lapse("load", str(SAMPLE), db_url=db_url, data_dir=short_tmp).returncode == 0
    done = lapse("plan", "P2026000001", "--as-of", "2026-11-21", db_url=db_url,
                 data_dir=short_tmp)
    assert done.returncode == 0, done.stderr
    # D = Fri 2026-11-20: first reminder Mon 11-23; grace ends 2027-01-19.
    assert "2026-11-23" in done.stdout and "first_reminder" in done.stdout
    assert "grace ends 2027-01-19" in done.stdout
    assert "calendar for 2027 is not loaded" in done.stdout
    as_json = lapse("plan", "P2026000001", "--as-of", "2026-11-21", "--json", db_url=db_url,
                    data_dir=short_tmp)
    plan = json.loads(as_json.stdout)[0]
    assert [m["key"] for m in plan["milestones"]][:3] == [
        "first_reminder", "second_reminder", "lapse_notice"]


async def test_calendar_load_removes_the_fallback_warning(db_url, short_tmp):
    assert lapse("load", str(SAMPLE), db_url=db_url, data_dir=short_tmp).returncode == 0
    fixture = ROOT / "tests" / "data" / "calendar-2027.json"
    done = lapse("calendar", "load", str(fixture), db_url=db_url, data_dir=short_tmp)
    assert done.returncode == 0, done.stderr
    plan = lapse("plan", "P2026000001", "--as-of", "2026-11-21", db_url=db_url,
                 data_dir=short_tmp)
    assert "calendar for 2027 is not loaded" not in plan.stdout


async def test_unknown_policy_is_one_clear_line(db_url, short_tmp):
    done = lapse("plan", "P0000000404", db_url=db_url, data_dir=short_tmp)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("lapse plan: unknown policy P0000000404: ")
    assert "lapse load data/sample-policies.jsonl" in line  # what to do about it


async def test_plan_messages_for_every_sample_policy_break_no_rule(db_url, short_tmp):
    done = lapse("plan", "--policy-file", str(SAMPLE), "--messages", "--as-of", "2026-11-21",
                 db_url=db_url, data_dir=short_tmp)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("messages for policy") == 20
    assert "!!" not in done.stdout  # the preview marks every broken content rule with !!
    # Masked in short channels, full in the formal letter.
    assert "尾号0001" in done.stdout and "保单号：P2026000001" in done.stdout


# --- messages that cannot be rendered are refused at load, never at send ---------------------

PRODUCT = {"record": "product", "code": "LT-NEW", "name": "安泰鑫享终身寿险",
           "kind": "long_term"}


def load_lines(*records: dict) -> list[str]:
    return [json.dumps(r, ensure_ascii=False) for r in records]


def refusal(*records: dict, **kwargs) -> str:
    with pytest.raises(PolicyFileError) as err:
        parse_policy_file(load_lines(*records), "f.jsonl", **kwargs)
    return str(err.value)


def test_a_long_product_name_gets_a_short_name_or_is_refused():
    # 安泰鑫享2026版终身寿险(A款): the derived short name drops the version and bracket.
    ok = parse_policy_file(load_lines({**PRODUCT, "name": "安泰鑫享2026版终身寿险(A款)"}))
    assert ok.products["LT-NEW"].short_name is None  # derived when rendered
    long_name = "安泰" + "鑫享福禄寿康宁" * 8  # 58 characters, no way to shorten it
    text = refusal({**PRODUCT, "name": long_name})
    assert "line 1: product LT-NEW: short_name breaks short_name_too_long" in text
    assert long_name not in text  # the rule is named, never the value
    assert parse_policy_file(load_lines({**PRODUCT, "name": long_name, "short_name": "鑫享终身"}))


def test_a_product_whose_sms_cannot_fit_its_budget_is_refused_naming_the_rule():
    text = refusal({**PRODUCT, "rules": {"sms_segment_budget": 2}})
    assert "product LT-NEW: first_reminder.sms breaks sms_over_budget" in text
    assert "nothing was loaded" in text


def test_an_unspeakable_spoken_name_is_refused():
    text = refusal({**PRODUCT, "spoken_name": "安泰2026版"})
    assert "line 1 field spoken_name" in text and "Chinese characters" in text


def test_a_send_time_outside_a_channel_window_is_refused_in_one_line():
    text = refusal({**PRODUCT, "rules": {"send_time": "21:30"}})
    [line] = [line for line in text.splitlines() if "send_time" in line]
    assert line.strip() == (
        "line 1: product LT-NEW: rules.send_time breaks outside_send_window (21:30 is "
        "outside the window of agent_call 09:00-21:00, email 08:00-21:00, letter "
        "08:00-21:00, sms 08:00-21:00, voice 09:00-21:00, wechat 08:00-21:00)")
    # Before the call window opens, the second reminder would move later: refused too.
    assert "voice 09:00-21:00)" in refusal({**PRODUCT, "rules": {"send_time": "08:30"}})


def test_an_organisation_without_a_short_enough_name_is_refused():
    org = {"record": "customer", "customer_id": "G9", "name": "上海浦东星河联合科技发展有限公司",
           "birth_date": "2001-01-01", "is_organisation": True}
    text = refusal(org)
    assert "line 1 field name: customer G9: name_too_long" in text
    assert "星河" not in text
    assert parse_policy_file(load_lines({**org, "short_name": "星河科技"}))


def test_insurer_settings_that_break_a_rule_are_refused():
    from domain.content import InsurerContact
    from domain.content.preflight import insurer_problems
    assert insurer_problems(InsurerContact()) == []  # what load trusts without checking
    loud = InsurerContact(branch_address="上海市上海市浦东新区世纪大道100号")
    text = refusal(PRODUCT, insurer=loud)
    assert "company settings field insurer:" in text and "repeated_place" in text


async def test_lapse_load_refuses_a_bad_insurer_file_in_one_line(db_url, short_tmp, tmp_path):
    settings = tmp_path / "insurer.json"
    settings.write_text(json.dumps({"hotline": "call us"}), encoding="utf-8")
    done = lapse("load", str(SAMPLE), db_url=db_url, data_dir=short_tmp,
                 settings={"LAPSE_INSURER_FILE": str(settings)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"lapse load: LAPSE_INSURER_FILE: {settings} field hotline: String should match "
        "pattern '^\\d{3,4}(-\\d{3,4}){1,2}$|^\\d{5}$'"]


async def test_lapse_plan_messages_of_a_failed_debit_show_the_debit(db_url, short_tmp):
    assert lapse("load", str(SAMPLE), db_url=db_url, data_dir=short_tmp).returncode == 0
    done = lapse("plan", "P2026000002", "--messages", "--as-of", "2026-11-16", db_url=db_url,
                 data_dir=short_tmp)
    assert done.returncode == 0, done.stderr
    lapse_notice = done.stdout.split("== lapse_notice")[1].split("== follow_up_1")[0]
    assert "variant debit_failed" in lapse_notice and "!!" not in done.stdout
    assert "因2026年11月15日扣款¥5,280.00未成功（余额不足）" in lapse_notice
    follow_up = done.stdout.split("== follow_up_3")[1]
    assert "已于2027年1月15日失效" in follow_up and "合计¥" in follow_up  # the care e-mail
