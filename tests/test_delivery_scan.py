"""The delivery actor's scan of the database, with a retry committed while it reads."""

from __future__ import annotations

from types import SimpleNamespace

from runhook.config import settings
from runhook.config.model import decode
from runhook.core.metrics import Metrics
from runhook.delivery.actor import DeliveryActor
from runhook.store.database import Store

CONFIG = """
[integrations.ci]
kind = "webhook"
url = "https://hooks.example.com/x"
"""


async def test_a_retry_committed_during_a_scan_is_not_overwritten(tmp_path):
    """The scan's `next_due_after` read can predate a retry's commit; the time that
    retry asked for must survive the scan, or it waits for an unrelated wake-up."""
    store = Store(tmp_path / "r.db")
    await store.open()
    runtime = SimpleNamespace(settings=settings.build(decode(CONFIG)), metrics=Metrics())
    actor = DeliveryActor("ci", runtime, store)  # type: ignore[arg-type]
    read = store.next_due_after
    asked: list[float] = []

    async def read_then_a_retry_commits(integration: str, now: float) -> float | None:
        answer = await read(integration, now)  # nothing PENDING: None
        asked.append(now + 5.0)
        actor._scan_by(now + 5.0)  # what the attempt's commit callback does
        return answer

    store.next_due_after = read_then_a_retry_commits  # type: ignore[method-assign]
    try:
        await actor._scan()
        due = actor._next_scan
    finally:
        await store.close()
    assert due == asked[0]  # before the fix: inf, and the retry was never sent
    assert actor.queued == 0
