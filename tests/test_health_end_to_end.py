"""Run health through the real daemon: a real training process killed -9 is reported
crashed exactly once; a daemon killed -9 counts deadlines from its restart; a sweep
ends in one GROUP_FINISHED. Short timeouts in the config, waits on the history."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

from conftest import eventually

SCOPE = "project:acme/vision"
RUN_URL = "https://wandb.ai/{entity}/{project}/runs/{run_id}"


def config(timeout: str = "1s") -> str:
    return f"""
heartbeat_timeout = "{timeout}"
client_heartbeat = "100ms"

[scopes."{SCOPE}"]
run_url = "{RUN_URL}"

[[automations]]
name = "crashed"
scope = "{SCOPE}"
event = {{ kind = "RUN_STATE", states = ["failed"] }}
action = {{ kind = "none" }}

[[automations]]
name = "sweep-done"
scope = "{SCOPE}"
event = {{ kind = "GROUP_FINISHED", group = "^sweep-", settle = "1s", metric = "loss", goal = "minimize" }}
action = {{ kind = "none" }}
"""


def run_event(kind: str, run_id: str, **fields) -> dict:
    return {"type": kind, "entity": "acme", "project": "vision", "run_id": run_id, **fields}


async def history(daemon, automation: str) -> list[dict]:
    async with daemon.client() as client:
        answer = await client.request({"type": "query.history", "automation": automation,
                                       "limit": 100})
    return answer["executions"]


async def context_of(daemon, execution_id: str) -> dict:
    async with daemon.client() as client:
        detail = await client.request({"type": "query.execution", "id": execution_id})
    context = detail["execution"]["context"]
    return json.loads(context) if isinstance(context, str) else context


# A training process: says it is running, then heartbeats and logs until killed.
TRAINER = """
import sys, time
from runhook.client import Client
with Client(sys.argv[1]) as client:
    base = {"entity": "acme", "project": "vision", "run_id": "trainer-1"}
    client.send({**base, "type": "run.state", "state": "running", "run_name": "prod-trainer",
                 "user": "ana", "group": "solo", "tags": ["a100"], "config": {"lr": 0.001}})
    print("started", flush=True)
    step = 0
    while True:
        client.send({**base, "type": "run.heartbeat"})
        client.send({**base, "type": "run.metrics", "step": step, "values": {"loss": 1.0 / (step + 1)}})
        step += 1
        time.sleep(0.1)
"""


async def test_a_killed_training_process_is_reported_crashed_exactly_once(start_daemon):
    daemon = await start_daemon(config("1s"))
    trainer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", TRAINER, daemon.socket, stdout=asyncio.subprocess.PIPE)
    assert trainer.stdout is not None
    assert await asyncio.wait_for(trainer.stdout.readline(), 30) == b"started\n"
    # Alive and beating for longer than the timeout: no crash.
    async with daemon.client() as client:
        for _ in range(20):  # ~2 s of the trainer's beats, one answered round-trip each
            await client.request({"type": "query.status"})
            await asyncio.sleep(0.1)
    assert await history(daemon, "crashed") == []
    trainer.send_signal(signal.SIGKILL)
    await trainer.wait()
    killed_at = time.time()
    (row,) = await eventually(lambda: history(daemon, "crashed"), lambda rows: len(rows) == 1)
    assert row["created_at"] - killed_at >= 0.8  # after the timeout, not before
    context = await context_of(daemon, row["id"])
    assert (context["run_id"], context["run_status"]) == ("trainer-1", "crashed")
    # Remembered from the first event: the beats and metrics carried run_id alone.
    assert (context["run_name"], context["run_group"], context["run_tags"]) == \
        ("prod-trainer", "solo", ["a100"])
    assert context["run_config"] == {"lr": 0.001}
    assert context["run_url"] == "https://wandb.ai/acme/vision/runs/trainer-1"
    assert context["metric_filter"] == "run crashed: no heartbeat for 1s"
    # Exactly once: another deadline's worth later, still one.
    await asyncio.sleep(1.5)
    assert len(await history(daemon, "crashed")) == 1


async def test_daemon_downtime_does_not_count(start_daemon):
    daemon = await start_daemon(config("2s"))
    async with daemon.client() as client:
        assert (await client.send(run_event("run.state", "r1", state="running",
                                            run_name="prod-1")))["ok"]
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    # The run stays silent through a downtime longer than its timeout.
    await asyncio.sleep(2.5)
    daemon = await start_daemon(config=daemon.config)
    started = time.time()
    # Not crashed at once: silence before the start does not count...
    await asyncio.sleep(0.5)
    assert await history(daemon, "crashed") == []
    # ...but the deadline restarts from the start: crashed once, ~2 s after it.
    (row,) = await eventually(lambda: history(daemon, "crashed"), lambda rows: len(rows) == 1)
    assert row["created_at"] - started >= 1.8


async def test_a_sweep_ends_in_one_group_finished(start_daemon):
    daemon = await start_daemon(config("1s"))
    # Four runs: two finish, one fails, one goes silent (the daemon calls it crashed).
    losses = {"s1": 0.5, "s2": 0.25, "s3": 0.75, "s4": 0.125}
    async with daemon.client() as client:
        for i, (run_id, loss) in enumerate(losses.items()):
            await client.send(run_event("run.state", run_id, state="running",
                                        run_name=f"trial-{i + 1}", group="sweep-7"))
            await client.send(run_event("run.metrics", run_id, values={"loss": loss}))
        for run_id, state in (("s1", "finished"), ("s2", "finished"), ("s3", "failed")):
            await client.send(run_event("run.state", run_id, state=state))
    (row,) = await eventually(lambda: history(daemon, "sweep-done"), lambda rows: len(rows) == 1)
    context = await context_of(daemon, row["id"])
    # s4 crashed (silent), s3 failed: 2 finished, 2 failed. s4's 0.125 is lowest, but
    # only a finished run can be best: s1 0.5, s2 0.25, so trial-2 with 0.25.
    assert {k: context[k] for k in ("group", "group_runs", "group_finished", "group_failed",
                                    "group_best_run", "group_best_value")} == {
        "group": "sweep-7", "group_runs": 4, "group_finished": 2, "group_failed": 2,
        "group_best_run": "trial-2", "group_best_value": 0.25}
    assert len(await history(daemon, "crashed")) == 2  # s3 said failed, s4 went silent
    await asyncio.sleep(1.5)
    assert len(await history(daemon, "sweep-done")) == 1
