"""A real MLflow 3 tracking server (SQLite, loopback), real training scripts using
`mlflow.start_run` / `mlflow.log_metric`, and a real daemon following the server
(docs/mlflow.md): crossings, failed and SIGKILLed runs, a daemon killed -9 between looks,
nested runs as a group, and a server answering 500 for a while. One server for the
module (it takes a while to start); each test has its own experiment and daemon."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import eventually, free_port

from runhook.config.model import Server

MLFLOW_PYTHON = os.environ.get("RUNHOOK_MLFLOW_PYTHON")
if not MLFLOW_PYTHON and os.environ.get("CI"):
    pytest.fail("RUNHOOK_MLFLOW_PYTHON is not set (make test sets it)", pytrace=False)
pytestmark = pytest.mark.skipif(not MLFLOW_PYTHON, reason="RUNHOOK_MLFLOW_PYTHON is not set")

# A look every 0.2 s; the daemon's heartbeat check (another part of §9) wants the
# clients' heartbeat interval declared when the timeout is this short.
CLIENT_HEARTBEAT = 'client_heartbeat = "0.2s"\n' \
    if "client_heartbeat" in Server.__struct_fields__ else ""


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tracking server's URL, for the whole module."""
    assert MLFLOW_PYTHON
    directory = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    mlflow_bin = Path(MLFLOW_PYTHON).parent / "mlflow"
    log = (directory / "mlflow.log").open("wb")
    server = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{directory}/mlflow.db",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).close()
            break
        except OSError:
            assert server.poll() is None, (directory / "mlflow.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the MLflow server did not start in 120 s"
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(30)
    log.close()


def config(url: str, experiment: str, automations: str, timeout: str = "5s",
           extra: str = "") -> str:
    return f"""heartbeat_timeout = "{timeout}"
{CLIENT_HEARTBEAT}
[sources.tracking]
kind = "mlflow-tracking"
url = "{url}"
entity = "acme"
experiments = ["{experiment}"]
interval = "0.2s"
group_tag = "mlflow.parentRunId"
allow_http = true
allow_private = true
{extra}
{automations}"""


def automation(name: str, experiment: str, event: str) -> str:
    return f"""
[[automations]]
name = "{name}"
scope = "project:acme/{experiment}"
event = {event}
action = {{ kind = "none" }}
cooldown = "0"
"""


LOSS_BELOW = '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = "<", threshold = 0.5 }'
FAILED = '{ kind = "RUN_STATE", states = ["failed"] }'

# The training script: reads commands from stdin, one per line, so a test can act
# between them: `start NAME [PARENT]`, `log KEY VALUE STEP`, `end STATUS`, `wait`.
TRAIN = textwrap.dedent("""
    import sys
    import mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment(sys.argv[2])
    runs = []
    for line in sys.stdin:
        command, *args = line.split()
        if command == "start":
            runs.append(mlflow.start_run(run_name=args[0], nested=len(args) > 1))
            mlflow.log_param("lr", "0.1")
            mlflow.set_tag("team", "vision")
        elif command == "log":
            mlflow.log_metric(args[0], float(args[1]), step=int(args[2]))
        elif command == "end":
            mlflow.end_run(status=args[0])
            runs.pop()
        print("done", flush=True)
""")


class Trainer:
    """A training process driven line by line; each command answered once done."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, url: str, experiment: str) -> Trainer:
        assert MLFLOW_PYTHON
        process = await asyncio.create_subprocess_exec(
            MLFLOW_PYTHON, "-c", TRAIN, url, experiment, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "MLFLOW_ENABLE_ASYNC_LOGGING": "false"})
        return cls(process)

    async def __call__(self, *commands: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        for command in commands:
            self.process.stdin.write(command.encode() + b"\n")
            await self.process.stdin.drain()
            # MLflow prints its own lines ("View run … at …"): skipped.
            while (line := await asyncio.wait_for(self.process.stdout.readline(), 60)) \
                    != b"done\n":
                assert line, f"the training script died on {command!r}"

    async def close(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            await asyncio.wait_for(self.process.wait(), 60)


async def history(daemon: Any, automation_name: str) -> list[dict[str, Any]]:
    async with daemon.client() as client:
        answer = await client.request({"type": "query.history", "automation": automation_name,
                                       "limit": 100})
    assert answer["ok"], answer
    return sorted(answer["executions"], key=lambda e: e["created_at"])


def step(row: dict[str, Any]) -> int:
    """The step of the point that fired, from the event id (mlt:SOURCE:RUN:STEP:…)."""
    return int(row["event_id"].split(":")[3])


def context(row: dict[str, Any]) -> dict[str, Any]:
    found = row["context"]
    return json.loads(found) if isinstance(found, str) else found


async def status(daemon: Any) -> dict[str, Any]:
    async with daemon.client() as client:
        answer = await client.request({"type": "query.status"})
    return answer["status"]["sources"][0]


async def test_a_crossing_fires_once_and_a_failed_run_fires_failed(start_daemon, tracking):
    daemon = await start_daemon(config(tracking, "cross", automation("low", "cross", LOSS_BELOW)
                                       + automation("failed", "cross", FAILED)))
    train = await Trainer.start(tracking, "cross")
    # loss 0.9, 0.7, 0.45, 0.3, 0.35: below 0.5 from step 2 on, one crossing.
    await train("start ok", *(f"log loss {v} {step}" for step, v in
                              enumerate([0.9, 0.7, 0.45, 0.3, 0.35])), "end FINISHED",
                "start bad", "log loss 2.0 0", "end FAILED")
    await train.close()
    failed = await eventually(lambda: history(daemon, "failed"), lambda rows: len(rows) == 1)
    low = await history(daemon, "low")
    assert len(low) == 1
    fired = context(low[0])
    assert fired["metric_values"] == [0.45]
    assert fired["run_name"] == "ok"
    assert fired["run_config"] == {"lr": "0.1"}
    assert fired["run_tags"] == ["team=vision"]
    assert fired["run_url"] == f"{tracking}/#/runs/{fired['run_id']}"
    assert low[0]["event_id"].startswith(f"mlt:tracking:{fired['run_id']}:2:")
    assert context(failed[0])["run_status"] == "failed"
    assert context(failed[0])["run_name"] == "bad"
    assert (await status(daemon))["last_error"] is None


async def test_a_run_killed_with_sigkill_is_crashed_after_the_timeout(start_daemon, tracking):
    daemon = await start_daemon(config(tracking, "kill", automation("failed", "kill", FAILED),
                                       timeout="1s"))
    train = await Trainer.start(tracking, "kill")
    await train("start doomed", "log loss 1.0 0")
    train.process.send_signal(signal.SIGKILL)  # MLflow keeps it RUNNING forever
    await train.process.wait()
    crashed = await eventually(lambda: history(daemon, "failed"), lambda rows: len(rows) == 1)
    assert context(crashed[0])["run_status"] == "crashed"
    assert context(crashed[0])["run_name"] == "doomed"


async def test_a_daemon_killed_between_looks_loses_and_repeats_nothing(start_daemon, tracking):
    body = config(tracking, "restart", automation("low", "restart", LOSS_BELOW))
    daemon = await start_daemon(body)
    train = await Trainer.start(tracking, "restart")
    # Each 0.9 → 0.1 is a crossing: three before the kill, three while down, two after.
    series = [0.9, 0.1] * 8
    await train("start r", *(f"log loss {v} {s}" for s, v in enumerate(series[:6])))
    await eventually(lambda: history(daemon, "low"), lambda rows: len(rows) == 3)
    await daemon.stop(signal.SIGKILL)
    await train(*(f"log loss {v} {s}" for s, v in enumerate(series[6:12], 6)))
    daemon = await start_daemon(config=daemon.config)
    await train(*(f"log loss {v} {s}" for s, v in enumerate(series[12:], 12)), "end FINISHED")
    await train.close()
    rows = await eventually(lambda: history(daemon, "low"), lambda rows: len(rows) >= 8)
    # Looks go on; a repeat would show up by now as a ninth.
    await eventually(lambda: status(daemon), lambda s: s["looks"] >= 5)
    rows = await history(daemon, "low")
    steps = sorted(step(r) for r in rows)
    assert steps == [1, 3, 5, 7, 9, 11, 13, 15]


async def test_nested_runs_finish_as_one_group(start_daemon, tracking):
    done = '{ kind = "GROUP_FINISHED", settle = "0.5s", metric = "loss", goal = "minimize" }'
    daemon = await start_daemon(config(tracking, "sweep", automation("sweep", "sweep", done)))
    train = await Trainer.start(tracking, "sweep")
    await train("start parent",
                "start trial-1 child", "log loss 0.4 0", "end FINISHED",
                "start trial-2 child", "log loss 0.2 0", "end FAILED",
                "start trial-3 child", "log loss 0.3 0", "end FINISHED",
                "end FINISHED")
    await train.close()
    fired = await eventually(lambda: history(daemon, "sweep"), lambda rows: len(rows) == 1)
    group = context(fired[0])
    assert (group["group_runs"], group["group_finished"], group["group_failed"]) == (3, 2, 1)
    assert (group["group_best_run"], group["group_best_value"]) == ("trial-3", 0.3)  # the best *finished* run: trial-2 failed


class Proxy:
    """A proxy in front of the real server: counts each API call by its path, answers
    500 while `failing`, and holds runs/search while `open` is cleared."""

    def __init__(self, tracking: str) -> None:
        self.tracking = tracking
        self.failing = False
        self.refused = 0
        self.calls: dict[str, int] = {}
        self.open = asyncio.Event()
        self.open.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.failing:
            self.refused += 1
            return web.Response(status=500, text="upstream broken")
        name = request.path.rpartition("/mlflow/")[2]
        if name == "runs/search":
            await self.open.wait()
        self.calls[name] = self.calls.get(name, 0) + 1
        async with aiohttp.ClientSession() as http, http.request(
                request.method, self.tracking + request.path_qs, data=await request.read(),
                headers={"Content-Type": request.content_type}) as answer:
            return web.Response(status=answer.status, body=await answer.read(),
                                content_type="application/json")


@contextlib.asynccontextmanager
async def proxied(tracking: str) -> AsyncIterator[tuple[str, Proxy]]:
    proxy = Proxy(tracking)
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", proxy
    finally:
        await runner.cleanup()


async def test_a_server_answering_500_then_recovering_loses_nothing(start_daemon, tracking):
    async with proxied(tracking) as (url, proxy):
        proxy.failing = True
        daemon = await start_daemon(config(url, "flaky", automation("low", "flaky", LOSS_BELOW)))
        train = await Trainer.start(tracking, "flaky")
        await train("start r", *(f"log loss {v} {s}" for s, v in enumerate([0.9, 0.1, 0.9])))
        down = await eventually(lambda: status(daemon), lambda s: s["failures"] >= 2)
        assert "HTTP 500" in down["last_error"]
        async with daemon.console() as console, console.get(daemon.http + "/") as page:
            shown = await page.text()
        assert "Sources" in shown and "HTTP 500" in shown
        assert await history(daemon, "low") == []
        await train("log loss 0.2 3", "end FINISHED")
        await train.close()
        proxy.failing = False
        rows = await eventually(lambda: history(daemon, "low"), lambda rows: len(rows) == 2)
        assert sorted((step(r), context(r)["metric_values"]) for r in rows) == [
            (1, [0.1]), (3, [0.2])]
        assert (await status(daemon))["last_error"] is None


def point_ids(tracking: str, run_id: str, key: str) -> set[str]:
    """The ids of a one-metric run's points, computed here from MLflow's own history:
    mlt:SOURCE:RUN:STEP:blake2b-80("KEY\\0TIMESTAMP\\n")."""
    query = urllib.parse.urlencode({"run_id": run_id, "metric_key": key})
    with urllib.request.urlopen(f"{tracking}/api/2.0/mlflow/metrics/get-history?{query}") as r:
        points = json.loads(r.read())["metrics"]
    return {f"mlt:tracking:{run_id}:{p['step']}:"
            + hashlib.blake2b(f"{key}\0{p['timestamp']}\n".encode(), digest_size=10).hexdigest()
            for p in points}


async def test_one_step_on_needs_no_history_call_and_a_jump_reads_every_point(
        start_daemon, tracking):
    async with proxied(tracking) as (url, proxy):
        daemon = await start_daemon(config(url, "steps", automation("low", "steps", LOSS_BELOW)))
        train = await Trainer.start(tracking, "steps")
        # One point a look: 0.9, 0.4 (a crossing), 0.6. Events: running, then a point each.
        await train("start r", "log loss 0.9 0")
        await eventually(lambda: status(daemon), lambda s: s["events"] == 2)
        for s, v in [(1, 0.4), (2, 0.6)]:
            await train(f"log loss {v} {s}")
            await eventually(lambda: status(daemon), lambda found, s=s: found["events"] == 2 + s)
        # Step 0 was read from the history (a metric first seen); steps 1 and 2 from
        # runs/search alone.
        assert proxy.calls["metrics/get-history"] == 1
        # Three steps in one look (runs/search held while they are logged): 0.3 (a
        # crossing), 0.7, 0.2 (a crossing only if 0.7 was read): the history is read.
        proxy.open.clear()
        await train("log loss 0.3 3", "log loss 0.7 4", "log loss 0.2 5", "end FINISHED")
        await train.close()
        proxy.open.set()
        await eventually(lambda: status(daemon), lambda s: s["events"] == 2 + 5 + 1)
        assert proxy.calls["metrics/get-history"] == 2
        rows = await history(daemon, "low")
        assert sorted((step(r), context(r)["metric_values"]) for r in rows) == [
            (1, [0.4]), (3, [0.3]), (5, [0.2])]
        run_id = context(rows[0])["run_id"]
        db = sqlite3.connect(daemon.database)
        try:
            ids = {row[0] for row in db.execute(
                "SELECT id FROM event_ids WHERE id LIKE ?", (f"mlt:tracking:{run_id}:%",))}
        finally:
            db.close()
        # The same ids as when every point came from the history: six points, their
        # ids from MLflow's own (step, timestamp); and the running and finished states.
        points = point_ids(tracking, run_id, "loss")
        assert len(points) == 6
        assert {i for i in ids if i.split(":")[3].isdigit()} == points
        assert sorted(i.split(":")[3] for i in ids - points) == ["finished", "running"]
