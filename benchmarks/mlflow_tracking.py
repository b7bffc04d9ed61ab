"""`make bench-mlflow`: the cost of following an MLflow tracking server (docs/mlflow.md).

A stub of MLflow's REST API (runs/search, metrics/get-history, experiments/get-by-name)
in its own process serves RUNS running runs x METRICS metrics; every runs/search for
running runs adds one new point to each series first, so each look finds exactly one
new point per (run, metric). The real daemon follows it; we read the daemon's CPU time
from /proc per look and count the stub's requests. Beside it, the same points sent
over the events socket as run.metrics lines (the daemon's ingest, the floor).

Two cadences: steps 0, 1, 2, … (the latest point, one step on, is the new point: no
history call) and steps 0, 10, 20, … (a gap: points between could exist, so each
series' history is read, one call each). `--quick`: 50 runs x 4 metrics, a few looks."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import daemon, free_port, pipeline, report

LOOK_S = 15.0  # the interval the cost is stated for (the default)


def _stub(port: int, runs: int, metrics: int, stride: int, counts: dict[str, int],
          ready: object) -> None:
    """MLflow's answers for one experiment "bench" (id "1"), computed on the fly: the
    n-th point of each series is at step n x stride."""
    from aiohttp import web

    state = {"n": 0}
    run_ids = [f"{i:032x}" for i in range(runs)]
    keys = [f"m{k}" for k in range(metrics)]

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    def point(key: str, n: int) -> dict[str, object]:
        return {"key": key, "value": float(n % 97), "timestamp": 1_000_000 + n * 15_000,
                "step": n * stride}

    async def experiment(request: web.Request) -> web.Response:
        count("experiments/get-by-name")
        return web.json_response({"experiment": {"experiment_id": "1", "name": "bench",
                                                 "lifecycle_stage": "active"}})

    async def search(request: web.Request) -> web.Response:
        count("runs/search")
        body = await request.json()
        if "RUNNING" not in body["filter"]:
            return web.json_response({})  # nothing ends in the benchmark
        state["n"] += 1  # one new point per series for this look
        n = state["n"]
        found = [{"info": {"run_id": r, "experiment_id": "1", "status": "RUNNING",
                           "run_name": f"run-{i}", "start_time": 1_000_000},
                  "data": {"metrics": [point(k, n) for k in keys],
                           "params": [{"key": "lr", "value": "0.1"}],
                           "tags": [{"key": "mlflow.user", "value": "bench"}]}}
                 for i, r in enumerate(run_ids)]
        return web.Response(text=json.dumps({"runs": found}), content_type="application/json")

    async def history(request: web.Request) -> web.Response:
        count("metrics/get-history")
        key = request.query["metric_key"]
        token = request.query.get("page_token")
        offset = json.loads(__import__("base64").b64decode(token))["offset"] if token else 0
        # Points 0..n exist (point 0 logged before the first look).
        points = [point(key, i) for i in range(offset, state["n"] + 1)]
        return web.Response(text=json.dumps({"metrics": points}),
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/2.0/mlflow/experiments/get-by-name", experiment)
    app.router.add_post("/api/2.0/mlflow/runs/search", search)
    app.router.add_get("/api/2.0/mlflow/metrics/get-history", history)
    ready.set()  # type: ignore[attr-defined]
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status(path: str) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b'{"type":"query.status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            data += s.recv(1 << 20)
    sources: list[dict[str, object]] = json.loads(data)["status"]["sources"]
    return sources[0]


def _automations(metrics: int) -> str:
    return "".join(f"""
[[automations]]
name = "m{k}"
scope = "project:acme/bench"
event = {{ kind = "RUN_METRIC_THRESHOLD", metric = "m{k}", agg = "avg", window = 5, cmp = ">", threshold = 1e12 }}
action = {{ kind = "none" }}
""" for k in range(metrics))


def tracking(runs: int, metrics: int, looks: int, stride: int
             ) -> list[tuple[str, str, str, str]]:
    manager = multiprocessing.Manager()
    counts = manager.dict()
    ready = manager.Event()
    port = free_port()
    stub = multiprocessing.Process(target=_stub, args=(port, runs, metrics, stride, counts, ready))
    stub.start()
    ready.wait(30)
    time.sleep(1.0)  # the site binds just after the app is built
    points = runs * metrics
    try:
        body = f"""
[sources.bench]
kind = "mlflow-tracking"
url = "http://127.0.0.1:{port}"
entity = "acme"
experiments = ["bench"]
interval = "1s"
allow_http = true
allow_private = true
{_automations(metrics)}"""
        with daemon(body, prefix="mltb") as d:
            pid = d.process.pid

            def looked(n: int) -> None:
                deadline = time.monotonic() + 600
                while int(_status(d.socket)["looks"]) < n:  # type: ignore[call-overload]
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"no look {n}: {_status(d.socket)}")
                    time.sleep(1.0)

            try:
                looked(2)  # the first look read every series from its start
            except OSError:
                print((d.directory / "daemon.log").read_text()[-5000:])
                raise
            # The status is read once a second: polling it (its history counts) faster
            # would be much of what is measured.
            looked(2)
            first = int(_status(d.socket)["looks"])  # type: ignore[call-overload]
            cpu0, start_counts = _cpu_s(pid), dict(counts)
            looked(first + looks)
            cpu = _cpu_s(pid) - cpu0
            status = _status(d.socket)
            requests = sum(counts.values()) - sum(start_counts.values())
            histories = counts.get("metrics/get-history", 0) - start_counts.get(
                "metrics/get-history", 0)
            last_error = status["last_error"]
        per_look = cpu / looks
        # The same points through the socket: one run.metrics line per run and look.
        lines = [json.dumps({"type": "run.metrics", "entity": "acme", "project": "bench",
                             "run_id": f"{i:032x}", "step": s,
                             "values": {f"m{k}": float(s % 97) for k in range(metrics)}}
                            ).encode() + b"\n" for s in range(looks) for i in range(runs)]
        with daemon(_automations(metrics), prefix="mltb") as d:
            cpu0 = _cpu_s(d.process.pid)
            pipeline(d.socket, lines, len(lines))
            socket_per_look = (_cpu_s(d.process.pid) - cpu0) / looks
    finally:
        stub.terminate()
        stub.join()
        manager.shutdown()
    note = f"last error: {last_error}" if last_error else "no errors"
    cadence = "steps 0, 1, 2, …" if stride == 1 else f"steps 0, {stride}, {2 * stride}, …"
    return [((f"mlflow-tracking, {runs} runs x {metrics} metrics, 1 new point each a look, "
              f"{cadence}"),
             f"{per_look:.2f} s CPU a look = {per_look / LOOK_S:.1%} of a core at 15 s",
             (f"socket ingest of the same points {socket_per_look:.2f} s "
             f"= {socket_per_look / LOOK_S:.1%}"), note),
            ("  requests to the server per new point", f"{requests / (points * looks):.3f}",
             (f"{requests / looks:.0f} requests a look for {points} points "
              f"({histories / looks:.0f} history calls)"), "")]


def main() -> int:
    quick = "--quick" in sys.argv
    started = time.perf_counter()
    runs, metrics, looks = (50, 4, 3) if quick else (1000, 20, 5)
    rows = tracking(runs, metrics, looks, 1) + tracking(runs, metrics, looks, 10)
    report(f"runhook mlflow-tracking benchmark ({'quick' if quick else 'full'})", rows, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
