"""Named queries over the evidence chain: its head, anchors, what was sent, and verification.

The chain is appended by PostgreSQL itself (migrations/0005_evidence.sql); this module
reads it back. Verification runs as a few set-based queries over the whole chain (or one
policy's), so that it stays fast on hundreds of thousands of journeys: the queries return
only what disagrees, grouped where the rules decide per kind of change, and the rules
(domain/evidence.py) name each break.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from temporalio.client import Client

from domain.content.masking import mask_address
from domain.evidence import (
    Break,
    BreakKind,
    ChainHead,
    Verification,
    chain_label,
    disallowed_changes,
    status_from_events,
)
from domain.models import Channel
from infra.journey_history import RunHistory, read_run

EXPORT_SNAPSHOT = "SELECT pg_export_snapshot()"
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")

HEAD = """
SELECT seq, entry_hash FROM evidence_chain
WHERE chain_kind = 'journey' AND chain_id = $1 ORDER BY seq DESC LIMIT 1
"""

INSERT_ANCHOR = """
INSERT INTO evidence_anchors (journey_id, policy_number, seq, entry_hash, workflow_id, run_id)
SELECT $1, policy_number, $2, $3, $4, $5 FROM evidence_chain
WHERE chain_kind = 'journey' AND chain_id = $1 AND seq = $2
ON CONFLICT DO NOTHING
"""

# A new attempt may go elsewhere (the contact was corrected meanwhile): then this row is
# replaced, which the chain keeps as a new version.
KEEP_SEND = """
INSERT INTO notification_sends (notification_id, address_masked, address_sha256,
                                attachment_name, attachment)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (notification_id) DO UPDATE
SET address_masked = EXCLUDED.address_masked, address_sha256 = EXCLUDED.address_sha256,
    attachment_name = EXCLUDED.attachment_name, attachment = EXCLUDED.attachment,
    recorded_at = now()
WHERE (notification_sends.address_sha256, notification_sends.attachment)
      IS DISTINCT FROM (EXCLUDED.address_sha256, EXCLUDED.attachment)
"""


def address_hash(notification_id: str, address: str) -> str:
    """Lets a claimed address be checked ("was it sent to this number?") without keeping
    more of it than the masked form."""
    return hashlib.sha256(f"{notification_id}\n{address.strip()}".encode()).hexdigest()


async def chain_head(conn: asyncpg.Connection, journey_id: str) -> ChainHead:
    """The latest entry of the journey's chain (seq 0 and no hash while it is empty)."""
    row = await conn.fetchrow(HEAD, journey_id)
    if row is None:
        return ChainHead(journey_id=journey_id, seq=0)
    return ChainHead(journey_id=journey_id, seq=row["seq"], hash=row["entry_hash"].hex())


async def anchor(conn: asyncpg.Connection, journey_id: str, workflow_id: str,
                 run_id: str) -> ChainHead:
    """The head, noted as handed to this workflow run's history (the caller returns it as
    its activity result, field `chain_head`)."""
    head = await chain_head(conn, journey_id)
    if head.hash is not None:
        await conn.execute(INSERT_ANCHOR, journey_id, head.seq, bytes.fromhex(head.hash),
                           workflow_id, run_id)
    return head


async def keep_send(conn: asyncpg.Connection, notification_id: str, channel: Channel,
                    address: str, attachment_name: str | None = None,
                    attachment: bytes | None = None) -> None:
    """What a message went to and carried, as the provider got it."""
    await conn.execute(KEEP_SEND, notification_id, mask_address(channel, address),
                       address_hash(notification_id, address), attachment_name, attachment)


# --- verification --------------------------------------------------------------------------
# $1 is the policy number, or NULL for every policy.

COUNTS = """
SELECT count(*) AS entries, count(*) FILTER (WHERE seq = 1) AS chains,
       (SELECT count(*) FROM evidence_rows($1)) AS records
FROM evidence_chain WHERE $1::text IS NULL OR policy_number = $1
"""

# Entries that do not hash to their own hash, do not follow their predecessor, or leave a
# gap; the first entry of a chain is seq 1 with no predecessor.
LINKS = """
SELECT chain_kind, chain_id, seq, table_name, row_key, prev_seq, entry_ok, link_ok FROM (
    SELECT e.chain_kind, e.chain_id, e.seq, e.table_name, e.row_key,
           lag(e.seq) OVER w AS prev_seq,
           evidence_entry_hash(e.chain_kind, e.chain_id, e.seq, e.prev_hash, e.policy_number,
                               e.table_name, e.row_key, e.version, e.changed, e.facts,
                               e.content_hash, e.recorded_at) = e.entry_hash AS entry_ok,
           e.prev_hash IS NOT DISTINCT FROM lag(e.entry_hash) OVER w AS link_ok
    FROM evidence_chain e
    WHERE $1::text IS NULL OR e.policy_number = $1
    WINDOW w AS (PARTITION BY e.chain_kind, e.chain_id ORDER BY e.seq)
) checked
WHERE NOT entry_ok OR NOT link_ok OR seq <> COALESCE(prev_seq, 0) + 1
ORDER BY chain_kind, chain_id, seq
"""

# Rows that differ from their last chained version, chained rows that are gone, and rows
# no entry covers.
ROWS = """
WITH now_ AS (
    SELECT r.table_name, r.row_key,
           evidence_content_hash(r.table_name, r.row_key, r.content) AS content_hash
    FROM evidence_rows($1) r
), last AS (
    SELECT DISTINCT ON (table_name, row_key) table_name, row_key, chain_kind, chain_id, seq,
           content_hash
    FROM evidence_chain WHERE $1::text IS NULL OR policy_number = $1
    ORDER BY table_name, row_key, version DESC
)
SELECT COALESCE(n.table_name, l.table_name) AS table_name,
       COALESCE(n.row_key, l.row_key) AS row_key, l.chain_kind, l.chain_id, l.seq,
       n.content_hash IS NOT NULL AS present, l.seq IS NOT NULL AS chained
FROM now_ n FULL JOIN last l ON l.table_name = n.table_name AND l.row_key = n.row_key
WHERE n.content_hash IS DISTINCT FROM l.content_hash
ORDER BY 1, 2
"""
# Which fields of those rows differ from their last chained version.
DIFFERING_FIELDS = """
WITH wanted AS (SELECT * FROM unnest($2::text[], $3::text[]) w (table_name, row_key))
SELECT r.table_name, r.row_key,
       (SELECT array_agg(f ORDER BY f) FROM (
            SELECT h.key AS f FROM jsonb_each_text(
                evidence_field_hashes(r.table_name, r.row_key, r.content)) h
            WHERE h.value IS DISTINCT FROM l.field_hashes ->> h.key
            UNION
            SELECT h.key FROM jsonb_each_text(l.field_hashes) h
            WHERE NOT r.content ? h.key) differing) AS fields
FROM evidence_rows($1) r
JOIN wanted w ON w.table_name = r.table_name AND w.row_key = r.row_key
JOIN LATERAL (
    SELECT field_hashes FROM evidence_chain c
    WHERE c.table_name = r.table_name AND c.row_key = r.row_key
    ORDER BY c.version DESC LIMIT 1
) l ON true
"""

# Every later version of a row, grouped by what changed and the facts before and after:
# the rules decide per group, so a million status changes are a few dozen groups.
CHANGES = """
SELECT e.table_name, e.changed, p.facts AS before, e.facts AS after, count(*) AS count
FROM evidence_chain e
JOIN evidence_chain p
  ON p.table_name = e.table_name AND p.row_key = e.row_key AND p.version = e.version - 1
WHERE e.version > 1 AND ($1::text IS NULL OR e.policy_number = $1)
GROUP BY 1, 2, 3, 4
"""

CHANGED_ROWS = """
SELECT e.chain_kind, e.chain_id, e.seq, e.row_key
FROM evidence_chain e
JOIN evidence_chain p
  ON p.table_name = e.table_name AND p.row_key = e.row_key AND p.version = e.version - 1
WHERE e.version > 1 AND ($1::text IS NULL OR e.policy_number = $1)
  AND e.table_name = $2 AND e.changed = $3 AND p.facts = $4 AND e.facts = $5
ORDER BY e.chain_kind, e.chain_id, e.seq
"""

# Messages grouped by their status and their events' (migrations/0005: evidence_statuses).
STATUSES = """
SELECT status, statuses, providers, count(*) AS count FROM evidence_statuses
WHERE $1::text IS NULL OR policy_number = $1
GROUP BY 1, 2, 3
"""
STATUS_ROWS = """
SELECT journey_id, notification_id FROM evidence_statuses
WHERE ($1::text IS NULL OR policy_number = $1) AND status = $2
  AND statuses IS NOT DISTINCT FROM $3::text[] AND providers IS NOT DISTINCT FROM $4::boolean[]
ORDER BY journey_id, notification_id
"""

# Anchors with the chain's entry at their seq; closed journeys that have none.
ANCHORS = """
SELECT a.journey_id, a.seq, a.entry_hash, a.workflow_id, a.run_id, e.entry_hash AS chain_hash
FROM evidence_anchors a
LEFT JOIN evidence_chain e
  ON e.chain_kind = 'journey' AND e.chain_id = a.journey_id AND e.seq = a.seq
WHERE $1::text IS NULL OR a.policy_number = $1
ORDER BY a.journey_id, a.seq
"""
UNANCHORED = """
SELECT j.journey_id FROM journeys j
WHERE j.closed_at IS NOT NULL AND ($1::text IS NULL OR j.policy_number = $1)
  AND NOT EXISTS (SELECT 1 FROM evidence_anchors a WHERE a.journey_id = j.journey_id)
ORDER BY j.journey_id
"""
ENTRY_HASHES = """
SELECT chain_id, seq, entry_hash FROM evidence_chain
WHERE chain_kind = 'journey'
  AND (chain_id, seq) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))
"""


@asynccontextmanager
async def snapshot(pool: asyncpg.Pool, shared: str | None = None
                   ) -> AsyncIterator[asyncpg.Connection]:
    """One consistent, read-only view, with times in UTC as the chain hashes them; given
    the id of another transaction's exported snapshot, that same view."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):
        if shared is not None:
            if not _SNAPSHOT_ID.match(shared):
                raise ValueError("not a snapshot id")
            # A utility statement: it takes no parameters, hence the checked literal.
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{shared}'")
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
        yield conn


async def _in_snapshot(pool: asyncpg.Pool, shared: str, check, policy: str | None):
    async with snapshot(pool, shared) as conn:
        return await check(conn, policy)


def _label(row) -> str:
    return chain_label(row["chain_kind"], row["chain_id"])


async def link_breaks(conn: asyncpg.Connection, policy: str | None) -> list[Break]:
    breaks = []
    for r in await conn.fetch(LINKS, policy):
        where = {"chain": _label(r), "seq": r["seq"], "table": r["table_name"],
                 "key": r["row_key"]}
        expected = (r["prev_seq"] or 0) + 1
        if r["seq"] != expected:
            missing = (f"entry {expected}" if r["seq"] == expected + 1
                       else f"entries {expected}-{r['seq'] - 1}")
            breaks.append(Break(kind=BreakKind.ENTRY_MISSING, **where,
                                detail=f"{missing} missing before this one"))
        elif not r["link_ok"]:
            breaks.append(Break(kind=BreakKind.LINK_BROKEN, **where,
                                detail=f"does not carry the hash of entry {expected - 1}"))
        if not r["entry_ok"]:
            breaks.append(Break(kind=BreakKind.ENTRY_ALTERED, **where,
                                detail="the entry was changed after it was written"))
    return breaks


async def row_breaks(conn: asyncpg.Connection, policy: str | None) -> list[Break]:
    breaks = []
    rows = await conn.fetch(ROWS, policy)
    changed = [(r["table_name"], r["row_key"]) for r in rows if r["present"] and r["chained"]]
    fields = {(f["table_name"], f["row_key"]): list(f["fields"] or []) for f in (
        await conn.fetch(DIFFERING_FIELDS, policy, [t for t, _ in changed],
                         [k for _, k in changed]) if changed else [])}
    for r in rows:
        if not r["chained"]:
            breaks.append(Break(kind=BreakKind.RECORD_NOT_CHAINED, chain="-",
                                table=r["table_name"], key=r["row_key"],
                                detail="no entry covers this record: written with the chain "
                                       "bypassed"))
            continue
        where = {"chain": _label(r), "seq": r["seq"], "table": r["table_name"],
                 "key": r["row_key"]}
        if not r["present"]:
            breaks.append(Break(kind=BreakKind.RECORD_MISSING, **where,
                                detail="the record was deleted"))
        else:
            named = fields.get((r["table_name"], r["row_key"]), [])
            breaks.append(Break(kind=BreakKind.RECORD_CHANGED, fields=named, **where,
                                detail=f"{', '.join(named) or 'the record'} changed with the "
                                       f"chain bypassed (differs from entry {r['seq']})"))
    return breaks


async def change_breaks(conn: asyncpg.Connection, policy: str | None) -> list[Break]:
    breaks = []
    for g in await conn.fetch(CHANGES, policy):
        bad = disallowed_changes(g["table_name"], g["changed"] or [], g["before"], g["after"])
        if not bad:
            continue
        for r in await conn.fetch(CHANGED_ROWS, policy, g["table_name"], g["changed"],
                                  g["before"], g["after"]):
            breaks.append(Break(kind=BreakKind.CHANGE_NOT_ALLOWED, chain=_label(r),
                                seq=r["seq"], table=g["table_name"], key=r["row_key"],
                                fields=bad, detail=f"{', '.join(bad)} must not change once "
                                                   "recorded"))
    return breaks


async def status_breaks(conn: asyncpg.Connection, policy: str | None) -> list[Break]:
    breaks = []
    for g in await conn.fetch(STATUSES, policy):
        events = list(zip(g["statuses"] or [], g["providers"] or [], strict=True))
        expected = status_from_events(events)
        if expected == g["status"]:
            continue
        for r in await conn.fetch(STATUS_ROWS, policy, g["status"], g["statuses"],
                                  g["providers"]):
            breaks.append(Break(
                kind=BreakKind.STATUS_DISAGREES, chain=r["journey_id"], table="notifications",
                key=r["notification_id"], fields=["status"],
                detail=f"status is {g['status']}, its events say {expected or 'nothing'}"))
    return breaks


async def anchors(conn: asyncpg.Connection, policy: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(ANCHORS, policy)


def anchor_breaks(rows: list[asyncpg.Record]) -> list[Break]:
    """Anchors whose entry is gone or differs (the chain was rewritten in PostgreSQL)."""
    breaks = []
    for a in rows:
        if a["chain_hash"] is None:
            breaks.append(Break(kind=BreakKind.ENTRY_MISSING, chain=a["journey_id"],
                                seq=a["seq"], detail="an anchored entry is not in the chain"))
        elif a["chain_hash"] != a["entry_hash"]:
            breaks.append(Break(kind=BreakKind.HEAD_MISMATCH, chain=a["journey_id"],
                                seq=a["seq"], detail="the entry differs from the head anchored "
                                                     "for Temporal"))
    return breaks


async def unanchored_breaks(conn: asyncpg.Connection, policy: str | None) -> list[Break]:
    return [Break(kind=BreakKind.NOT_ANCHORED, chain=r["journey_id"],
                  detail="the journey is closed but no chain head was handed to Temporal")
            for r in await conn.fetch(UNANCHORED, policy)]


async def entry_hashes(conn: asyncpg.Connection, wanted: list[tuple[str, int]]
                       ) -> dict[tuple[str, int], str]:
    rows = await conn.fetch(ENTRY_HASHES, [j for j, _ in wanted], [s for _, s in wanted])
    return {(r["chain_id"], r["seq"]): r["entry_hash"].hex() for r in rows}


async def counts(conn: asyncpg.Connection, policy: str | None) -> asyncpg.Record:
    return await conn.fetchrow(COUNTS, policy)



async def verify(pool: asyncpg.Pool, policy: str | None = None, client: Client | None = None,
                 concurrency: int = 16) -> Verification:
    """Recompute the chains of one policy (or all) and compare them with the records and,
    given a Temporal client, with the heads in the journeys' histories."""
    async with snapshot(pool) as conn:
        # The checks run side by side on the pool's connections, all in this one view.
        shared = await conn.fetchval(EXPORT_SNAPSHOT)
        checks = (link_breaks, row_breaks, change_breaks, status_breaks, unanchored_breaks)
        found, *results = await asyncio.gather(
            counts(conn, policy), *(_in_snapshot(pool, shared, c, policy) for c in checks))
        anchored = await anchors(conn, policy)
    breaks = [b for found_breaks in results for b in found_breaks]
    breaks += anchor_breaks(anchored)
    histories = unavailable = None
    if client is not None:
        runs = await read_runs(client, {(a["workflow_id"], a["run_id"]) for a in anchored},
                               concurrency)
        heads = [(h.journey_id, h.seq) for r in runs.values() for h in r.heads]
        async with snapshot(pool) as conn:
            chain = await entry_hashes(conn, heads)
        breaks += history_breaks(anchored, runs, chain)
        histories = sum(r.found for r in runs.values())
        unavailable = len(runs) - histories
    return Verification(policy_number=policy, chains=found["chains"], entries=found["entries"],
                        records=found["records"], histories=histories,
                        histories_unavailable=unavailable, breaks=breaks)


async def read_runs(client: Client, runs: set[tuple[str, str]], concurrency: int
                    ) -> dict[tuple[str, str], RunHistory]:
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str, run_id: str) -> RunHistory:
        async with gate:
            return await read_run(client, workflow_id, run_id)

    read = await asyncio.gather(*(one(w, r) for w, r in sorted(runs)))
    return {(r.workflow_id, r.run_id): r for r in read}


def history_breaks(anchored: list[asyncpg.Record], runs: dict[tuple[str, str], RunHistory],
                   chain: dict[tuple[str, int], str]) -> list[Break]:
    """Temporal's heads against the chain, and PostgreSQL's anchors against Temporal."""
    breaks = []
    for run in runs.values():
        for head in run.heads:
            entry = chain.get((head.journey_id, head.seq))
            where = {"chain": head.journey_id, "seq": head.seq}
            if entry is None:
                breaks.append(Break(kind=BreakKind.HEAD_BEYOND_CHAIN, **where,
                                    detail=f"run {run.run_id} has this head; the chain has no "
                                           "such entry"))
            elif entry != head.hash:
                breaks.append(Break(kind=BreakKind.HEAD_MISMATCH, **where,
                                    detail=f"the entry differs from the head in run "
                                           f"{run.run_id}'s history"))
    for a in anchored:
        run = runs[a["workflow_id"], a["run_id"]]
        if run.found and not any(h.journey_id == a["journey_id"] and h.seq == a["seq"]
                                 for h in run.heads):
            breaks.append(Break(kind=BreakKind.ANCHOR_NOT_IN_HISTORY, chain=a["journey_id"],
                                seq=a["seq"], detail=f"anchored for run {a['run_id']}, whose "
                                                     "history has no such head"))
    return breaks
