"""How long the monthly review's queries take on a million notification rows.

Seeds an embedded PostgreSQL (deleted afterwards, unless --data keeps it) with a year of
synthetic journeys and their records, then times each named query of
infra/report_queries.py for the last month with the whole tables its plan reads, and the
whole review against the goal (< 1 s) and a baseline of the same run: one pass over the
tables it counts, read whole. It prints timings and asserts none: they depend on the machine.

    .venv/bin/python bench/report_bench.py                      # 1,000,000 notifications
    .venv/bin/python bench/report_bench.py --data /tmp/review-1m   # keep the seeded data
    .venv/bin/python bench/report_bench.py --notifications 200000 --chart docs/monthly-review.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domain.calendar import add_months  # noqa: E402
from domain.ids import MilestoneKey as Key  # noqa: E402
from domain.models import MessageKind as Kind  # noqa: E402
from domain.plan import TZ  # noqa: E402
from domain.report import (  # noqa: E402
    DEFAULT_RULES,
    build_report,
    months_ending,
    parse_month,
    record_kind,
    window,
)
from infra.db import connect_pool  # noqa: E402
from infra.embedded import EmbeddedPostgres  # noqa: E402
from infra.migrate import migrate  # noqa: E402
from infra.report_queries import (  # noqa: E402
    FUNNEL,
    MONTHLY,
    REPEATED_DEBIT_FAILURES,
    REVIEW_SETTINGS,
    TREND,
    fetch_records,
)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛"]
TRIGGERS = [("premium_overdue", 0.55), ("debit_failed", 0.30), ("renewal_unpaid", 0.10),
            ("rescission", 0.05)]
DEBIT_REASONS = [("insufficient_balance", 0.6), ("card_expired", 0.2),
                 ("card_cancelled", 0.1), ("account_mismatch", 0.1)]
# channel: (accepted, delivered of accepted, error codes) in the first month; better later.
CHANNELS = {
    "sms": (0.95, 0.93, ["invalid_number", "carrier_rejected", "unreachable"]),
    "wechat": (0.90, 0.88, ["user_unsubscribed", "template_blocked"]),
    "voice": (0.78, 0.80, ["no_answer", "busy"]),
    "agent_call": (0.85, 0.0, ["no_answer"]),
    "email": (0.96, 0.65, ["mailbox_full", "invalid_address"]),
    "letter": (0.99, 0.0, ["address_unknown"]),
}
NOTIFICATION_COLUMNS = ("notification_id", "journey_id", "policy_number", "milestone", "channel",
                        "recipient_id", "recipient_role", "status", "error_code", "attempts",
                        "created_at", "updated_at", "kind")
EVENT_COLUMNS = ("notification_id", "status", "provider_event_id", "occurred_at")
BATCH = 100_000


def pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


class Seeder:
    """A year of journeys ending with the report month, as plain rows for COPY."""

    def __init__(self, month: date, rng: random.Random):
        self.rng = rng
        self.months = months_ending(month, 12)
        self.now = window(month, 1)[1]  # the records stop at the end of the report month
        self.journeys: list[tuple] = []
        self.inquiries: list[tuple] = []
        self.debits: list[tuple] = []
        self.customers: list[tuple] = []
        self.policies: list[tuple] = []

    def _party(self, n: int) -> tuple[str, str]:
        rng = self.rng
        cid, pol = f"C{n:07d}", f"P{n:09d}"
        gender = rng.choice("MF")
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(["", *GIVEN])
        self.customers.append((cid, name, gender, date(1960 + n % 40, 1 + n % 12, 1)))
        product = "ST" if rng.random() < 0.15 else "LT"
        self.policies.append((pol, product, cid, date(2020, 1, 1), 1200, date(2026, 1, 1),
                              "in_force", json.dumps({
                                  "kind": "bank_debit", "bank_name": "工商银行",
                                  "card_last4": f"{rng.randrange(10_000):04d}"})))
        return cid, pol

    def _send(self, jid: str, pol: str, cid: str, key: Key, channel: str, at: datetime,
              progress: float, role: str = "policyholder") -> tuple | None:
        if at >= self.now:
            return None
        rng = self.rng
        accepted, delivered, errors = CHANNELS[channel]
        accepted = min(accepted + 0.03 * progress, 0.995)
        roll, error = rng.random(), None
        if roll < 0.004:
            status = rng.choice(["queued", "unknown"])
        elif roll < accepted:
            confirmed = delivered and delivered + 0.05 * progress  # none without callbacks
            status = "delivered" if rng.random() < confirmed else "sent"
        else:
            status = "bounced" if channel == "email" else "failed"
            error = rng.choice(errors)
        at += timedelta(seconds=rng.randrange(3600))
        # The kind as the product writes it with the record (infra/deliveries.py).
        return (f"{jid}/{key}/{channel}/{cid}", jid, pol, key, channel, cid, role, status,
                error, 1, at, at, record_kind(key, role).value)

    def journey(self, n: int) -> list[tuple]:
        """One journey's row and the notification rows of what happened by `now`."""
        rng = self.rng
        cid, pol = self._party(n)
        index = rng.randrange(len(self.months))
        first = datetime.combine(self.months[index], datetime.min.time(), TZ)
        started = first + timedelta(seconds=rng.randrange(
            int((datetime.combine(add_months(self.months[index], 1), datetime.min.time(), TZ)
                 - first).total_seconds())))
        progress = index / (len(self.months) - 1)
        trigger = pick(rng, TRIGGERS)
        jid = f"lapse-{pol}/run{n}"
        day = timedelta(days=1)
        sends: list[tuple | None] = []
        lapsed = closed = outcome = None

        def send(key, channel, at, role="policyholder"):
            sends.append(self._send(jid, pol, cid, key, channel, at, progress, role))

        if trigger == "debit_failed":
            for k in range(1 + (rng.random() < 0.4) + (rng.random() < 0.15)):
                self.debits.append((pol, started - 35 * k * day - timedelta(hours=k + 1), 1200,
                                    False, pick(rng, DEBIT_REASONS)))
        if trigger == "rescission":
            send(Key(Kind.RESCISSION_NOTICE), "letter", started + 0.1 * day)
            send(Key(Kind.RESCISSION_NOTICE), "email", started + 0.1 * day)
            closed, outcome = started + 10 * day, "rescinded"
        else:
            send(Key(Kind.FIRST_REMINDER), "sms", started + day)
            send(Key(Kind.FIRST_REMINDER), "wechat", started + day)
            if sends[-1] and sends[-1][7] == "failed" and sends[-2][7] == "failed":
                send(Key(Kind.FIRST_REMINDER), "email", started + day)  # the fallback
            fate = rng.random()
            if fate < 0.03:  # terminated meanwhile
                closed, outcome = started + rng.uniform(3, 30) * day, "cancelled"
            elif fate < 0.45 + 0.1 * progress:
                closed, outcome = started + rng.uniform(2, 40) * day, "paid"
            else:
                send(Key(Kind.SECOND_REMINDER), "voice", started + 45 * day)
                if rng.random() < 0.2:
                    send(Key(Kind.SECOND_REMINDER), "agent_call", started + 45 * day)
                if rng.random() < 0.35:
                    closed, outcome = started + rng.uniform(46, 60) * day, "paid"
                else:
                    lapsed = started + 61 * day
                    send(Key(Kind.LAPSE_NOTICE), "sms", lapsed + 0.4 * day)
                    send(Key(Kind.LAPSE_NOTICE), "letter" if rng.random() < 0.2 else "email",
                         lapsed + 0.4 * day)
                    back = (lapsed + rng.uniform(20, 150) * day
                            if rng.random() < 0.15 + 0.1 * progress else None)
                    for k in range(1, 7):
                        at = lapsed + 30 * k * day
                        if back and at > back:
                            break
                        send(Key(Kind.FOLLOW_UP, k), "sms", at)
                    if back:
                        closed, outcome = back, "reinstated"
        if outcome == "paid" and closed < self.now:
            send(Key(Kind.PAYMENT_CONFIRMATION), "sms", closed)
        if rng.random() < 0.1:
            received = started + rng.uniform(1, 60) * day
            respond_by = received + day
            roll = rng.random()
            handled = (received + rng.uniform(0.1, 0.95) * day if roll < 0.85
                       else received + rng.uniform(1.1, 3) * day if roll < 0.95 else None)
            escalated = respond_by if handled is None or handled > respond_by else None
            if received < self.now:
                self.inquiries.append((f"Q{n}", pol, pick(rng, [
                    ("question", 0.5), ("hardship", 0.2), ("complaint", 0.1),
                    ("reinstatement", 0.2)]), received, respond_by, handled, escalated))

        def past(at):
            return at if at is not None and at < self.now else None

        closed_at = past(closed)
        self.journeys.append((jid, pol, trigger, started,
                              "closed" if closed_at else "lapsed" if past(lapsed) else "at_risk",
                              past(lapsed), closed_at, outcome if closed_at else None))
        return [s for s in sends if s]


def notification_batches(seeder: Seeder, total: int) -> Iterator[list[tuple]]:
    batch, made, n = [], 0, 0
    while made < total:
        rows = seeder.journey(n)[: total - made]
        n += 1
        batch += rows
        made += len(rows)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def seed(dsn: str, month: date, total: int) -> None:
    seeder = Seeder(month, random.Random(7))
    # A plain connection: COPY sends jsonb as JSON text in binary format.
    conn = await asyncpg.connect(dsn)
    try:
        # The evidence chain's triggers hash every row as it is written: a tenth of a
        # millisecond a row that the review never reads. Seeding goes around them.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "INSERT INTO products (code, name, kind, rules) VALUES "
            "('LT', '安泰终身寿险', 'long_term', '{\"reinstatable\": true}'), "
            "('ST', '安泰意外险', 'short_term', '{\"reinstatable\": false}')")
        for batch in notification_batches(seeder, total):
            # Parents first: the notifications refer to the policies.
            await conn.copy_records_to_table(
                "customers", records=seeder.customers,
                columns=("customer_id", "name", "gender", "birth_date"))
            await conn.copy_records_to_table(
                "policies", records=seeder.policies,
                columns=("policy_number", "product_code", "policyholder_id", "effective_date",
                         "premium", "due_date", "status", "payment_method"))
            await conn.copy_records_to_table("notifications", records=batch,
                                             columns=NOTIFICATION_COLUMNS)
            # Each record's own first event, and the provider's receipt of each delivered
            # one (what formal demand reads).
            await conn.copy_records_to_table(
                "notification_events", columns=EVENT_COLUMNS,
                records=[(r[0], "sent" if r[7] == "delivered" else r[7], None, r[10])
                         for r in batch]
                + [(r[0], "delivered", f"cb:{r[0]}", r[10]) for r in batch
                   if r[7] == "delivered"])
            seeder.customers, seeder.policies = [], []
        await conn.copy_records_to_table(
            "journeys", records=seeder.journeys,
            columns=("journey_id", "policy_number", "trigger", "started_at", "stage",
                     "lapsed_at", "closed_at", "outcome"))
        await conn.copy_records_to_table(
            "inquiries", records=seeder.inquiries,
            columns=("inquiry_id", "policy_number", "kind", "received_at", "respond_by",
                     "handled_at", "escalated_at"))
        await conn.copy_records_to_table(
            "debit_attempts", records=list({(d[0], d[1]): d for d in seeder.debits}.values()),
            columns=("policy_number", "attempted_at", "amount", "succeeded", "reason_code"))
        # What the triggers left undone that the review reads: who recorded each record's
        # latest 'delivered' (migrations/0013_review_receipts.sql).
        await conn.execute("SELECT refresh_notification_receipts()")
        # ... and the formal-demand facts per journey and month, which read the receipts
        # (migrations/0018_review_summaries.sql).
        await conn.execute("SELECT refresh_report_first_reminders()")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


# The baseline, measured in the same run: one pass over every table the review counts,
# read whole (what a review costs that is bound by the tables, not by the month).
BASELINE = """
SELECT (SELECT count(*) FROM notifications) + (SELECT count(*) FROM notification_events)
     + (SELECT count(*) FROM journeys) + (SELECT count(*) FROM debit_attempts)
     + (SELECT count(*) FROM inquiries)
"""
WHOLE_TABLE_READS = {"enable_indexscan": "off", "enable_indexonlyscan": "off",
                     "enable_bitmapscan": "off"}
GOAL_MS = 1000
# Tables the review must not read whole; an empty or tiny table (no letters, no
# bind-card requests in the synthetic data) may be.
BIG_TABLES = ("notifications", "notification_events", "journeys", "policies", "customers",
              "debit_attempts", "inquiries", "print_queue", "notification_receipts",
              "report_first_reminders")


def whole_table_reads(plan: list[str], big: set[str]) -> list[str]:
    """The big tables a plan reads whole: a sequential scan, or an index scan with no
    condition on its index (the whole table in the index's order)."""
    found = set()
    for i, line in enumerate(plan):
        table = next((t for t in big if f" on {t} " in line + " "), None)
        if table is None or "Scan" not in line:
            continue
        if "Seq Scan" in line:
            found.add(table)
        elif "Index" in line and "Bitmap" not in line:
            depth = len(line) - len(line.lstrip())
            details = []
            for below in plan[i + 1:]:
                if len(below) - len(below.lstrip()) <= depth or "->" in below:
                    break
                details.append(below)
            if not any("Index Cond" in d for d in details):
                found.add(table)
    return sorted(found)


async def time_queries(pool, month: date, rounds: int) -> None:
    """Each query alone on one connection (the review runs them on two), with its plan,
    in a transaction with the review's settings."""
    months = months_ending(month, DEFAULT_RULES.window_months)
    starts_at, ends_at = window(month, DEFAULT_RULES.window_months)
    # As the review runs them: the months before the report month in their trend form.
    queries = {}
    for name, (sql, _) in MONTHLY.items():
        calls = [(TREND.get(name, sql) if m != month else sql, window(m, 1)) for m in months]
        queries[name] = [(q, params) for q, params in calls if q is not None]
    queries["funnel"] = [(FUNNEL, (starts_at, ends_at))]
    queries["repeated_debit_failures"] = [(REPEATED_DEBIT_FAILURES, (
        starts_at, ends_at, DEFAULT_RULES.repeat_failures))]
    print(f"\neach query over the {len(months)} months {months[0]:%Y-%m} .. {month:%Y-%m} "
          f"(one call a month, the funnel and the repeated failures one call for all; best "
          f"and median of {rounds} runs), and its scans")
    print(f"{'query':24} {'rows':>6} {'best ms':>8} {'median ms':>10}  whole tables read; scans")
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        for setting in REVIEW_SETTINGS:  # as the review's own transactions have them
            await conn.execute(setting)
        big = {r["relname"] for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relname = ANY($1::text[]) AND reltuples > 10000",
            list(BIG_TABLES))}
        for name, calls in queries.items():
            times, rows = [], 0
            for _ in range(rounds):
                began = time.perf_counter()
                rows = sum([len(await conn.fetch(sql, *params)) for sql, params in calls])
                times.append((time.perf_counter() - began) * 1000)
            sql, params = calls[-1]  # the report month's
            plan = [r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *params)]
            scans = sorted({line.strip().removeprefix("-> ").split("  (")[0]
                            for line in plan if "Scan" in line})
            whole = ", ".join(whole_table_reads(plan, big)) or "none"
            print(f"{name:24} {rows:>6} {min(times):>8.1f} {statistics.median(times):>10.1f}"
                  f"  {whole}; {'; '.join(scans)}")


async def time_review(pool, month: date, rounds: int):
    """The whole review as `lapse report` makes it: best of `rounds`, and the report."""
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        report = build_report(month, await fetch_records(pool, month))
        times.append((time.perf_counter() - began) * 1000)
    return min(times), report


async def time_baseline(pool, rounds: int) -> float:
    times = []
    async with pool.acquire() as conn:
        for _ in range(rounds):
            began = time.perf_counter()
            await conn.fetchval(BASELINE)
            times.append((time.perf_counter() - began) * 1000)
    return min(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=1_000_000)
    parser.add_argument("--month", type=parse_month, default=date(2026, 11, 1),
                        help="the report month, last of the seeded year (YYYY-MM)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chart", type=Path, help="also draw the month's chart (a PNG)")
    parser.add_argument("--report", type=Path,
                        help="also write the month's report as JSON (to compare two runs)")
    parser.add_argument("--data", type=Path,
                        help="keep the seeded database in this folder, and use it again when "
                             "it is there (seeding a million rows takes minutes)")
    args = parser.parse_args()
    parent = args.data or Path(tempfile.mkdtemp(prefix="lapse-bench-"))
    try:
        await run(args, parent)
    finally:
        if args.data is None:
            shutil.rmtree(parent, ignore_errors=True)


async def run(args: argparse.Namespace, parent: Path) -> None:
    seeded = (parent / "postgres" / "PG_VERSION").exists()
    async with EmbeddedPostgres(parent / "postgres",
                                cleanup_mode="stop" if args.data else "delete") as postgres:
        began = time.perf_counter()
        applied = await migrate(postgres.dsn)
        if seeded and applied:  # on the kept data: what a migration costs on its tables
            print(f"migrated {', '.join(applied)} in {time.perf_counter() - began:.1f} s")
        pool = await connect_pool(postgres.dsn, max_size=2)
        baseline_pool = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=1,
                                                  server_settings=WHOLE_TABLE_READS)
        try:
            if not seeded:
                began = time.perf_counter()
                print(f"seeding {args.notifications:,} notifications with COPY ...")
                await seed(postgres.dsn, args.month, args.notifications)
                print(f"seeded in {time.perf_counter() - began:.1f} s")
            async with pool.acquire() as conn:
                # A migration may have added an index, or filled a table (the visibility map
                # lets its index ranges be read without the table).
                await conn.execute("VACUUM ANALYZE")
                counts = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM notifications) AS notifications, "
                    "(SELECT count(*) FROM journeys) AS journeys, "
                    "(SELECT count(*) FROM inquiries) AS inquiries, "
                    "(SELECT count(*) FROM debit_attempts) AS debits")
            print(f"records: {dict(counts)}")
            await time_queries(pool, args.month, args.rounds)
            figure, report = await time_review(pool, args.month, args.rounds)
            baseline = await time_baseline(baseline_pool, args.rounds)
            print(f"\nthe whole review of {report.month} ({report.overall.records:,} "
                  f"notifications in the month, {counts['notifications']:,} in all): every "
                  "query in one snapshot, then the assembly")
            print(f"{'review ms':>10} {'goal ms':>8} {'baseline ms':>12} {'ratio':>6}")
            print(f"{figure:>10.0f} {GOAL_MS:>8} {baseline:>12.0f} {figure / baseline:>6.3f}"
                  f"  {'met' if figure < GOAL_MS else 'NOT met'}"
                  f"  (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
            print("baseline: one pass over the tables the review counts (notifications, their "
                  "events, journeys, debits, inquiries), read whole in the same run; "
                  "ratio = review / baseline")
            if args.report:
                args.report.write_text(report.model_dump_json(indent=1), encoding="utf-8")
                print(f"wrote {args.report}")
            if args.chart:
                from commands.report_charts import write_chart
                print(f"wrote {write_chart(report, args.chart)}")
        finally:
            await baseline_pool.close()
            await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
