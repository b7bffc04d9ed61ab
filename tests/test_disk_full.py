"""A full disk: the daemon says what, keeps running, keeps what it acknowledged,
and recovers once there is room again. The database lives on a tiny tmpfs."""

from __future__ import annotations

import aiohttp
import pytest
from test_socket import GOOD, RECORD


@pytest.fixture
def tiny_disk(tmpfs):
    return tmpfs("2m")


async def test_full_disk_is_reported_and_nothing_acknowledged_is_lost(start_daemon, tiny_disk):
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (1200 * 1024))
    daemon = await start_daemon(RECORD)
    # Move the database onto the tiny disk: restart on a config pointing there.
    assert await daemon.stop() == 0
    config = daemon.config.read_text().replace(f'database = "{daemon.directory}/runhook.db"',
                                               f'database = "{tiny_disk}/runhook.db"')
    daemon.config.write_text(config)
    daemon = await start_daemon(config=daemon.config)

    acked, refused = [], None
    async with daemon.client() as client:
        for version in range(400):
            answer = await client.request({**GOOD, "version": version,
                                           "metadata": {"blob": "x" * 20_000}})
            if answer["ok"]:
                acked.append(version)
            else:
                refused = answer["error"]
                break
        assert refused is not None, "the disk never filled"
        assert refused.startswith(f"line {len(acked) + 1}: database write failed: "
                                  "database or disk is full")

        # Still running, and saying it is not ready while writes fail.
        async with aiohttp.ClientSession() as http:
            async with http.get(daemon.http + "/healthz") as r:
                assert r.status == 200
            async with http.get(daemon.http + "/readyz") as r:
                assert r.status == 503
                assert (await r.json())["checks"]["database"] is False

        filler.unlink()  # room again
        assert await client.request({**GOOD, "version": 10_000}) == {"ok": True}
        async with aiohttp.ClientSession() as http, http.get(daemon.http + "/readyz") as r:
            assert r.status == 200  # a commit went through: ready again
        rows = (await client.request({"type": "query.history", "limit": 1000}))["executions"]
    versions = sorted(r["context"]["artifact_version_index"] for r in rows)
    assert versions == acked + [10_000]
    assert "database or disk is full" in daemon.log_text()


async def test_a_crossing_refused_by_a_full_disk_fires_when_retried(start_daemon, tiny_disk):
    """The refused event's evaluation must not stick: the client's retry is
    evaluated against the last committed state, so the crossing still fires."""
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (1200 * 1024))
    body = RECORD + """
[[automations]]
name = "high"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5 }
action = { kind = "none" }
"""
    first = await start_daemon(body)
    assert await first.stop() == 0
    first.config.write_text(first.config.read_text().replace(
        f'database = "{first.directory}/runhook.db"', f'database = "{tiny_disk}/runhook.db"'))
    daemon = await start_daemon(config=first.config)
    # A long run name makes the crossing's write as large as the artifacts that
    # filled the disk: a small one can fit in the WAL space SQLite already has.
    metric = {"type": "run.metrics", "entity": "acme", "project": "vision", "run_id": "r1",
              "run_name": "prod-" + "x" * 60_000, "user": "ana"}
    async with daemon.client() as client:
        assert await client.request({**metric, "values": {"loss": 1.0}}) == {"ok": True}
        for version in range(400):  # fill the disk
            if not (await client.request({**GOOD, "version": version,
                                          "metadata": {"blob": "x" * 20_000}}))["ok"]:
                break
        # ...to the last page: where a large write no longer fits, a small one may still
        # (how much is left depends on the schema's size, not on anything tested here).
        for version in range(400, 800):
            if not (await client.request({**GOOD, "version": version}))["ok"]:
                break
        refused = await client.request({**metric, "values": {"loss": 10.0}})
        assert refused["ok"] is False and "database or disk is full" in refused["error"]
        filler.unlink()
        assert await client.request({**metric, "values": {"loss": 10.0}}) == {"ok": True}
        rows = (await client.request({"type": "query.history", "automation": "high"}))
    assert [r["context"]["metric_values"] for r in rows["executions"]] == [[10.0]]
