"""Version numbers for sources that have none of their own (a Hub repo's commits)."""

from __future__ import annotations

import time

from runhook.store.database import Store, Write

# The next number of the repo, unless this commit has one: the writer applies one
# statement at a time, so two deliveries at once still get different numbers.
_NUMBER = """INSERT OR IGNORE INTO source_versions (source, repo, sha, version, created_at)
    SELECT ?, ?, ?, COALESCE(MAX(version) + 1, 0), ? FROM source_versions
    WHERE source = ? AND repo = ?"""


async def version_of(store: Store, source: str, repo: str, sha: str) -> int:
    """The version number of commit `sha` of `repo`, numbered from 0 in the order
    first seen; durable, and the same for the same commit every time."""
    await store.commit(Write([(_NUMBER, [(source, repo, sha, time.time(), source, repo)])]))
    rows = await store._fetch(  # the store room reading its own table
        "SELECT version FROM source_versions WHERE source = ? AND repo = ? AND sha = ?",
        (source, repo, sha))
    return int(rows[0][0])
