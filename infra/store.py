"""Named, parameterised queries over the policy tables (products, customers, policies,
policy_insured, premium_dues, debit_attempts) and the business calendar."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pydantic import ValidationError

from domain.calendar import CalendarYear
from domain.models import (
    Customer,
    DebitAttempt,
    DebitFailure,
    PaymentMethod,
    Policy,
    PremiumDue,
    Product,
    ProductRules,
    Rescission,
)
from domain.policy_file import PolicyFile


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class PolicyBundle:
    """A policy with everything a journey needs to know about it."""

    policy: Policy
    product: Product
    policyholder: Customer
    insured: list[Customer]  # the insured person, or every group member


def _dump(model) -> str:
    return model.model_dump_json()


# --- writing the policy file --------------------------------------------------------------

_UPSERT_PRODUCT = """
INSERT INTO products (code, name, kind, rules, short_name, spoken_name, updated_at)
VALUES ($1, $2, $3, $4::jsonb, $5, $6, now())
ON CONFLICT (code) DO UPDATE
SET name = EXCLUDED.name, kind = EXCLUDED.kind, rules = EXCLUDED.rules,
    short_name = EXCLUDED.short_name, spoken_name = EXCLUDED.spoken_name, updated_at = now()
"""

_UPSERT_CUSTOMER = """
INSERT INTO customers (customer_id, name, gender, id_number, birth_date, mobile, email,
                       wechat_openid, postal_address, emergency_contact, preferred_channels,
                       is_organisation, wecom_userid, short_name, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11, $12, $13, $14, now())
ON CONFLICT (customer_id) DO UPDATE
SET name = EXCLUDED.name, gender = EXCLUDED.gender, id_number = EXCLUDED.id_number,
    birth_date = EXCLUDED.birth_date, mobile = EXCLUDED.mobile, email = EXCLUDED.email,
    wechat_openid = EXCLUDED.wechat_openid, postal_address = EXCLUDED.postal_address,
    emergency_contact = EXCLUDED.emergency_contact,
    preferred_channels = EXCLUDED.preferred_channels,
    is_organisation = EXCLUDED.is_organisation, wecom_userid = EXCLUDED.wecom_userid,
    short_name = EXCLUDED.short_name,
    updated_at = now()
"""

_UPSERT_POLICY = """
INSERT INTO policies (policy_number, product_code, policyholder_id, effective_date, premium,
                      currency, due_date, status, payment_method, rescission, payment_period,
                      updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11, now())
ON CONFLICT (policy_number) DO UPDATE
SET product_code = EXCLUDED.product_code, policyholder_id = EXCLUDED.policyholder_id,
    effective_date = EXCLUDED.effective_date, premium = EXCLUDED.premium,
    currency = EXCLUDED.currency, due_date = EXCLUDED.due_date, status = EXCLUDED.status,
    payment_method = EXCLUDED.payment_method, rescission = EXCLUDED.rescission,
    payment_period = EXCLUDED.payment_period, updated_at = now()
"""


async def known_codes(conn: asyncpg.Connection) -> tuple[set[str], set[str]]:
    """The product codes and customer ids already stored."""
    products = {r["code"] for r in await conn.fetch("SELECT code FROM products")}
    customers = {r["customer_id"] for r in await conn.fetch("SELECT customer_id FROM customers")}
    return products, customers


async def save_policy_file(conn: asyncpg.Connection, parsed: PolicyFile) -> None:
    """Store a validated file in one transaction: all of it or, on any error, none of it.

    The file is the truth for what it names: a policy's insured, dues and debit attempts
    are replaced by the file's.
    """
    async with conn.transaction():
        await conn.executemany(
            _UPSERT_PRODUCT,
            [(p.code, p.name, p.kind.value, _dump(p.rules), p.short_name, p.spoken_name)
             for p in parsed.products.values()],
        )
        await conn.executemany(
            _UPSERT_CUSTOMER,
            [
                (
                    c.customer_id,
                    c.name,
                    c.gender.value if c.gender else None,
                    c.id_number,
                    c.birth_date,
                    c.mobile,
                    c.email,
                    c.wechat_openid,
                    _dump(c.postal_address) if c.postal_address else None,
                    _dump(c.emergency_contact) if c.emergency_contact else None,
                    [ch.value for ch in c.preferred_channels],
                    c.is_organisation,
                    c.wecom_userid,
                    c.short_name,
                )
                for c in parsed.customers.values()
            ],
        )
        for p in parsed.policies.values():
            await conn.execute(
                _UPSERT_POLICY,
                p.policy_number,
                p.product_code,
                p.policyholder_id,
                p.effective_date,
                p.premium,
                p.currency,
                p.due_date,
                p.status.value,
                _dump(p.payment_method),
                _dump(p.rescission) if p.rescission else None,
                p.payment_period.value if p.payment_period else None,
            )
            await conn.execute(
                "DELETE FROM policy_insured WHERE policy_number = $1", p.policy_number
            )
            await conn.execute("DELETE FROM premium_dues WHERE policy_number = $1", p.policy_number)
            await conn.execute(
                "DELETE FROM debit_attempts WHERE policy_number = $1", p.policy_number
            )
            role = "member" if p.is_group else "insured"
            await conn.executemany(
                "INSERT INTO policy_insured (policy_number, customer_id, role) VALUES ($1, $2, $3)",
                [(p.policy_number, cid, role) for cid in (p.member_ids or p.insured_ids)],
            )
            await conn.executemany(
                "INSERT INTO premium_dues (policy_number, due_date, amount, paid_amount) "
                "VALUES ($1, $2, $3, $4)",
                [(p.policy_number, d.due_date, d.amount, d.paid_amount) for d in p.dues],
            )
            await conn.executemany(
                "INSERT INTO debit_attempts (policy_number, attempted_at, amount, succeeded, "
                "reason_code, reason_text) VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (
                        p.policy_number,
                        a.attempted_at,
                        a.amount,
                        a.succeeded,
                        a.reason_code.value if a.reason_code else None,
                        a.reason_text,
                    )
                    for a in p.debit_attempts
                ],
            )


# --- reading ------------------------------------------------------------------------------


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


class StoredRecordInvalid(ValueError):
    """A row in PostgreSQL no longer passes the model's checks (edited by hand, or a rule
    tightened since it was loaded). The message names the record and the fields and
    rules, never the values: it may reach Temporal's history or a terminal."""


def _checked(what: str, build):
    try:
        return build()
    except ValidationError as err:
        broken = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'record'}: {e['type']}"
            for e in err.errors(include_input=False, include_url=False))
        raise StoredRecordInvalid(f"{what} in the database is invalid ({broken}): correct "
                                  "it and reload the policy file") from None


def _product(row) -> Product:
    return _checked(f"product {row['code']}", lambda: _product_unchecked(row))


def _product_unchecked(row) -> Product:
    return Product(
        code=row["code"],
        name=row["name"],
        kind=row["kind"],
        rules=ProductRules.model_validate(_json(row["rules"])),
        short_name=row["short_name"],
        spoken_name=row["spoken_name"],
    )


def _customer(row) -> Customer:
    return _checked(f"customer {row['customer_id']}", lambda: _customer_unchecked(row))


def _customer_unchecked(row) -> Customer:
    return Customer(
        customer_id=row["customer_id"],
        name=row["name"],
        gender=row["gender"],
        id_number=row["id_number"],
        birth_date=row["birth_date"],
        mobile=row["mobile"],
        email=row["email"],
        wechat_openid=row["wechat_openid"],
        postal_address=_json(row["postal_address"]),
        emergency_contact=_json(row["emergency_contact"]),
        preferred_channels=list(row["preferred_channels"]),
        is_organisation=row["is_organisation"],
        wecom_userid=row["wecom_userid"],
        short_name=row["short_name"],
    )


async def load_products(conn: asyncpg.Connection) -> dict[str, Product]:
    """Every product by code (a handful: callers keep them for the length of a task)."""
    return {r["code"]: _product(r) for r in await conn.fetch("SELECT * FROM products")}


async def load_customers(conn: asyncpg.Connection, ids: list[str]) -> dict[str, Customer]:
    rows = await conn.fetch("SELECT * FROM customers WHERE customer_id = ANY($1::text[])", ids)
    return {r["customer_id"]: _customer(r) for r in rows}


async def load_policy(
    conn: asyncpg.Connection, policy_number: str, with_members: bool = True
) -> PolicyBundle:
    """The policy with its product, policyholder and insured (members only when asked)."""
    row = await conn.fetchrow("SELECT * FROM policies WHERE policy_number = $1", policy_number)
    if row is None:
        raise NotFound(f"unknown policy {policy_number}")
    product = _product(
        await conn.fetchrow("SELECT * FROM products WHERE code = $1", row["product_code"])
    )
    insured_rows = await conn.fetch(
        "SELECT customer_id, role FROM policy_insured WHERE policy_number = $1 "
        "ORDER BY customer_id",
        policy_number,
    )
    dues = await conn.fetch(
        "SELECT due_date, amount, paid_amount FROM premium_dues "
        "WHERE policy_number = $1 ORDER BY due_date",
        policy_number,
    )
    debits = await conn.fetch(
        "SELECT attempted_at, amount, succeeded, reason_code, reason_text "
        "FROM debit_attempts WHERE policy_number = $1 "
        "ORDER BY attempted_at",
        policy_number,
    )
    insured_ids = [r["customer_id"] for r in insured_rows if r["role"] == "insured"]
    member_ids = [r["customer_id"] for r in insured_rows if r["role"] == "member"]
    policy = _checked(f"policy {policy_number}", lambda: Policy(
        policy_number=row["policy_number"],
        product_code=row["product_code"],
        policyholder_id=row["policyholder_id"],
        insured_ids=insured_ids,
        member_ids=member_ids,
        effective_date=row["effective_date"],
        premium=row["premium"],
        currency=row["currency"],
        due_date=row["due_date"],
        status=row["status"],
        payment_method=PaymentMethod.model_validate(_json(row["payment_method"])),
        dues=[PremiumDue(**dict(d)) for d in dues],
        debit_attempts=[DebitAttempt(**dict(d)) for d in debits],
        rescission=Rescission.model_validate(_json(row["rescission"]))
        if row["rescission"]
        else None,
        payment_period=row["payment_period"],
    ))
    wanted = [policy.policyholder_id, *insured_ids, *(member_ids if with_members else [])]
    people = await load_customers(conn, wanted)
    return PolicyBundle(
        policy=policy,
        product=product,
        policyholder=people[policy.policyholder_id],
        insured=[
            people[i] for i in (insured_ids + (member_ids if with_members else [])) if i in people
        ],
    )


async def policy_numbers(conn: asyncpg.Connection) -> list[str]:
    return [
        r["policy_number"]
        for r in await conn.fetch("SELECT policy_number FROM policies ORDER BY policy_number")
    ]


_EXISTS = "SELECT true FROM policies WHERE policy_number = $1"
_HOLDER_POLICIES = """
SELECT policy_number FROM policies WHERE policyholder_id = $1 ORDER BY policy_number
"""
_MEMBER_COUNT = """
SELECT count(*) FROM policy_insured WHERE policy_number = $1 AND role = 'member'
"""
_MEMBERS_PAGE = """
SELECT customer_id FROM policy_insured WHERE policy_number = $1 AND role = 'member'
ORDER BY customer_id OFFSET $2 LIMIT $3
"""
# Only members of this policy: a crafted id never reaches another customer.
_MEMBERS_AMONG = """
SELECT customer_id FROM policy_insured
WHERE policy_number = $1 AND role = 'member' AND customer_id = ANY($2::text[])
ORDER BY customer_id
"""


async def policy_exists(conn: asyncpg.Connection | asyncpg.Pool, policy_number: str) -> bool:
    return bool(await conn.fetchval(_EXISTS, policy_number))


async def holder_policies(conn: asyncpg.Connection, customer_id: str) -> list[str]:
    """The policies the customer holds."""
    return [r["policy_number"] for r in await conn.fetch(_HOLDER_POLICIES, customer_id)]


async def member_count(conn: asyncpg.Connection, policy_number: str) -> int:
    """How many members a group policy insures (0 for any other policy)."""
    return await conn.fetchval(_MEMBER_COUNT, policy_number)


async def member_ids(conn: asyncpg.Connection, policy_number: str, *, offset: int = 0,
                     limit: int | None = None, among: list[str] | None = None) -> list[str]:
    """The group's member ids in order: a page of them, or those of `among` that are
    members of this policy."""
    rows = (await conn.fetch(_MEMBERS_AMONG, policy_number, among) if among is not None
            else await conn.fetch(_MEMBERS_PAGE, policy_number, offset, limit))
    return [r["customer_id"] for r in rows]


# --- what happens to a policy --------------------------------------------------------------

_SET_STATUS = """
UPDATE policies SET status = $2, status_changed_at = $3, updated_at = now()
WHERE policy_number = $1 AND status <> $2
"""
_DEBIT_FAILED = """
INSERT INTO debit_attempts (policy_number, attempted_at, amount, succeeded, reason_code,
                            reason_text)
VALUES ($1, $2, $3, false, $4, $5) ON CONFLICT (policy_number, attempted_at) DO NOTHING
"""


async def set_policy_status(conn: asyncpg.Connection, policy_number: str, status: str,
                            at: datetime) -> None:
    """The policy's status as the journey decided it (lapsed, terminated, ...), once."""
    await conn.execute(_SET_STATUS, policy_number, status, at)


async def record_debit_failure(conn: asyncpg.Connection, policy_number: str,
                               failure: DebitFailure) -> None:
    """A failed debit the payment system reports, once per attempt."""
    await conn.execute(_DEBIT_FAILED, policy_number, failure.failed_at, failure.amount,
                       failure.reason_code.value, failure.reason_text)


# --- the business calendar -----------------------------------------------------------------


async def load_calendar_years(conn: asyncpg.Connection) -> list[CalendarYear]:
    years = await conn.fetch("SELECT year FROM calendar_years ORDER BY year")
    days = await conn.fetch("SELECT day, year, kind, name FROM calendar_days ORDER BY day")
    by_year: dict[int, list[dict]] = {r["year"]: [] for r in years}
    for d in days:
        by_year[d["year"]].append({"date": d["day"], "kind": d["kind"], "name": d["name"]})
    return [CalendarYear(year=y, days=ds) for y, ds in by_year.items()]


async def save_calendar_year(conn: asyncpg.Connection, year: CalendarYear, source: str) -> None:
    """Replace one year of the calendar atomically."""
    async with conn.transaction():
        await conn.execute("DELETE FROM calendar_years WHERE year = $1", year.year)
        await conn.execute(
            "INSERT INTO calendar_years (year, source) VALUES ($1, $2)", year.year, source
        )
        await conn.executemany(
            "INSERT INTO calendar_days (day, year, kind, name) VALUES ($1, $2, $3, $4)",
            [(d.date, year.year, d.kind, d.name) for d in year.days],
        )


async def ensure_calendar_seeded(conn: asyncpg.Connection) -> list[int]:
    """Add the years the calendar package knows and the database lacks; loaded years win."""
    from infra.calendar_seed import PACKAGE_SOURCE, package_years

    added: list[int] = []
    async with conn.transaction():
        # Two processes starting at once must not both insert the same years.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('lapse.calendar_seed'))")
        loaded = await calendar_years_loaded(conn)
        for year in package_years():
            if year.year not in loaded:
                await save_calendar_year(conn, year, source=PACKAGE_SOURCE)
                added.append(year.year)
    return added


async def calendar_years_loaded(conn: asyncpg.Connection) -> dict[int, str]:
    return {
        r["year"]: r["source"]
        for r in await conn.fetch("SELECT year, source FROM calendar_years ORDER BY year")
    }
