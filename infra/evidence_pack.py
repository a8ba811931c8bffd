"""Gathering one journey's evidence pack: its records from PostgreSQL, its plan and trigger
from the Temporal history, its chain and the verification, and the log of the request."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from temporalio.client import Client

from contract import workflow_id
from domain.content.config import InsurerContact
from domain.content.masking import full_name
from domain.evidence import DemandRecord, chain_label, formal_demand
from domain.evidence_pack import (
    STATUS_WORDS,
    EvidencePack,
    PackAnchor,
    PackDebitFailure,
    PackEntry,
    PackFile,
    PackInquiry,
    PackJourney,
    PackMessage,
    PackMilestone,
    PackPayment,
    PackPolicy,
    PackStage,
    PackStatus,
    code_words,
    on_time,
)
from domain.ids import MilestoneKey
from domain.plan import TZ
from domain.report import is_formal_demand
from infra import store
from infra.evidence import chain_head, snapshot, verify
from infra.journey_history import RunHistory, read_run

JOURNEY = "SELECT * FROM journeys WHERE journey_id = $1 AND policy_number = $2"
LATEST_JOURNEY = """
SELECT * FROM journeys WHERE policy_number = $1 ORDER BY started_at DESC, journey_id LIMIT 1
"""
MESSAGES = """
SELECT n.*,
       s.address_masked, s.attachment_name, s.attachment,
       q.pdf AS letter_pdf, q.tracking_number, q.handed_over_at,
       (SELECT t.taken_by FROM agent_tasks t WHERE t.notification_id = n.notification_id
        AND t.kind = 'outbound_call' ORDER BY t.task_id LIMIT 1) AS agent
FROM notifications n
LEFT JOIN notification_sends s USING (notification_id)
LEFT JOIN print_queue q ON q.letter_id = n.notification_id
WHERE n.journey_id = $1
ORDER BY n.created_at, n.notification_id
"""
EVENTS = """
SELECT e.notification_id, e.status, e.error_code, e.provider_event_id IS NOT NULL AS provider,
       e.occurred_at
FROM notification_events e JOIN notifications n USING (notification_id)
WHERE n.journey_id = $1
ORDER BY e.event_id
"""
# Payments, debit failures and inquiries the journey's chain holds, or the policy's own
# (written while no journey of the policy was running, such as the failure that started it).
PAYMENTS = """
SELECT p.transaction_id, p.amount, p.currency, p.paid_at FROM payments p
JOIN evidence_chain e ON e.table_name = 'payments' AND e.row_key = p.transaction_id
 AND e.version = 1 AND (e.chain_kind = 'journey' AND e.chain_id = $2 OR e.chain_kind = 'policy')
WHERE p.policy_number = $1 ORDER BY p.paid_at
"""
DEBIT_FAILURES = """
SELECT d.attempted_at, d.amount, d.reason_code, d.reason_text FROM debit_attempts d
JOIN evidence_chain e ON e.table_name = 'debit_attempts'
 AND e.row_key = evidence_key('debit_attempts', to_jsonb(d))
 AND e.version = 1 AND (e.chain_kind = 'journey' AND e.chain_id = $2 OR e.chain_kind = 'policy')
WHERE d.policy_number = $1 AND NOT d.succeeded ORDER BY d.attempted_at
"""
INQUIRIES = """
SELECT i.inquiry_id, i.kind, i.received_at, i.respond_by, i.handled_at, i.escalated_at
FROM inquiries i
JOIN evidence_chain e ON e.table_name = 'inquiries' AND e.row_key = i.inquiry_id
 AND e.version = 1 AND (e.chain_kind = 'journey' AND e.chain_id = $2 OR e.chain_kind = 'policy')
WHERE i.policy_number = $1 ORDER BY i.received_at
"""
STAGES = """
SELECT facts ->> 'stage' AS stage, facts ->> 'outcome' AS outcome, recorded_at
FROM evidence_chain
WHERE chain_kind = 'journey' AND chain_id = $1 AND table_name = 'journeys' ORDER BY seq
"""
CHAIN = """
SELECT chain_kind, chain_id, seq, table_name, row_key, version, changed, entry_hash, recorded_at
FROM evidence_chain
WHERE chain_kind = 'journey' AND chain_id = $1 OR chain_kind = 'policy' AND chain_id = $2
ORDER BY chain_kind, seq
"""
ANCHORS = """
SELECT seq, entry_hash, workflow_id, run_id, anchored_at FROM evidence_anchors
WHERE journey_id = $1 ORDER BY seq, anchored_at
"""
LOG_REQUEST = """
INSERT INTO evidence_requests (request_id, policy_number, journey_id, requested_by, reason)
VALUES ($1, $2, $3, $4, $5)
"""
LOG_RESULT = """
UPDATE evidence_requests SET journey_id = $2, breaks = $3, pack_sha256 = $4
WHERE request_id = $1
"""


class NoJourney(LookupError):
    pass


@dataclass(frozen=True)
class Letter:
    """A letter the pack carries, with its file name in the pack."""

    file: PackFile
    content: bytes


@dataclass(frozen=True)
class Gathered:
    pack: EvidencePack
    letters: list[Letter]


def new_reference(now: datetime) -> str:
    return f"EV-{now.astimezone(TZ):%Y%m%d}-{uuid.uuid4().hex[:8].upper()}"


async def log_request(pool: asyncpg.Pool, reference: str, policy_number: str,
                      journey_id: str | None, requested_by: str, reason: str) -> None:
    """Before anything is read: who asked, and why (the pack holds personal data)."""
    await pool.execute(LOG_REQUEST, reference, policy_number, journey_id, requested_by, reason)


async def log_result(pool: asyncpg.Pool, pack: EvidencePack, pdf: bytes) -> None:
    """What was handed out: the journey, what verification found, the PDF's hash."""
    await pool.execute(LOG_RESULT, pack.reference, pack.journey.journey_id,
                       len(pack.verification.breaks), hashlib.sha256(pdf).hexdigest())


async def journey_row(pool: asyncpg.Pool, policy_number: str, journey_id: str | None
                      ) -> asyncpg.Record:
    row = await (pool.fetchrow(JOURNEY, journey_id, policy_number) if journey_id
                 else pool.fetchrow(LATEST_JOURNEY, policy_number))
    if row is None:
        raise NoJourney(f"policy {policy_number} has no journey"
                        + (" with that id" if journey_id else ""))
    return row


async def _runs(client: Client | None, policy_number: str, anchors: list[asyncpg.Record]
                ) -> list[RunHistory]:
    """The journey's runs that carry its heads; without any yet, the policy's latest run."""
    if client is None:
        return []
    seen = list(dict.fromkeys((a["workflow_id"], a["run_id"]) for a in anchors))
    if not seen:
        seen = [(workflow_id(policy_number), None)]
    return [r for r in [await read_run(client, w, r) for w, r in seen] if r.found]


def _messages(rows, events, stamp) -> tuple[list[PackMessage], list[DemandRecord], list[Letter]]:
    by_record: dict[str, list] = {}
    for e in events:
        by_record.setdefault(e["notification_id"], []).append(e)
    messages, demand, letters = [], [], []
    for n in rows:
        history = by_record.get(n["notification_id"], [])
        pdf = n["letter_pdf"] or n["attachment"]
        letter = None
        if pdf is not None:
            name = f"{stamp}-letter-{len(letters) + 1:02d}-{n['milestone']}-{n['channel']}.pdf"
            letter = PackFile(filename=name, sha256=hashlib.sha256(pdf).hexdigest(),
                              size=len(pdf))
            letters.append(Letter(letter, pdf))
        messages.append(PackMessage(
            notification_id=n["notification_id"], milestone=n["milestone"],
            channel=n["channel"], recipient_role=n["recipient_role"],
            address=n["address_masked"], provider=n["provider"],
            provider_message_id=n["provider_message_id"],
            template=(f"{n['template_id']} v{n['template_version']}" if n["template_id"]
                      else None),
            created_at=n["created_at"], subject=n["subject"], text=n["body"],
            status=n["status"], letter=letter, tracking_number=n["tracking_number"],
            agent=n["agent"],
            statuses=[PackStatus(at=e["occurred_at"], status=e["status"],
                                 words=STATUS_WORDS.get(e["status"], e["status"]),
                                 code=e["error_code"],
                                 code_words=code_words(e["error_code"], n["channel"]),
                                 source="provider" if e["provider"] else "system")
                      for e in history]))
        # From the chained key and role: the kind column is outside the evidence chain.
        if is_formal_demand(MilestoneKey.parse(n["milestone"]), n["recipient_role"]):
            receipt = next((e for e in reversed(history) if e["status"] == "delivered"), None)
            demand.append(DemandRecord(
                channel=n["channel"], status=n["status"],
                receipt=None if receipt is None else "provider" if receipt["provider"]
                else "own",
                tracked=n["tracking_number"] is not None, notification_id=n["notification_id"],
                receipt_at=receipt["occurred_at"] if receipt else None,
                provider_message_id=n["provider_message_id"],
                tracking_number=n["tracking_number"], posted_at=n["handed_over_at"],
                agent=n["agent"]))
    return messages, demand, letters


async def gather(pool: asyncpg.Pool, client: Client | None, policy_number: str,
                 journey_id: str | None, *, reference: str, requested_by: str, reason: str,
                 now: datetime) -> Gathered:
    """Everything the pack says about one journey (the policy's latest when not given)."""
    journey = await journey_row(pool, policy_number, journey_id)
    jid = journey["journey_id"]
    async with snapshot(pool) as conn:
        bundle = await store.load_policy(conn, policy_number, with_members=False)
        messages = await conn.fetch(MESSAGES, jid)
        events = await conn.fetch(EVENTS, jid)
        payments = await conn.fetch(PAYMENTS, policy_number, jid)
        debits = await conn.fetch(DEBIT_FAILURES, policy_number, jid)
        inquiries = await conn.fetch(INQUIRIES, policy_number, jid)
        stages = await conn.fetch(STAGES, jid)
        chain = await conn.fetch(CHAIN, jid, policy_number)
        anchors = await conn.fetch(ANCHORS, jid)
        head = await chain_head(conn, jid)
    verification = await verify(pool, policy_number, client)
    runs = await _runs(client, policy_number, anchors)
    plan = next((r.preparation.plan for r in runs if r.preparation), None) or next(
        (r.journey_input.carry.prep.plan for r in runs
         if r.journey_input and r.journey_input.carry), None)
    trigger = next((r.journey_input.trigger for r in runs if r.journey_input), None)
    pack_messages, demand, letters = _messages(messages, events, reference)
    holder = bundle.policyholder
    insurer = InsurerContact()
    pack = EvidencePack(
        reference=reference, generated_at=now, requested_by=requested_by, reason=reason,
        insurer=insurer.legal_name,
        policy=PackPolicy(
            policy_number=policy_number, product=bundle.product.name,
            product_kind=bundle.product.kind.value,
            policyholder=holder.name if holder.is_organisation
            else full_name(holder.name, holder.gender),
            status=bundle.policy.status.value),
        journey=PackJourney(
            journey_id=jid, trigger=journey["trigger"],
            due_date=plan.due_date if plan else None,
            amount_due=trigger.amount_due if trigger else None,
            grace_ends_on=plan.grace_ends_on if plan else None,
            lapses_on=plan.lapses_on if plan else None, started_at=journey["started_at"],
            stage=journey["stage"], outcome=journey["outcome"], lapsed_at=journey["lapsed_at"],
            closed_at=journey["closed_at"]),
        formal_demand=formal_demand(demand),
        timeline=[PackMilestone(key=m.key, at=m.at, channels=[c.value for c in m.channels])
                  for m in (plan.milestones if plan else [])],
        messages=pack_messages,
        payments=[PackPayment(**dict(p)) for p in payments],
        debit_failures=[PackDebitFailure(**dict(d)) for d in debits],
        inquiries=[PackInquiry(**dict(i), on_time=on_time(i["handled_at"], i["respond_by"]))
                   for i in inquiries],
        stages=[PackStage(**dict(s)) for s in stages],
        chain=[PackEntry(chain=chain_label(e["chain_kind"], e["chain_id"]), seq=e["seq"],
                         table=e["table_name"], key=e["row_key"], version=e["version"],
                         changed=e["changed"], entry_hash=e["entry_hash"].hex(),
                         recorded_at=e["recorded_at"]) for e in chain],
        head=head,
        anchors=[PackAnchor(seq=a["seq"], entry_hash=a["entry_hash"].hex(),
                            workflow_id=a["workflow_id"], run_id=a["run_id"],
                            anchored_at=a["anchored_at"]) for a in anchors],
        verification=verification)
    return Gathered(pack, letters)
