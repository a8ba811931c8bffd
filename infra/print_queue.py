"""Named queries over the paper letters queued for the print vendor (print_queue)."""

from __future__ import annotations

import asyncpg

# One letter per notification id: queueing it again finds it.
_QUEUE = """
INSERT INTO print_queue (letter_id, policy_number, recipient_id, postal_address, pdf, pages,
                         missing_glyphs, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (letter_id) DO NOTHING
"""
_PDF = "SELECT pdf FROM print_queue WHERE letter_id = $1 AND policy_number = $2"


async def queue_letter(conn: asyncpg.Connection, letter_id: str, policy_number: str,
                       recipient_id: str, postal_address: str, pdf: bytes, pages: int,
                       missing_glyphs: int, status: str) -> None:
    await conn.execute(_QUEUE, letter_id, policy_number, recipient_id, postal_address, pdf,
                       pages, missing_glyphs, status)


async def letter_pdf(conn: asyncpg.Connection, letter_id: str,
                     policy_number: str) -> bytes | None:
    """The letter's PDF as queued, if it is this policy's."""
    return await conn.fetchval(_PDF, letter_id, policy_number)
