"""The cursors of followed sources (an MLflow tracking server): one row per source."""

from __future__ import annotations

from runhook.store.database import Store, Write

SAVE_CURSOR = """INSERT INTO source_cursors (source, cursor, pending, updated_at)
    VALUES (?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor,
    pending = excluded.pending, updated_at = excluded.updated_at"""


async def load_cursor(store: Store, source: str) -> tuple[bytes, bytes] | None:
    """(cursor, pending events) as last saved for `source`, or None."""
    rows = await store._fetch(  # the store room reading its own table
        "SELECT cursor, pending FROM source_cursors WHERE source = ?", (source,))
    return (bytes(rows[0][0]), bytes(rows[0][1])) if rows else None


def save_cursor(source: str, cursor: bytes, pending: bytes, now: float) -> Write:
    """The write that saves both, in one transaction."""
    return Write([(SAVE_CURSOR, [(source, cursor, pending, now)])])
