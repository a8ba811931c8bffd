"""Notes and reasons that agents type: kept here, never in Temporal's history."""

from __future__ import annotations

import asyncpg

_KEEP = """
INSERT INTO journey_notes (policy_number, journey_id, kind, reference, text, written_by)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (policy_number, kind, reference, text) DO UPDATE SET text = EXCLUDED.text
RETURNING note_id
"""


async def keep_note(conn: asyncpg.Connection, policy_number: str, kind: str, reference: str,
                    text: str, *, journey_id: str | None = None,
                    written_by: str | None = None) -> int:
    """Store the note once (the same text for the same reference is one note)."""
    return await conn.fetchval(_KEEP, policy_number, journey_id, kind, reference, text,
                               written_by)
