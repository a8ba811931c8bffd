"""Migrations: once, in order, from concurrent callers, and guarded against edits."""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from domain.plan import TZ
from infra.db import connect_pool
from infra.evidence import verify
from infra.migrate import MIGRATIONS_DIR, MigrationError, load_migrations, migrate

ROOT = Path(__file__).resolve().parents[2]

SLOW_MIGRATIONS = {
    # The sleep keeps the first caller inside the lock while the second one arrives.
    "0001_first.sql": "CREATE TABLE first_table (id integer PRIMARY KEY);\nSELECT pg_sleep(0.5);\n",
    "0002_second.sql": "CREATE TABLE second_table (id integer PRIMARY KEY);\n",
}


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def tables(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        return [row["tablename"] for row in rows]
    finally:
        await conn.close()


async def recorded(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        return [(row["version"], row["name"]) for row in rows]
    finally:
        await conn.close()


async def test_fresh_database_gets_every_migration_then_nothing(empty_db_url):
    names = [m.name for m in load_migrations()]
    assert names[0] == "0001_initial"
    assert await migrate(empty_db_url) == names
    assert {"policies", "notifications", "journeys", "schema_migrations"} <= set(
        await tables(empty_db_url)
    )
    conn = await asyncpg.connect(empty_db_url)
    try:
        row = await conn.fetchrow("SELECT * FROM schema_migrations ORDER BY version LIMIT 1")
    finally:
        await conn.close()
    assert row["checksum"] == load_migrations()[0].checksum
    assert len(row["checksum"]) == 64 and row["applied_at"] is not None

    assert await migrate(empty_db_url) == []
    assert await recorded(empty_db_url) == [(m.version, m.name) for m in load_migrations()]


async def test_concurrent_calls_apply_each_migration_once(empty_db_url, tmp_path):
    directory = write_migrations(tmp_path / "migrations", SLOW_MIGRATIONS)
    results = await asyncio.gather(
        migrate(empty_db_url, directory), migrate(empty_db_url, directory)
    )
    assert sorted(results) == [[], ["0001_first", "0002_second"]]
    assert await tables(empty_db_url) == ["first_table", "schema_migrations", "second_table"]


async def test_concurrent_processes_apply_each_migration_once(empty_db_url, tmp_path):
    directory = write_migrations(tmp_path / "migrations", SLOW_MIGRATIONS)
    script = "import asyncio, sys; from infra.migrate import migrate; from pathlib import Path; "
    script += "print(asyncio.run(migrate(sys.argv[1], Path(sys.argv[2]))))"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, empty_db_url, str(directory),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]  # fmt: skip
    outputs = await asyncio.wait_for(
        asyncio.gather(*(process.communicate() for process in processes)), timeout=30
    )
    assert [process.returncode for process in processes] == [0, 0], outputs
    printed = sorted(stdout.decode().strip() for stdout, _ in outputs)
    assert printed == ["['0001_first', '0002_second']", "[]"]
    assert await recorded(empty_db_url) == [(1, "0001_first"), (2, "0002_second")]


async def test_a_changed_applied_migration_is_refused(empty_db_url, tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    await migrate(empty_db_url, directory)
    with (directory / "0001_initial.sql").open("a") as file:
        file.write("\n-- an innocent-looking edit\n")
    with pytest.raises(
        MigrationError, match=r"^0001_initial\.sql was changed after it was applied"
    ):
        await migrate(empty_db_url, directory)


async def test_a_failing_migration_leaves_no_trace_and_names_its_file(empty_db_url, tmp_path):
    directory = write_migrations(
        tmp_path / "migrations",
        {
            "0001_good.sql": "CREATE TABLE good (id integer);",
            "0002_bad.sql": "CREATE TABLE half_done (id integer);\nSELECT no_such_function();",
        },
    )
    with pytest.raises(MigrationError, match=r"^0002_bad\.sql failed: .*no_such_function"):
        await migrate(empty_db_url, directory)
    assert await tables(empty_db_url) == ["good", "schema_migrations"]
    assert await recorded(empty_db_url) == [(1, "0001_good")]


async def test_a_migration_unknown_to_this_code_is_refused(empty_db_url, tmp_path):
    directory = write_migrations(tmp_path / "new", {"0001_a.sql": "", "0002_b.sql": "SELECT 1;"})
    await migrate(empty_db_url, directory)
    (directory / "0002_b.sql").unlink()
    with pytest.raises(MigrationError, match="has migration 0002_b, which is not among"):
        await migrate(empty_db_url, directory)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1_x.sql": ""}, r"^1_x\.sql: migration files must be named NNNN_name\.sql"),
        (
            {"0001_a.sql": "", "0001_b.sql": ""},
            r"^0001_b\.sql: version 0001 is also used by 0001_a",
        ),
    ],
)
def test_badly_named_migration_files(tmp_path, files, message):
    with pytest.raises(MigrationError, match=message):
        load_migrations(write_migrations(tmp_path / "migrations", files))


async def test_pool_round_trips_jsonb_as_python_values(db_url):
    pool = await connect_pool(db_url)
    try:
        rules = {"grace_days": 60, "rate": Decimal("0.05"), "since": date(2026, 1, 1)}
        await pool.execute(
            "INSERT INTO products (code, name, kind, rules) VALUES ($1, $2, $3, $4)",
            "P1", "Life", "long_term", rules,
        )  # fmt: skip
        # JSON text (e.g. a model's model_dump_json()) is stored as it is, not re-quoted.
        await pool.execute(
            "INSERT INTO products (code, name, kind, rules) VALUES ($1, $2, $3, $4::jsonb)",
            "P2", "Accident", "short_term", '{"grace_days": 30}',
        )  # fmt: skip
        stored = await pool.fetch("SELECT code, rules FROM products ORDER BY code")
    finally:
        await pool.close()
    assert stored[0]["rules"] == {"grace_days": 60, "rate": "0.05", "since": "2026-01-01"}
    assert stored[1]["rules"] == {"grace_days": 30}


async def _one_policy_before(dsn: str, tmp_path: Path, version: int) -> asyncpg.Connection:
    """A connection to the database as the migrations before `version` left it, with one
    product, customer and policy stored."""
    directory = tmp_path / "before"
    directory.mkdir()
    for migration in load_migrations():
        if migration.version < version:
            shutil.copy(migration.path, directory)
    await migrate(dsn, directory)
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "INSERT INTO products (code, name, kind, rules) VALUES ('LT', 'Life', 'long_term', '{}');"
        "INSERT INTO customers (customer_id, name, birth_date) VALUES ('C1', 'Zhang', "
        "'1980-01-01');"
        "INSERT INTO policies (policy_number, product_code, policyholder_id, effective_date, "
        "premium, due_date, status, payment_method) VALUES ('P1', 'LT', 'C1', '2020-01-01', "
        "100, '2026-10-01', 'in_force', '{}')")
    return conn


async def test_0013_keeps_the_receipts_of_records_written_before_it(empty_db_url, tmp_path):
    """Who recorded a record's latest 'delivered' (the formal-demand proof) is read from
    notification_receipts after 0013: the events already stored are in it."""
    conn = await _one_policy_before(empty_db_url, tmp_path, 13)
    try:
        await conn.execute(
            "INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, "
            "channel, recipient_id, recipient_role, status) VALUES "
            "('N1', 'J1', 'P1', 'first_reminder', 'sms', 'C1', 'policyholder', 'delivered'), "
            "('N2', 'J1', 'P1', 'first_reminder', 'email', 'C1', 'policyholder', 'delivered');"
            "INSERT INTO notification_events (notification_id, status, provider_event_id, "
            "occurred_at) VALUES ('N1', 'delivered', NULL, now()), "
            "('N1', 'delivered', 'cb:1', now()), ('N2', 'delivered', 'cb:2', now()), "
            "('N2', 'delivered', NULL, now()), ('N2', 'sent', NULL, now())")
        assert "0013_review_receipts" in await migrate(empty_db_url)
        receipts = await conn.fetch(
            "SELECT notification_id, from_provider FROM notification_receipts "
            "ORDER BY notification_id")
        columns = await conn.fetch("SELECT column_name FROM information_schema.columns "
                                   "WHERE table_name = 'journeys'")
    finally:
        await conn.close()
    assert [tuple(r) for r in receipts] == [("N1", True), ("N2", False)]
    assert "last_milestone" not in {r["column_name"] for r in columns}


async def test_0018_keeps_the_formal_demand_facts_of_records_written_before_it(empty_db_url,
                                                                            tmp_path):
    """The review reads formal demand from report_first_reminders after 0018: the records,
    receipts and tracking numbers already stored are in it, per journey and Shanghai month
    (a record of 1 March 00:30 in Shanghai is March's, though still February in UTC)."""
    conn = await _one_policy_before(empty_db_url, tmp_path, 18)
    try:
        await conn.execute(
            "INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, "
            "channel, recipient_id, recipient_role, status, created_at) VALUES "
            "('N1', 'J1', 'P1', 'first_reminder', 'sms', 'C1', 'policyholder', 'delivered', "
            " '2027-02-10 10:00+08'), "
            "('N2', 'J1', 'P1', 'first_reminder-resend1', 'wechat', 'C1', 'policyholder', "
            " 'failed', '2027-03-01 00:30+08'), "
            "('N3', 'J1', 'P1', 'first_reminder', 'letter', 'C1', 'policyholder', 'sent', "
            " '2027-02-10 10:00+08'), "
            "('N4', 'J1', 'P1', 'first_reminder-emergency', 'sms', 'C9', 'emergency_contact', "
            " 'delivered', '2027-02-10 10:00+08');"
            "INSERT INTO notification_events (notification_id, status, provider_event_id, "
            "occurred_at) VALUES ('N1', 'delivered', 'cb:1', now());"
            "INSERT INTO print_queue (letter_id, policy_number, recipient_id, postal_address, "
            "pdf, pages, tracking_number) VALUES ('N3', 'P1', 'C1', 'x', '\\x00', 1, 'XA1')")
        assert "0018_review_summaries" in await migrate(empty_db_url)
        kept = await conn.fetch(
            "SELECT journey_id, month_start, facts FROM report_first_reminders ORDER BY 2")
    finally:
        await conn.close()
    assert [(r["journey_id"], r["month_start"].astimezone(TZ).date(), r["facts"])
            for r in kept] == [
        ("J1", date(2027, 2, 1), "letter sent - true,sms delivered provider false"),
        ("J1", date(2027, 3, 1), "wechat failed - false")]


async def test_0013_refuses_to_drop_a_last_milestone_that_holds_a_value(empty_db_url, tmp_path):
    """journeys.last_milestone is dropped only while empty: a value is part of a chained
    row, so the migration stops, names the column, and leaves everything as it was."""
    conn = await _one_policy_before(empty_db_url, tmp_path, 13)
    try:
        await conn.execute(
            "INSERT INTO journeys (journey_id, policy_number, trigger, started_at, stage, "
            "last_milestone) VALUES ('J1', 'P1', 'premium_overdue', now(), 'at_risk', "
            "'first_reminder')")
        with pytest.raises(MigrationError, match=r"^0013_review_receipts\.sql failed: "
                           r"journeys\.last_milestone holds values"):
            await migrate(empty_db_url)
        kept = await conn.fetchval("SELECT last_milestone FROM journeys")
        receipts = await conn.fetchval("SELECT to_regclass('notification_receipts')")
    finally:
        await conn.close()
    assert kept == "first_reminder" and receipts is None
    assert (13, "0013_review_receipts") not in await recorded(empty_db_url)


async def test_0019_gives_the_records_written_before_it_their_kind(empty_db_url, tmp_path):
    """After 0019 a record's kind is a column, filled for the records already stored as
    the review counted them before (suffixes and follow-up months aside, a message to the
    emergency contact on its own), and their evidence chain is as it was: no new entry,
    no record that reads as changed."""
    conn = await _one_policy_before(empty_db_url, tmp_path, 19)
    keys = [("N1", "first_reminder", "policyholder"), ("N2", "follow_up_3", "policyholder"),
            ("N3", "first_reminder-resend1", "policyholder"),
            ("N4", "first_reminder-emergency", "emergency_contact"),
            ("N5", "payment_after_lapse-TX9", "policyholder"),
            ("N6", "reinstatement_refused-application:Q1", "policyholder"),
            ("N7", "second_reminder-redial:2", "group_member")]
    try:
        await conn.executemany(
            "INSERT INTO notifications (notification_id, journey_id, policy_number, milestone, "
            "channel, recipient_id, recipient_role, status) "
            "VALUES ($1, 'J1', 'P1', $2, 'sms', 'C1', $3, 'sent')", keys)
        await conn.execute("UPDATE notifications SET status = 'delivered' WHERE "
                           "notification_id = 'N1'")
        chained = await conn.fetch("SELECT * FROM evidence_chain ORDER BY chain_id, seq")
        facts = await conn.fetch("SELECT * FROM report_first_reminders")
        pool = await connect_pool(empty_db_url)
        try:
            before = (await verify(pool)).breaks
            assert "0019_notification_kind" in await migrate(empty_db_url)
            after = (await verify(pool)).breaks
        finally:
            await pool.close()
        kinds = await conn.fetch("SELECT notification_id, kind FROM notifications")
        assert await conn.fetch("SELECT * FROM evidence_chain ORDER BY chain_id, seq") == chained
        assert await conn.fetch("SELECT * FROM report_first_reminders") == facts
        nullable = await conn.fetchval(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'notifications' AND column_name = 'kind'")
    finally:
        await conn.close()
    assert dict(map(tuple, kinds)) == {
        "N1": "first_reminder", "N2": "follow_up", "N3": "first_reminder",
        "N4": "emergency_contact", "N5": "payment_after_lapse", "N6": "reinstatement_refused",
        "N7": "second_reminder"}
    assert after == before and nullable == "NO"
    assert not {b.kind for b in after} & {"record_changed", "change_not_allowed"}
