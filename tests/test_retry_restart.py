"""The retry schedule lives in the database: a retry due after a restart is made by
the next daemon, at its scheduled time, to the same execution."""

from __future__ import annotations

import time

from conftest import eventually, execution, settled, webhook_config

ALIAS = {"type": "artifact.alias_added", "entity": "acme", "registry": "model",
         "collection": "resnet", "version": 3, "alias": "production"}


async def test_a_retry_scheduled_before_a_restart_is_made_after_it(start_daemon, receiver):
    receiver.responses.append((503, "busy", {}))
    daemon = await start_daemon(webhook_config(receiver.url))
    async with daemon.client() as client:
        assert await client.send(ALIAS) == {"ok": True}
    first = await receiver.next(timeout=10)
    execution_id = first.headers["webhook-id"]
    pending = await eventually(lambda: execution(daemon, execution_id),
                               lambda a: a["execution"]["attempts"] == 1 and a["attempts"])
    due = pending["execution"]["next_attempt_at"]
    assert pending["execution"]["state"] == "PENDING"
    assert 4.0 <= due - pending["execution"]["updated_at"] <= 6.0  # 5 s ±20 %

    assert await daemon.stop() == 0
    # Stopped before the retry was due: only the next daemon can make it.
    assert time.time() < due, "the daemon took too long to stop; the test proves nothing"
    assert len(receiver.requests) == 1
    restarted = time.time()

    daemon = await start_daemon(config=daemon.config)
    second = await receiver.next(timeout=10)
    assert second.headers["webhook-id"] == execution_id  # the same execution, retried
    done = await settled(daemon, execution_id)
    assert done["execution"]["state"] == "FINISHED"
    assert done["execution"]["attempts"] == 2
    assert [a["status"] for a in done["attempts"]] == [503, 200]
    # Made by the new daemon, on the schedule: not before it was due, not at start.
    assert done["attempts"][1]["started_at"] >= max(due, restarted)
    assert len(receiver.requests) == 2
