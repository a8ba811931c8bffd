"""Where the SQL lives, as README.md's Layout section says: every SQL statement of the
product is in one of the modules its table "where the SQL lives" names, all under infra/;
activities/, web/, commands/, workflows/ and domain/ call those modules' named queries
and hold none. Tests and benchmarks may seed and read tables themselves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Seeding and reading tables directly is what tests and benchmarks are for.
NOT_PRODUCT = {"tests", "bench", ".venv", ".git", "build"}
NO_SQL = ("activities", "web", "commands", "workflows", "domain")

# A statement, not a word in prose: the keywords are upper case and followed by what
# makes them a statement.
STATEMENT = re.compile(
    r"\bSELECT\b[\s\S]*?\bFROM\b|\bSELECT\s+(pg_\w+|true|1)\b|\bINSERT INTO\s+\w+"
    r"|\bUPDATE\s+\w+(\s+\w+)?\s+SET\b|\bDELETE FROM\s+\w+|\b(CREATE|DROP)\s+(TABLE|DATABASE)\b")


def product_modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py")
                  if not NOT_PRODUCT & set(p.relative_to(ROOT).parts[:1])
                  and "__pycache__" not in p.parts)


def statements(path: Path) -> list[int]:
    """The lines of the string literals in `path` that hold an SQL statement."""
    tree = ast.parse(path.read_text(), str(path))
    return sorted(node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and STATEMENT.search(node.value))


def readme_homes() -> set[str]:
    """The modules README.md's table "where the SQL lives" names."""
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    table = layout.split("**Where the SQL lives.**", 1)[1].split("\n\n", 2)[1]
    return {m for row in table.splitlines() if row.startswith("|")
            for m in re.findall(r"`([\w/]+\.py)`", row.split("|")[-2])}


def test_the_readme_names_every_home_of_sql_and_only_those():
    homes = readme_homes()
    with_sql = {str(p.relative_to(ROOT)) for p in product_modules() if statements(p)}
    assert with_sql == homes, (
        "a module holds SQL that the README's table 'where the SQL lives' does not name "
        "(move the statement into its table family's home), or the table names a module "
        f"without SQL: not named {sorted(with_sql - homes)}, "
        f"named without SQL {sorted(homes - with_sql)}")
    assert all(h.startswith("infra/") for h in homes)


def test_activities_doors_workflows_and_domain_hold_no_sql():
    found = {f"{p.relative_to(ROOT)}:{line}"
             for p in product_modules() if p.relative_to(ROOT).parts[0] in NO_SQL
             for line in statements(p)}
    assert not found, f"SQL outside infra/ (call a named query of its home instead): {found}"


def test_the_check_sees_a_statement_and_not_prose():
    assert STATEMENT.search("UPDATE agent_tasks t\n SET status = 'done'")
    assert STATEMENT.search("SELECT count(*)\nFROM notifications")
    assert STATEMENT.search("SELECT pg_advisory_xact_lock(hashtext($1))")
    assert not STATEMENT.search("Select the customers, then update the set of tasks.")


def test_every_function_docs_architecture_names_exists():
    """The newcomer's map (docs/architecture.md) names the one function that decides each
    rule of MISSION 2-5: every dotted name in it must resolve (a module attribute, or a
    model's field), so that a rename cannot leave the map pointing at nothing."""
    import importlib

    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    names = set(re.findall(r"`((?:domain|activities|workflows|infra|web|commands)"
                           r"\.[A-Za-z_][\w.]*)`", text))
    assert len(names) > 40
    unresolved = []
    for name in sorted(names):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                break
            except ImportError:
                continue
        for part in parts[i:]:
            fields = getattr(obj, "model_fields", {})
            if part in fields:
                obj = fields[part]
            elif hasattr(obj, part):
                obj = getattr(obj, part)
            else:
                unresolved.append(name)
                break
    assert unresolved == []
