"""The benchmark scenarios; each returns rows for the table printed by run.py."""

from __future__ import annotations

import msgspec

from harness import daemon, pipeline, rate
from baselines import RawDecodeServer

encode = msgspec.json.encode


def metric_automations(projects: int, per_project: int) -> str:
    """`per_project` threshold automations on distinct metrics in each project; none fires."""
    out = []
    for p in range(projects):
        for a in range(per_project):
            out.append(f"""
[[automations]]
name = "p{p}-m{a}"
scope = "project:acme/p{p}"
event = {{ kind = "RUN_METRIC_THRESHOLD", metric = "m{a}", agg = "avg", window = 5, cmp = ">", threshold = 1e12 }}
action = {{ kind = "none" }}
""")
    return "".join(out)


def ingest(lines: int) -> list[tuple[str, str, str, str]]:
    """100 projects x 10 metric automations; lines of 5 values, nothing fires."""
    def make() -> list[bytes]:
        return [encode({"type": "run.metrics", "entity": "acme", "project": f"p{i % 100}",
                        "run_id": f"r{i % 1000}", "run_name": "prod", "user": "u",
                        "values": {f"m{(i + k) % 10}": float(i % 97) for k in range(5)}}) + b"\n"
                for i in range(lines)]
    data = make()
    raw = RawDecodeServer()
    base_s = pipeline(raw.path, data, lines)
    raw.close()
    with daemon(metric_automations(100, 10)) as d:
        ours_s = pipeline(d.socket, data, lines)
    values = lines * 5
    ratio = (values / ours_s) / (values / base_s)
    return [("ingest, nothing fires (values evaluated)", rate(values, ours_s),
             f"raw read+decode {rate(values, base_s)}", f"{ratio:.0%}")]


def memory(runs: int, values_per_run: int) -> list[tuple[str, str, str, str]]:
    """`runs` active runs, each watched by 3 metric automations (windows 5, 10 and 30)."""
    body = """
[[automations]]
name = "t5"
scope = "project:acme/mem"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 5, cmp = ">", threshold = 1e12 }
action = { kind = "none" }
[[automations]]
name = "c10"
scope = "project:acme/mem"
event = { kind = "RUN_METRIC_CHANGE", metric = "loss", window = 5, prior_window = 5, amount = 1e12 }
action = { kind = "none" }
[[automations]]
name = "z30"
scope = "project:acme/mem"
event = { kind = "RUN_METRIC_ZSCORE", metric = "loss", window = 30, threshold = 1e6 }
action = { kind = "none" }
"""
    with daemon(body) as d:
        empty = d.rss_mb()
        count = runs * values_per_run
        lines = (encode({"type": "run.metrics", "entity": "acme", "project": "mem",
                         "run_id": f"run-{i % runs}", "run_name": "prod", "user": "u",
                         "values": {"loss": float(i % 13)}}) + b"\n" for i in range(count))
        seconds = pipeline(d.socket, lines, count)
        full = d.rss_mb()
    return [(f"memory, {runs:,} runs x 3 automations", f"{full:.0f} MB RSS",
             f"empty daemon {empty:.0f} MB", f"{full - empty:.0f} MB for runs"),
            ("  run.metrics values evaluated (3 automations each)", rate(count, seconds), "", "")]
