"""The policy file (JSON lines of products, customers and policies): parsing and cross-checks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import TypeAdapter, ValidationError

from domain.content.config import InsurerContact
from domain.content.preflight import customer_problems, insurer_problems, product_problems
from domain.models import Customer, Policy, PolicyFileRecord, Product
from domain.plan import CompanyRules

_RECORD = TypeAdapter(PolicyFileRecord)


@dataclass(frozen=True)
class LineError:
    line: int | None  # None: the company settings the file is checked against
    field: str
    message: str

    def __str__(self) -> str:
        where = f" field {self.field}" if self.field else ""
        return f"{'company settings' if self.line is None else f'line {self.line}'}{where}: " \
               f"{self.message}"


class PolicyFileError(ValueError):
    """The file cannot be applied; nothing of it was stored."""

    def __init__(self, source: str, errors: list[LineError]):
        self.errors = errors
        shown = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{source}: {len(errors)} error(s), nothing was loaded\n{shown}{more}")


@dataclass
class PolicyFile:
    products: dict[str, Product] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)


def json_schema() -> dict:
    """The JSON Schema of one line of the policy file."""
    return _RECORD.json_schema()


def parse_policy_file(
    lines: Iterable[str],
    source: str = "policy file",
    known_products: set[str] | frozenset[str] = frozenset(),
    known_customers: set[str] | frozenset[str] = frozenset(),
    insurer: InsurerContact | None = None,
    company: CompanyRules | None = None,
) -> PolicyFile:
    """Validate every line and every reference; raise PolicyFileError listing all problems.

    References may point to records earlier or later in the file, or to records already
    stored (known_products, known_customers). Every product and customer must also make
    messages that keep every content rule with these company settings (preflight.py).
    """
    parsed = PolicyFile()
    errors: list[LineError] = []
    policy_lines: dict[str, int] = {}
    record_lines: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            errors.append(LineError(number, "",
                                    f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        try:
            record = _RECORD.validate_python(data)
        except ValidationError as exc:
            # include_input=False: a rejected value may be an ID or phone number.
            for err in exc.errors(include_input=False, include_url=False):
                loc = ".".join(str(p) for p in err["loc"] if p not in ("product", "customer",
                                                                        "policy"))
                errors.append(LineError(number, loc, err["msg"]))
            continue
        if isinstance(record, Product):
            if record.code in parsed.products:
                errors.append(LineError(number, "code", "product appears twice in the file"))
            parsed.products[record.code] = record
            record_lines["product", record.code] = number
        elif isinstance(record, Customer):
            if record.customer_id in parsed.customers:
                errors.append(LineError(number, "customer_id",
                                        "customer appears twice in the file"))
            parsed.customers[record.customer_id] = record
            record_lines["customer", record.customer_id] = number
        else:
            if record.policy_number in parsed.policies:
                errors.append(LineError(number, "policy_number",
                                        "policy appears twice in the file"))
            parsed.policies[record.policy_number] = record
            policy_lines[record.policy_number] = number

    products = set(parsed.products) | set(known_products)
    customers = set(parsed.customers) | set(known_customers)
    for number_, policy in parsed.policies.items():
        line = policy_lines[number_]
        if policy.product_code not in products:
            errors.append(LineError(line, "product_code", "unknown product (not in the file "
                                    "or the database)"))
        for fname, ids in (("policyholder_id", [policy.policyholder_id]),
                           ("insured_ids", policy.insured_ids),
                           ("member_ids", policy.member_ids)):
            missing = [i for i in ids if i not in customers]
            if missing:
                errors.append(LineError(line, fname, f"unknown customer id(s) {missing[:5]}"))
        holder = parsed.customers.get(policy.policyholder_id)
        if policy.is_group and holder is not None and not holder.is_organisation:
            errors.append(LineError(line, "policyholder_id",
                                    "a group policy's policyholder must be an organisation"))
    errors += _message_errors(parsed, record_lines, insurer, company)
    if errors:
        errors.sort(key=lambda e: e.line or 0)
        raise PolicyFileError(source, errors)
    return parsed


def _message_errors(parsed: PolicyFile, record_lines: dict[tuple[str, str], int],
                    insurer: InsurerContact | None, company: CompanyRules | None
                    ) -> list[LineError]:
    """Rules broken by the messages the file's products and customers would make: at load
    time, never when a message is due. Named by template and rule, never by value."""
    # The shipped sample insurer is proven by the test suite; other settings are checked.
    checked = insurer is not None and insurer != InsurerContact()
    company_problems = insurer_problems(insurer) if checked else []
    if company_problems:
        # Every product would repeat them: the settings are what needs fixing.
        return [LineError(None, "insurer", str(p)) for p in company_problems]
    errors = []
    for code, product in parsed.products.items():
        premiums = [p.premium for p in parsed.policies.values() if p.product_code == code]
        for problem in product_problems(product, insurer, company,
                                        max(premiums, default=None)):
            errors.append(LineError(record_lines["product", code], "",
                                    f"product {code}: {problem}"))
    for cid, customer in parsed.customers.items():
        for problem in customer_problems(customer):
            errors.append(LineError(record_lines["customer", cid], problem.where,
                                    f"customer {cid}: {problem.rule} ({problem.detail})"))
    return errors
