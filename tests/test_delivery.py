"""Delivery against real receivers on loopback: retries, Retry-After, 410, isolation,
rate limits, SSRF refusals, redelivery, test requests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
from aiohttp import web
from conftest import eventually, execution, free_port, settled

ALIAS = {"type": "artifact.alias_added", "entity": "acme", "registry": "model",
         "collection": "resnet", "version": 1, "alias": "production"}


def integration(name: str, url: str, extra: str = "", private: bool = True) -> str:
    return f"""
[integrations.{name}]
kind = "webhook"
url = "{url}"
allow_http = true
allow_private = {str(private).lower()}
{extra}
"""


def automation(name: str, integration_name: str,
               payload: str = '{"v": "${artifact_version_index}", "id": "${execution_id}"}') -> str:
    return f"""
[[automations]]
name = "{name}"
scope = "registry:acme/model"
event = {{ kind = "ADD_ARTIFACT_ALIAS" }}
action = {{ integration = "{integration_name}", payload = '{payload}' }}
"""


def cli(daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runhook", *args, "--socket", daemon.socket],
                          check=False, capture_output=True, text=True, timeout=60)


async def send(daemon, *versions: int) -> None:
    async with daemon.client() as client:
        for v in versions:
            assert await client.send({**ALIAS, "version": v}) == {"ok": True}


async def test_retry_after_is_respected(start_daemon, receiver):
    """A Retry-After longer than the scheduled wait (5 s ±20 %) moves the retry out;
    the schedule lives in the database, so the row shows it without waiting."""
    receiver.responses.append((429, "slow down", {"Retry-After": "3600"}))
    daemon = await start_daemon(integration("ci", receiver.url) + automation("a", "ci"))
    await send(daemon, 1)
    first = await receiver.next()
    answer = await eventually(lambda: execution(daemon, first.headers["webhook-id"]),
                              lambda a: a["execution"]["attempts"] == 1 and a["attempts"])
    assert answer["execution"]["state"] == "PENDING"
    assert answer["attempts"][0]["status"] == 429
    wait = answer["execution"]["next_attempt_at"] - answer["execution"]["updated_at"]
    assert 3600.0 <= wait <= 3601.0


async def test_410_disables_until_enabled(start_daemon, receiver):
    receiver.responses.append((410, "gone", {}))
    daemon = await start_daemon(integration("ci", receiver.url) + automation("a", "ci"))
    await send(daemon, 1)
    first = await receiver.next()
    failed = await settled(daemon, first.headers["webhook-id"])
    assert failed["execution"]["state"] == "FAILED"
    assert failed["execution"]["reason"] == "HTTP 410"
    assert failed["attempts"][0]["response"] == "gone"

    status = json.loads((await asyncio.to_thread(cli, daemon, "status", "--json")).stdout)
    [ci] = status["integrations"]
    assert ci["disabled"].startswith("HTTP 410 (execution ") and "runhook enable ci" in ci["disabled"]

    await send(daemon, 2)  # waits, PENDING, while the integration is disabled
    async with daemon.client() as client:
        rows = (await client.request({"type": "query.history", "limit": 1}))["executions"]
    assert rows[0]["state"] == "PENDING" and rows[0]["attempts"] == 0
    assert len(receiver.requests) == 1

    enabled = await asyncio.to_thread(cli, daemon, "enable", "ci")
    assert enabled.returncode == 0 and "was disabled: HTTP 410" in enabled.stdout
    second = await receiver.next()
    assert json.loads(second.body)["v"] == 2
    assert (await settled(daemon, rows[0]["id"]))["execution"]["state"] == "FINISHED"


async def test_disabled_state_survives_restart(start_daemon, receiver):
    receiver.responses.append((410, "gone", {}))
    daemon = await start_daemon(integration("ci", receiver.url) + automation("a", "ci"))
    await send(daemon, 1)
    await settled(daemon, (await receiver.next()).headers["webhook-id"])
    assert await daemon.stop() == 0
    daemon = await start_daemon(config=daemon.config)
    status = json.loads((await asyncio.to_thread(cli, daemon, "status", "--json")).stdout)
    assert status["integrations"][0]["disabled"].startswith("HTTP 410")


async def test_a_hanging_endpoint_does_not_delay_another(start_daemon, receiver, serve):
    release = asyncio.Event()
    hanging: list[int] = []  # the versions the slow endpoint received, in order
    arrived: asyncio.Queue[int] = asyncio.Queue()

    async def hang(request: web.Request) -> web.Response:
        version = json.loads(await request.read())["v"]
        hanging.append(version)
        arrived.put_nowait(version)
        await release.wait()
        return web.Response(text="late")

    slow_url = await serve(hang)
    try:
        config = (integration("slow", slow_url,
                              "max_in_flight = 2\ntimeout = 60") + automation("s", "slow")
                  + integration("fast", receiver.url) + automation("f", "fast"))
        daemon = await start_daemon(config)
        await send(daemon, 1, 2, 3, 4, 5)
        # First the slow endpoint holds both of its slots (awaited: its requests may
        # arrive after the fast endpoint's)...
        held = {await asyncio.wait_for(arrived.get(), 20) for _ in range(2)}
        # ...then all five reach the fast one, none of the held requests answered.
        fast = sorted([json.loads((await receiver.next()).body)["v"] for _ in range(5)])
        assert fast == [1, 2, 3, 4, 5]
        # max_in_flight = 2 keeps the other three back while the two hang.
        assert len(hanging) == 2
        release.set()
        rest = {await asyncio.wait_for(arrived.get(), 20) for _ in range(3)}
        assert held | rest == {1, 2, 3, 4, 5} and len(hanging) == 5
    finally:
        release.set()  # a failed assertion must not leave the handlers hanging


async def test_rate_limit_holds(start_daemon, receiver):
    rate, count = 10, 30
    daemon = await start_daemon(integration("ci", receiver.url, f'rate = "{rate}/s"')
                                + automation("a", "ci"))
    await send(daemon, *range(count))
    arrivals = [(await receiver.next()).at for _ in range(count)]
    first = arrivals[0]
    # A bucket of 10 tokens refilled at 10/s: the 30th request cannot come before 2 s,
    # and no one-second span holds more than the burst plus one second of refill.
    assert arrivals[-1] - first >= (count - rate) / rate - 0.05
    for i, t in enumerate(arrivals):
        within = sum(1 for u in arrivals[i:] if u - t < 1.0)
        assert within <= 2 * rate


# Literal private addresses are refused at load (test_config); a name is judged on
# what it resolves to, at send time.
@pytest.mark.parametrize("url, reason", [
    ("http://localhost:9/x", "localhost resolves to 127.0.0.1 is a loopback address"),
])
async def test_ssrf_refusals_fail_without_retry(start_daemon, url, reason):
    daemon = await start_daemon(integration("ci", url, private=False) + automation("a", "ci"))
    await send(daemon, 1)
    async with daemon.client() as client:
        rows = (await client.request({"type": "query.history"}))["executions"]
    answer = await settled(daemon, rows[0]["id"])
    assert answer["execution"]["state"] == "FAILED"
    assert reason in answer["execution"]["reason"]
    assert answer["execution"]["reason"].startswith("destination refused")
    assert len(answer["attempts"]) == 1


async def test_allow_private_lifts_the_guard_for_localhost(start_daemon, receiver):
    url = receiver.url.replace("127.0.0.1", "localhost")
    daemon = await start_daemon(integration("ci", url, private=True) + automation("a", "ci"))
    await send(daemon, 1)
    assert json.loads((await receiver.next()).body)["v"] == 1


async def test_no_cookie_carries_over_between_deliveries(start_daemon, receiver):
    """An endpoint's Set-Cookie is not stored: every delivery stands alone."""
    receiver.responses.append((200, "ok", {"Set-Cookie": "session=abc; Path=/"}))
    url = receiver.url.replace("127.0.0.1", "localhost")  # a name: jars refuse IP cookies
    daemon = await start_daemon(integration("ci", url) + automation("a", "ci"))
    await send(daemon, 1, 2)
    first, second = await receiver.next(), await receiver.next()
    assert "Cookie" not in first.headers and "Cookie" not in second.headers


async def test_redeliver_one_and_failed_since(start_daemon, receiver):
    receiver.responses.extend([(400, "bad", {}), (400, "bad", {})])
    daemon = await start_daemon(integration("ci", receiver.url) + automation("a", "ci"))
    await send(daemon, 1, 2)
    ids = [(await receiver.next()).headers["webhook-id"] for _ in range(2)]
    for execution_id in ids:
        assert (await settled(daemon, execution_id))["execution"]["state"] == "FAILED"

    one = await asyncio.to_thread(cli, daemon, "redeliver", ids[0])
    assert one.returncode == 0 and ids[0] in one.stdout
    again = await receiver.next()
    assert again.headers["webhook-id"] == ids[0]  # same id: receivers deduplicate
    done = await settled(daemon, ids[0])
    assert done["execution"]["state"] == "FINISHED"
    assert [a["status"] for a in done["attempts"]] == [400, 200]

    rest = await asyncio.to_thread(cli, daemon, "redeliver", "--failed", "--since", "1h",
                                   "--automation", "a")
    assert rest.returncode == 0 and rest.stdout.startswith("1 execution queued")
    assert (await receiver.next()).headers["webhook-id"] == ids[1]
    none_left = await asyncio.to_thread(cli, daemon, "redeliver", "--failed", "--since", "1h")
    assert none_left.stdout.startswith("0 executions queued")


async def test_test_command(start_daemon, receiver):
    receiver.responses.append((202, "accepted: thanks", {}))
    daemon = await start_daemon(integration("ci", receiver.url) + automation("a", "ci"))
    result = await asyncio.to_thread(cli, daemon, "test", "ci", "--payload", '{"ping": 1}')
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].endswith("status 202")
    assert result.stdout.splitlines()[1] == "accepted: thanks"
    request = await receiver.next()
    assert json.loads(request.body) == {"ping": 1}
    answer = await execution(daemon, request.headers["webhook-id"])
    assert answer["execution"]["automation"] == "(test)"
    assert answer["execution"]["state"] == "FINISHED"
    bad = await asyncio.to_thread(cli, daemon, "test", "nope")
    assert bad.returncode == 1 and "no integration 'nope'" in bad.stderr


async def waiting_on_a_dead_endpoint(start_daemon) -> tuple[Any, dict]:
    """A daemon whose one execution targets a port where nothing listens, once
    attempt 1 has failed and its retry is scheduled (5 s out, ±20 %)."""
    daemon = await start_daemon(integration("ci", f"http://127.0.0.1:{free_port()}/hook")
                                + automation("a", "ci"))
    await send(daemon, 1)
    async with daemon.client() as client:
        rows = (await client.request({"type": "query.history"}))["executions"]
    # The row's own count: the execution and its attempts are two reads, and the
    # attempt may show up before the row's update does.
    answer = await eventually(lambda: execution(daemon, rows[0]["id"]),
                              lambda a: a["execution"]["attempts"] >= 1 and a["attempts"])
    return daemon, answer


async def test_receiver_down_is_retried_on_the_schedule(start_daemon):
    """The retry schedule: the first retry is 5 s (±20 %) after the first attempt, not at once:
    the recorded schedule says so, and no second attempt has been made meanwhile."""
    _, answer = await waiting_on_a_dead_endpoint(start_daemon)
    assert answer["execution"]["state"] == "PENDING"
    assert len(answer["attempts"]) == 1
    # The error says what happened, not where: the URL may be a secret.
    assert answer["attempts"][0]["error"] == \
        "cannot connect to the endpoint: connection refused"
    assert 4.0 <= answer["execution"]["next_attempt_at"] - answer["execution"]["updated_at"] <= 6.0


async def test_no_duplicates_without_a_crash_when_the_queue_overflows(start_daemon, serve):
    """More executions than the delivery queue holds: the rest wait in the database
    and are read back by scans. At-least-once allows duplicates after a crash;
    without one, each execution must arrive exactly once."""
    from runhook.core.constants import DELIVERY_QUEUE_SIZE
    count = DELIVERY_QUEUE_SIZE + 600
    gate = asyncio.Event()
    ids: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        await gate.wait()  # hold the first requests until every event is in
        ids.append(request.headers["webhook-id"])
        return web.Response(text="ok")

    url = await serve(hook)
    daemon = await start_daemon(integration("ci", url, "max_in_flight = 16")
                                + automation("a", "ci"))
    reader, writer = await asyncio.open_unix_connection(daemon.socket)
    writer.write(b"".join(json.dumps({**ALIAS, "version": v}).encode() + b"\n"
                          for v in range(count)))
    await writer.drain()
    for _ in range(count):
        assert await reader.readline() == b'{"ok":true}\n'
    writer.close()
    # All committed while 16 requests hang: the in-memory queue overflowed.
    gate.set()

    async with daemon.client() as client:
        async def finished() -> int:
            rows = (await client.request({"type": "query.history", "limit": count}))["executions"]
            return sum(r["state"] == "FINISHED" for r in rows)
        await eventually(finished, lambda n: n == count, timeout=60)
    # Everything is committed FINISHED: a duplicate would have been sent by now.
    assert len(ids) == count
    assert len(set(ids)) == count


async def test_reload_without_an_integration_fails_its_pending_executions(start_daemon):
    daemon, pending = await waiting_on_a_dead_endpoint(start_daemon)
    assert pending["execution"]["state"] == "PENDING"

    daemon.config.write_text(daemon.config.read_text().split("[integrations.ci]")[0])
    reloaded = await asyncio.to_thread(cli, daemon, "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    failed = await settled(daemon, pending["execution"]["id"])
    assert failed["execution"]["state"] == "FAILED"
    assert failed["execution"]["reason"].startswith("integration ci is no longer configured")


async def test_integration_timeout(start_daemon, serve):
    never = asyncio.Event()

    async def silent(request: web.Request) -> web.Response:
        await never.wait()  # answers only when the test ends
        return web.Response(text="late")

    url = await serve(silent)
    daemon = await start_daemon(integration("ci", url, "timeout = 0.5") + automation("a", "ci"))
    await send(daemon, 1)
    async with daemon.client() as client:
        rows = (await client.request({"type": "query.history"}))["executions"]
    # Attempt 1 times out; its retry waits 5 s, PENDING.
    answer = await eventually(lambda: execution(daemon, rows[0]["id"]),
                              lambda a: a["execution"]["attempts"] >= 1 and a["attempts"])
    never.set()
    assert answer["execution"]["state"] == "PENDING"
    assert answer["attempts"][0]["error"] == "timed out after 0.5s"
    assert 450 <= answer["attempts"][0]["duration_ms"] < 5000
