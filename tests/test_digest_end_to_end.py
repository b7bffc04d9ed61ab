"""Digests through the real daemon and a real receiver on loopback: a storm of one
sweep is one delivery listing every firing, each firing a GROUPED execution
pointing at it; the next firing after the window is a second digest; a window open
when the daemon is killed -9 is delivered once after the restart; `by` splits keys;
a silence wins over the digest. Short windows; waits on the receiver and history."""

from __future__ import annotations

import asyncio
import json
import signal
import time

from conftest import Receiver, eventually

SCOPE = "project:acme/vision"
PAYLOAD = '{"count": "${digest_count}", "key": "${digest_key}", "items": "${digest_items}"}'


def config(url: str, window: str, by: str = '["group"]') -> str:
    return f"""
[integrations.ci]
kind = "webhook"
url = "{url}"
allow_http = true
allow_private = true

[[automations]]
name = "failed"
scope = "{SCOPE}"
event = {{ kind = "RUN_STATE", states = ["failed"] }}
action = {{ integration = "ci", payload = '''{PAYLOAD}''' }}
digest = {{ window = "{window}", by = {by} }}
"""


def failed(run_id: str, group: str = "sweep-7", name: str | None = None) -> dict:
    return {"type": "run.state", "entity": "acme", "project": "vision", "run_id": run_id,
            "run_name": name or f"trial-{run_id}", "user": "ana", "group": group,
            "state": "failed"}


async def fail_all(daemon, events: list[dict]) -> None:
    async with daemon.client() as client:
        for event in events:
            assert (await client.send(event))["ok"]


async def history(daemon, state: str | None = None) -> list[dict]:
    async with daemon.client() as client:
        request = {"type": "query.history", "automation": "failed", "limit": 1000}
        answer = await client.request({**request, **({"state": state} if state else {})})
    return answer["executions"]


def body(received) -> dict:
    return json.loads(received.body)


async def test_a_storm_is_one_delivery_listing_every_firing(start_daemon, receiver: Receiver):
    daemon = await start_daemon(config(receiver.url, "3s"))
    await fail_all(daemon, [failed(f"r{i:03}") for i in range(100)])
    first = body(await receiver.next())
    assert first["count"] == 100 and first["key"] == "sweep-7"
    assert sorted(item["run_id"] for item in first["items"]) == [f"r{i:03}" for i in range(100)]
    assert {item["run_group"] for item in first["items"]} == {"sweep-7"}
    digest_id = receiver.requests[0].headers["webhook-id"]
    grouped = await history(daemon, "GROUPED")
    assert len(grouped) == 100 and {g["digest_id"] for g in grouped} == {digest_id}
    assert {g["reason"] for g in grouped} == {f"grouped into digest {digest_id}"}
    # The console links a firing to its digest.
    async with daemon.console() as http, \
            http.get(f"{daemon.http}/executions/{grouped[0]['id']}") as page:
        assert f'href="/executions/{digest_id}"' in await page.text()
    await eventually(lambda: history(daemon, "FINISHED"),
                     lambda rows: [r["id"] for r in rows] == [digest_id])
    assert len(receiver.requests) == 1
    # A firing after the window closed opens a second one: a second digest of one.
    await fail_all(daemon, [failed("late")])
    second = body(await receiver.next())
    assert second["count"] == 1 and [i["run_id"] for i in second["items"]] == ["late"]
    assert receiver.requests[1].headers["webhook-id"] != digest_id
    assert len(await history(daemon, "GROUPED")) == 101


async def test_an_open_window_survives_kill_9_and_is_delivered_once(start_daemon,
                                                                    receiver: Receiver):
    daemon = await start_daemon(config(receiver.url, "2s"))
    await fail_all(daemon, [failed(f"r{i}") for i in range(5)])
    killed_at = time.time()
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    assert receiver.requests == []
    # Down past the window's close: the restart delivers it at once.
    await asyncio.sleep(max(0.0, killed_at + 2.5 - time.time()))
    daemon = await start_daemon(config=daemon.config)
    delivered = body(await receiver.next())
    assert delivered["count"] == 5
    assert sorted(i["run_id"] for i in delivered["items"]) == [f"r{i}" for i in range(5)]
    digest_id = receiver.requests[0].headers["webhook-id"]
    await eventually(lambda: history(daemon, "FINISHED"),
                     lambda rows: [r["id"] for r in rows] == [digest_id])
    # Once: a second restart finds no window left to send.
    assert await daemon.stop() == 0
    daemon = await start_daemon(config=daemon.config)
    await fail_all(daemon, [failed("after", group="other")])
    assert body(await receiver.next())["key"] == "other"
    assert [r.headers["webhook-id"] for r in receiver.requests].count(digest_id) == 1
    assert len(receiver.requests) == 2


async def test_by_run_name_splits_and_a_silence_wins(start_daemon, receiver: Receiver):
    daemon = await start_daemon(config(receiver.url, "1s", '["run_name"]'))
    async with daemon.client() as client:
        answer = await client.request({"type": "command.silence_add", "automation": "failed",
                                       "run_name": "^muted$", "duration": "1h",
                                       "comment": "known bad"})
        assert answer["ok"], answer
    await fail_all(daemon, [failed("a1", name="alpha"), failed("b1", name="beta"),
                            failed("a2", name="alpha"), failed("m1", name="muted")])
    first, second = body(await receiver.next()), body(await receiver.next())
    assert sorted((d["key"], d["count"]) for d in (first, second)) == [("alpha", 2), ("beta", 1)]
    skipped = await history(daemon, "SKIPPED")
    assert [s["run_id"] for s in skipped] == ["m1"]
    assert skipped[0]["reason"].endswith(": known bad") and skipped[0]["digest_id"] is None
    assert len(await history(daemon, "GROUPED")) == 3
    await eventually(lambda: history(daemon, "FINISHED"), lambda rows: len(rows) == 2)
    assert len(receiver.requests) == 2
