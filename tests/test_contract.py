"""The contract module against the contract document: every name of docs/contract.md (a
copy of the published CONTRACT.md) is a constant of contract.py, defined there once, and
the callers address journeys by those constants, never by a name of their own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from temporalio.common import SearchAttributeIndexedValueType as Indexed

import contract
from domain.ids import IdError, JourneyId

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
TYPES = {"Keyword": Indexed.KEYWORD, "KeywordList": Indexed.KEYWORD_LIST,
         "Datetime": Indexed.DATETIME, "Double": Indexed.DOUBLE}


def documented_messages() -> dict[str, set[str]]:
    """The rows of the signals table by kind, plus the signals added later."""
    kinds: dict[str, set[str]] = {"signal": set(), "update": set(), "query": set()}
    for name, kind in re.findall(r"^\| `(\w+)` \| (signal|update|query) \|", DOC, re.M):
        kinds[kind].add(name)
    kinds["signal"] |= set(re.findall(r"the\s+signal\s+`(\w+)`", DOC))
    return kinds


def documented_search_attributes() -> dict[str, str]:
    listed = DOC.split("### Search attributes", 1)[1].split("## Command line", 1)[0]
    found = dict(re.findall(r"`([A-Z]\w+)`\s+(KeywordList|Keyword|Datetime|Double)", listed))
    found |= dict(re.findall(r"Search\s+attribute\s+`(\w+)`\s+(Keyword)", DOC))
    return found


def defined_names() -> list[str]:
    """The names contract.py defines: its string constants and search-attribute keys."""
    names = []
    for node in ast.parse((ROOT / "contract.py").read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.Assign | ast.AnnAssign):
            continue
        value = node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            names.append(value.value)
        elif (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
              and value.func.attr.startswith("for_")):
            names.append(value.args[0].value)
    return names


def test_the_document_lists_what_the_test_reads():
    # A reworded contract must fail here, not make the other tests compare empty sets.
    kinds = documented_messages()
    assert len(kinds["signal"]) == 9 and kinds["update"] == {"record_payment"}
    assert kinds["query"] == {"status"} and len(documented_search_attributes()) == 9


def test_every_name_of_the_contract_is_defined_once_in_the_module():
    kinds = documented_messages()
    documented = {*kinds["signal"], *kinds["update"], *kinds["query"],
                  *documented_search_attributes(),
                  re.search(r"Workflow type `(\w+)`", DOC)[1],
                  re.search(r"task queue `([\w-]+)`", DOC)[1]}
    defined = defined_names()
    assert sorted(n for n in defined if n in documented) == sorted(documented)
    assert [n for n in set(defined) if defined.count(n) > 1] == []


def test_the_maps_name_the_documented_signals_update_and_query():
    kinds = documented_messages()
    assert set(contract.SIGNALS) == kinds["signal"]
    assert set(contract.UPDATES) == set(contract.UPDATE_RESULTS) == kinds["update"]
    assert set(contract.QUERIES) == kinds["query"]
    # The update takes what the signal of the same payment takes (CONTRACT.md).
    assert contract.UPDATES[contract.RECORD_PAYMENT] is contract.SIGNALS[
        contract.PAYMENT_RECEIVED]


def test_the_search_attributes_have_the_documented_types():
    assert {k.name: k.indexed_value_type for k in contract.SEARCH_ATTRIBUTES} == {
        name: TYPES[kind] for name, kind in documented_search_attributes().items()}


def test_the_workflow_id_has_the_documented_format_and_the_journey_id_parses_it():
    pattern = re.search(r"workflow id\s+`([^`]+)`", DOC)[1]
    assert contract.workflow_id("P2026000001") == pattern.format(policy_number="P2026000001")
    journey = JourneyId.of(contract.workflow_id("P2026000001"), "0a1b2c3d-0000")
    assert JourneyId.parse(str(journey)) == journey
    assert journey.policy_number == "P2026000001"
    with pytest.raises(IdError, match="must start with"):
        JourneyId.of("P2026000001", "0a1b2c3d-0000")


# Calls that address a journey (or the outbox) by a signal, update or query name.
_ADDRESSING = {"signal", "signal_workflow", "start_with_signal", "enqueue", "execute_update",
               "start_update", "query"}


def test_callers_name_signals_updates_and_queries_only_by_the_contracts_constants():
    """No `signal("contact_updated", ...)` outside the contract: a misspelt literal would
    reach the workflow as a refused signal, where nobody sees it."""
    spelled = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".venv", "tests", "workflows") or rel.name == "contract.py":
            continue  # workflows/: the lead's file defines the handlers (README, Layout)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _ADDRESSING):
                spelled += [f"{rel}:{node.lineno}" for arg in node.args
                            if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    assert spelled == []
