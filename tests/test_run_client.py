"""runhook.init against the real daemon: a training script in a child process logs,
fails, is terminated or killed, or starts before the daemon; the daemon's history
holds exactly the executions worked out by hand."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

from aiohttp import web
from conftest import Daemon, free_port
from training import automations, event_ids, finished, history, script, seq, settle

THRESHOLD = '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 2, cmp = ">", threshold = 10.0 }'
ABOVE_10 = '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 10.0 }'
FINISHED = '{ kind = "RUN_STATE", states = ["finished"] }'
FAILED = '{ kind = "RUN_STATE", states = ["failed"] }'
CRASHED = '{ kind = "RUN_STATE", states = ["crashed"] }'
DROPPED = '{ kind = "RUN_METRIC_THRESHOLD", metric = "runhook_dropped", cmp = ">", threshold = 0.0 }'


def test_import_runhook_loads_no_framework_and_no_client():
    code = """
import sys, runhook
HEAVY = ("torch", "lightning", "pytorch_lightning", "transformers", "keras", "tensorflow",
         "jax", "wandb", "numpy", "aiohttp", "runhook.client", "runhook.training")
print(sorted(m for m in HEAVY if m in sys.modules))
runhook.init  # looked up on demand: the client comes, no framework does
print(sorted(m for m in HEAVY if m in sys.modules and not m.startswith("runhook")
             and m != "aiohttp"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[]", "[]"]


LOGS = """
import runhook
run = runhook.init(id="prod7", name="prod-7", group="sweep-a", tags=["a100"], user="ana",
                   config={"lr": 0.01, "optimizer": {"name": "adam"}})
for step, loss in enumerate([5.0, 12.0, 15.0, 3.0, 20.0]):
    run.log({"loss": loss, "note": "text is not a metric"}, step=step)
"""


async def test_logged_metrics_fire_a_threshold_as_computed_by_hand(start_daemon):
    daemon = await start_daemon(automations(("high", THRESHOLD), ("done", FINISHED),
                                            ("failed", FAILED)))
    code, _, err = await finished(await script(daemon, LOGS))
    assert code == 0, err
    # avg of the last 2: 8.5, 13.5 (fires: step 2), 9.0 (re-arms), 11.5 (fires: step 4).
    # Ids: the running state is prod7-P-1, the values of step s are prod7-P-(s+2).
    high = await settle(daemon, "high", 2)
    assert [(r["state"], seq(r["event_id"]), r["context"]["metric_values"]) for r in high] == \
        [("FINISHED", 4, [12.0, 15.0]), ("FINISHED", 6, [3.0, 20.0])]
    (done,) = await settle(daemon, "done", 1)  # at exit, by atexit
    ctx = done["context"]
    assert (ctx["run_id"], ctx["run_name"], ctx["run_group"], ctx["run_tags"]) == \
        ("prod7", "prod-7", "sweep-a", ["a100"])
    assert ctx["run_config"] == {"lr": 0.01, "optimizer.name": "adam"}
    assert await history(daemon, "failed") == []
    assert len(await history(daemon, "high")) == 2


FAILS = """
import runhook
run = runhook.init(id="boom", name="prod-boom")
run.log({"loss": 1.0}, step=0)
raise ValueError("loss is nan")
"""


async def test_an_uncaught_exception_reports_failed_with_its_reason(start_daemon):
    daemon = await start_daemon(automations(("failed", FAILED), ("done", FINISHED)))
    code, _, err = await finished(await script(daemon, FAILS))
    # The hook was chained, not replaced: Python still printed the traceback.
    assert code == 1 and "Traceback" in err and "ValueError: loss is nan" in err
    (row,) = await settle(daemon, "failed", 1)
    assert row["reason"] == "ValueError: loss is nan"
    assert row["context"]["metric_filter"] == "run state becomes failed (ValueError: loss is nan)"
    assert row["context"]["run_status"] == "failed"
    assert await history(daemon, "done") == []  # atexit found the run already ended
    # sys.exit with a code is no exception: the exit hook reports it.
    code, _, _ = await finished(await script(
        daemon, "import sys, runhook; runhook.init(id='bye'); sys.exit(2)"))
    assert code == 2
    rows = await settle(daemon, "failed", 2)
    assert [(r["run_id"], r["reason"]) for r in rows] == \
        [("boom", "ValueError: loss is nan"), ("bye", "exit code 2")]
    assert await history(daemon, "done") == []


THREAD = """
import threading, runhook
run = runhook.init(id="thread")
worker = threading.Thread(target=lambda: 1 / 0, name="loader")
worker.start()
worker.join()
print("main goes on", flush=True)
"""


async def test_an_exception_in_another_thread_reports_failed(start_daemon):
    daemon = await start_daemon(automations(("failed", FAILED), ("done", FINISHED)))
    code, out, err = await finished(await script(daemon, THREAD))
    assert (code, out) == (0, "main goes on\n") and "ZeroDivisionError" in err
    (row,) = await settle(daemon, "failed", 1)
    assert (row["run_id"], row["reason"]) == ("thread", "ZeroDivisionError: division by zero")
    assert await history(daemon, "done") == []


WAITS = """
import signal, sys, time, runhook
if sys.argv[1] == "own":  # a handler of the script's own, set before init
    signal.signal(signal.SIGTERM, lambda *_: (print("own handler", flush=True), sys.exit(3)))
run = runhook.init(id="term-" + sys.argv[1], name="prod-term", heartbeat=0.2)
run.log({"loss": 1.0}, step=0)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


async def _terminated(daemon, handler: str) -> tuple[int, str]:
    process = await script(daemon, WAITS, handler)
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
    process.send_signal(signal.SIGTERM)
    code, out, _ = await finished(process)
    return code, out


async def test_sigterm_reports_failed_then_the_process_dies_by_it(start_daemon):
    daemon = await start_daemon(automations(("failed", FAILED), ("done", FINISHED)))
    code, _ = await _terminated(daemon, "default")
    assert code == -signal.SIGTERM  # the default disposition, raised again
    (row,) = await settle(daemon, "failed", 1)
    assert (row["run_id"], row["reason"]) == ("term-default", "SIGTERM")
    # A handler the script had is called after the run is reported.
    code, out = await _terminated(daemon, "own")
    assert (code, out) == (3, "own handler\n")
    rows = await settle(daemon, "failed", 2)
    assert [(r["run_id"], r["reason"]) for r in rows] == \
        [("term-default", "SIGTERM"), ("term-own", "SIGTERM")]
    assert await history(daemon, "done") == []


async def test_sigkill_is_caught_by_the_heartbeat_timeout(start_daemon):
    daemon = await start_daemon(automations(("crashed", CRASHED), timeout="2s"))
    process = await script(daemon, WAITS, "default")
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
    # Alive past the timeout: the 0.2 s heartbeats keep it running (an absence: slept).
    await asyncio.sleep(3)
    assert await history(daemon, "crashed") == []
    process.kill()
    await process.wait()
    (row,) = await settle(daemon, "crashed", 1)
    assert (row["run_id"], row["reason"]) == ("term-default", "no heartbeat for 2s")


LATE = """
import sys, runhook
run = runhook.init(id=sys.argv[1], name="prod-late", queue_size=int(sys.argv[2]),
                   flush_timeout=60)
for step in range(int(sys.argv[3])):
    run.log({"loss": 20.0 if step % 2 == 0 else 0.0}, step=step)
print("logged", flush=True)
sys.stdin.readline()  # the job goes on until the daemon is up (its exit does not wait
                      # for a daemon that refuses connections)
"""


async def _late(start_daemon, short_dir, args: tuple[str, str, str],
                automation: tuple[str, str]) -> tuple[Daemon, str]:
    """LATE run with `args` (id, queue size, values) while no daemon is up, then the
    daemon started; returns it and the script's stderr once the script exited 0."""
    process = await script(f"{short_dir}/ev.sock", LATE, *args)
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 60) == b"logged\n"
    daemon = await start_daemon(automations(automation, ("done", FINISHED)))
    code, _, err = await finished(process)
    assert code == 0, err
    return daemon, err


async def test_a_daemon_down_at_start_gets_every_event_once_when_it_comes(start_daemon,
                                                                         short_dir):
    daemon, err = await _late(start_daemon, short_dir, ("late", "1000", "50"),
                              ("high", ABOVE_10))
    assert "unreachable" in err  # said once, with what happens to the events
    # Every even step crosses above 10 again: 25 firings, from the even steps' ids.
    high = await settle(daemon, "high", 25)
    assert [seq(r["event_id"]) for r in high] == [step + 2 for step in range(0, 50, 2)]
    assert len(await settle(daemon, "done", 1)) == 1
    # Each event accepted once: the running state, 50 values, the end.
    assert event_ids(daemon, "late") == list(range(1, 53))


async def test_past_the_queue_bound_the_oldest_metrics_are_dropped_and_counted(start_daemon,
                                                                              short_dir):
    daemon, err = await _late(start_daemon, short_dir, ("bound", "10", "25"),
                              ("drops", DROPPED))
    assert "dropping the oldest" in err and "were dropped" in err
    (done,) = await settle(daemon, "done", 1)
    # Kept: the batch the sender had in flight when the daemon was first found down
    # (the running state and the k first values logged by then), and the newest 10.
    ids = event_ids(daemon, "bound")
    values = [i for i in ids if 2 <= i <= 26]
    k = sum(1 for i in values if i < 17)
    assert values == list(range(2, 2 + k)) + list(range(17, 27))
    (drops,) = await settle(daemon, "drops", 1)
    assert drops["context"]["metric_values"] == [25 - 10 - k]
    assert ids == [1, *values, 27, 28]  # then runhook_dropped, then the end
    assert done["context"]["run_status"] == "finished"


PHASES = """
import sys, runhook
run = runhook.init(id="restart", flush_timeout=60)
for phase in range(2):
    for step in range(phase * 10, phase * 10 + 10):
        run.log({"loss": 20.0 if step % 2 == 0 else 0.0}, step=step)
    print("logged", flush=True)
    sys.stdin.readline()
"""


async def test_a_daemon_restarted_during_training_misses_nothing(start_daemon):
    daemon = await start_daemon(automations(("high", ABOVE_10), ("done", FINISHED)))
    process = await script(daemon, PHASES)
    assert process.stdout is not None and process.stdin is not None
    assert await asyncio.wait_for(process.stdout.readline(), 30) == b"logged\n"
    assert await daemon.stop() == 0
    process.stdin.write(b"go\n")  # the second half is logged while no daemon runs
    assert await asyncio.wait_for(process.stdout.readline(), 30) == b"logged\n"
    daemon = await start_daemon(config=daemon.config)
    code, _, err = await finished(process)
    assert code == 0, err
    # 20 values alternating 20/0: every even step crosses above 10 again.
    high = await settle(daemon, "high", 10)
    assert [seq(r["event_id"]) for r in high] == [s + 2 for s in range(0, 20, 2)]
    assert len(await settle(daemon, "done", 1)) == 1
    assert event_ids(daemon, "restart") == list(range(1, 23))



ENDS = """
import sys, runhook
run = runhook.init(id="ends", flush_timeout=60)
run.log({"loss": 20.0}, step=0)
print("logged", flush=True)
sys.stdin.readline()
"""


async def test_a_run_ending_while_its_daemon_restarts_waits_for_it(start_daemon):
    """A daemon took this run's events, then is down when the job ends (a restart):
    the exit waits for it and the end event arrives, or the daemon would declare the
    silent run crashed. (Only a run no daemon ever took stops waiting at a refusal.)"""
    daemon = await start_daemon(automations(("high", ABOVE_10), ("done", FINISHED),
                                            ("crashed", CRASHED)))
    process = await script(daemon, ENDS)
    assert process.stdout is not None and process.stdin is not None
    assert process.stderr is not None
    assert await asyncio.wait_for(process.stdout.readline(), 30) == b"logged\n"
    assert len(await settle(daemon, "high", 1)) == 1  # the daemon took the run's events
    assert await daemon.stop() == 0
    process.stdin.write(b"end\n")  # the job ends while no daemon runs
    said = b""
    while b"unreachable" not in said:  # the end was sent, and refused at connect
        line = await asyncio.wait_for(process.stderr.readline(), 60)
        assert line, said
        said += line
    daemon = await start_daemon(config=daemon.config)
    code, _, err = await finished(process)
    assert code == 0, err
    (done,) = await settle(daemon, "done", 1)
    assert done["context"]["run_status"] == "finished"
    assert await history(daemon, "crashed") == []

FORKS = """
import multiprocessing, os, sys, time, runhook
run = runhook.init(id="parent", name="parent", heartbeat=0.2)
run.log({"loss": 1.0}, step=0)

def child(body):
    pid = os.fork()
    if pid == 0:
        body()
        sys.exit(0)  # past the body: exit as a script does, with the atexit hooks
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def fails():
    sys.exit(3)

def raises():
    raise ValueError("the child's own error")

def own_run():
    runhook.init(id="child", name="child").log({"loss": 2.0}, step=0)

def within():
    with run:
        pass

def waits(ready):
    ready.set()
    time.sleep(60)

codes = [child(fails), child(raises), child(own_run), child(within)]
forked = multiprocessing.get_context("fork")
ready = forked.Event()
worker = forked.Process(target=waits, args=(ready,))
worker.start()
ready.wait(30)
worker.terminate()  # SIGTERM, as a DataLoader's shutdown sends its workers
worker.join()
print(codes + [worker.exitcode], flush=True)
run.log({"loss": 3.0}, step=1)
"""


async def test_a_forked_child_neither_ends_nor_warns_about_the_parents_run(start_daemon):
    """Children forked from a training process (os.fork and multiprocessing's fork)
    exit with a code, raise, init a run of their own, leave the parent's `with`
    block, die by SIGTERM. The parent's run is the parent's: none of them reports it
    failed or finished or warns about it; the child's own run is reported as usual."""
    daemon = await start_daemon(automations(("failed", FAILED), ("done", FINISHED)))
    code, out, err = await finished(await script(daemon, FORKS))
    assert code == 0, err
    assert out == f"[3, 1, 0, 0, {-signal.SIGTERM}]\n"
    assert "ValueError: the child's own error" in err  # Python's own hook still ran
    assert "runhook:" not in err, err
    done = await settle(daemon, "done", 2)
    assert sorted(r["run_id"] for r in done) == ["child", "parent"]
    assert await history(daemon, "failed") == []
    assert event_ids(daemon, "parent")[-2:] == [3, 4]  # step 1, then the parent's end


class FlakyListener:
    """`POST /v1/events` on loopback HTTP answering every line ok, except that the
    first requests that carry a heartbeat alone fail as `failures` says: "hang" (a
    slot that never answers, as under an idle-connection flood) or "503"."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.beats = 0  # heartbeat requests seen
        self.answered = asyncio.Event()  # a heartbeat got its ok
        self.release = asyncio.Event()  # the hung requests end (the test is over)

    async def events(self, request: web.Request) -> web.StreamResponse:
        line = await request.content.readline()
        beat = json.loads(line)["type"] == "run.heartbeat"
        if beat:
            self.beats += 1
            how = self.failures.pop(0) if self.failures else None
            if how == "hang":
                await self.release.wait()
                raise web.HTTPServiceUnavailable()
            if how == "503":
                return web.Response(status=503, text='{"ok":false,"error":"busy"}')
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        while line:
            if line.strip():
                await response.write(b'{"ok":true}\n')
                if beat:
                    self.answered.set()
            line = await request.content.readline()
        await response.write_eof()
        return response


async def test_a_failed_heartbeat_is_retried_within_the_interval():
    """Heartbeats every 1 s; the listener lets the first two hang (no answer, ever)
    and answers the third 503. Each attempt is given up after a quarter of the
    interval (1 s at least), and retried after a backoff capped at the same: the
    fourth is answered within seconds. It was given SEND_TIMEOUT (30 s) per attempt:
    one hang was a whole interval and more, and a run heartbeating every 30 s to a
    daemon whose timeout is twice that was called crashed after two."""
    import runhook  # the client is imported on first use: here, in the test process

    listener = FlakyListener(["hang", "hang", "503"])
    app = web.Application()
    app.router.add_post("/v1/events", listener.events)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    run = runhook.init(entity="acme", project="vision", id="flaky", hooks=False,
                       address=f"http://127.0.0.1:{port}", heartbeat=1.0)
    try:
        # Far below the 60 s two hung attempts took, far above the ~3 s they take now.
        await asyncio.wait_for(listener.answered.wait(), 25)
        assert listener.beats == 4
    finally:
        await asyncio.to_thread(run.finish, timeout=10)
        listener.release.set()
        await runner.cleanup()


NO_DAEMON = """
import runhook
run = runhook.init(id="alone", flush_timeout=3600)
run.log({"loss": 1.0}, step=0)
"""


async def test_with_no_daemon_the_exit_does_not_wait_and_says_where_it_looked(short_dir):
    # Nothing listens at the address: the connect is refused at once, so the exit
    # does not wait out the flush timeout (an hour here: the script would outlive
    # `finished`'s 60 s) for a daemon that is not there, and the warning names the
    # address tried and how to give another. Both ways nothing listens: no socket
    # file, and a socket bound with no listener (ECONNREFUSED).
    import socket
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(short_dir / "dead.sock"))
    try:
        for address, error in ((short_dir / "none.sock", "No such file or directory"),
                               (short_dir / "dead.sock", "Connection refused")):
            process = await script(str(address), NO_DAEMON)
            code, _, err = await finished(process, timeout=60)
            assert code == 0, err
            # The running state, the value, the end: each counted once.
            assert ("runhook: run alone ended finished, but 3 events (the end included) were "
                    f"not taken by the daemon at {address}: nothing listens there") in err, err
            assert error in err and "they are lost. Point runs at the daemon with " \
                "$RUNHOOK_URL (its socket path, unix:///PATH or https://HOST:PORT) or " \
                "runhook.init(address=...)" in err
    finally:
        bound.close()
