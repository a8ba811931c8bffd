"""Branches: the file and its loader, and the nearest-branch rule for home visits."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.branches import Branch, Branches, nearest_branch, place
from domain.models import PostalAddress
from infra.branches import SAMPLE_BRANCHES, BranchFileError, load_branches

BRANCHES = load_branches()


def address(province: str, city: str, district: str = "") -> PostalAddress:
    return PostalAddress(province=province, city=city, district=district, street="某路1号",
                         postcode="100000")


@pytest.mark.parametrize(("where", "expected"), [
    (address("北京市", "北京市", "朝阳区"), "BJ-CY"),       # same district
    (address("北京", "北京", "海淀"), "BJ-HD"),             # written without suffixes
    (address("北京市", "北京市", "丰台区"), "HQ"),          # same city: the first listed
    (address("广东省", "深圳市", "南山区"), "GD-SZ"),       # same city
    (address("广东省", "佛山市", "禅城区"), "GD-GZ"),       # same province: the first listed
    (address("浙江省", "杭州市", "西湖区"), "HQ"),          # nothing near: the head office
    (address("四川省", "成都市"), "SC-CD"),                # no district given
    (None, "HQ"),                                          # no postal address at all
])
def test_nearest_branch_by_district_city_province_then_head_office(where, expected):
    assert nearest_branch(where, BRANCHES).code == expected


names = st.sampled_from(["北京市", "上海市", "广东省", "四川省", "浙江省", "广州市", "深圳市",
                         "成都市", "朝阳区", "海淀区", "天河区", "锦江区", "西湖区", ""])


@given(province=names.filter(bool), city=names.filter(bool), district=names)
def test_the_branch_chosen_is_never_farther_than_another(province, city, district):
    where = address(province, city, district)
    chosen = nearest_branch(where, BRANCHES)

    def closeness(b: Branch) -> int:
        same = [place(getattr(b, f)) == place(getattr(where, f))
                for f in ("province", "city", "district")]
        if all(same) and district:
            return 3
        return 2 if all(same[:2]) else (1 if same[0] else 0)

    best = max(closeness(b) for b in BRANCHES.branches)
    assert chosen in BRANCHES.branches
    assert closeness(chosen) == best or (best == 0 and chosen.head_office)


def test_the_sample_file_has_one_head_office():
    assert load_branches(SAMPLE_BRANCHES).head_office.code == "HQ"


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d["branches"][1].update(head_office=True), "exactly one branch"),
    (lambda d: d["branches"][2].update(phone="call us"), "branches.2.phone"),
    (lambda d: d["branches"][3].pop("city"), "branches.3.city"),
    (lambda d: d["branches"].append(dict(d["branches"][1])), "same code"),
])
def test_a_bad_branch_file_is_one_line_naming_the_entry(tmp_path, change, problem):
    data = json.loads(SAMPLE_BRANCHES.read_text(encoding="utf-8"))
    secret_phone = data["branches"][2]["phone"]
    change(data)
    bad = tmp_path / "branches.json"
    bad.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BranchFileError) as err:
        load_branches(bad)
    assert problem in str(err.value) and "\n" not in str(err.value)
    assert secret_phone not in str(err.value)


def test_an_unreadable_branch_file_is_named(tmp_path):
    with pytest.raises(BranchFileError, match="cannot be read"):
        load_branches(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{", encoding="utf-8")
    with pytest.raises(BranchFileError, match="not JSON"):
        load_branches(tmp_path / "x.json")
    assert isinstance(BRANCHES, Branches)
