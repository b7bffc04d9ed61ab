"""check-config reports every problem of a file in one pass, with allowed values for
enums and the closest name for a misspelling."""

from __future__ import annotations

import subprocess
import sys

from runhook.config.diagnose import check, unit_problems
from runhook.config.model import Automation

# Seven mistakes of seven kinds, across tables: msgspec alone stops at the first.
BROKEN = """
[server]
htp = "127.0.0.1:8787"

[integrations.ci]
kind = "webhook"
url = "https://example.com/hook"
timout = 5

[[automations]]
name = "loss"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_TRESHOLD", metric = "loss", cmp = ">", threshold = 1.0 }
action = { integration = "ci" }

[[automations]]
name = "states"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["runing", "finished", "faild"] }
action = { integration = "ci" }
cooldwn = "1h"

[[automations]]
name = "avg"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avrage", cmp = ">", treshold = 1.0 }
action = { integration = "ci", severity = "LOUD" }

[[automations]]
name = "scope"
scope = "projects:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { integration = "nope" }
"""

EXPECTED = [
    "server: object contains unknown field `htp`; did you mean 'http'?",
    "integrations.ci: object contains unknown field `timout`; did you mean 'timeout'?",
    ("automations[0].event.kind: invalid value 'RUN_METRIC_TRESHOLD' (allowed: "
    "ADD_ARTIFACT_ALIAS, ADD_ARTIFACT_TAG, ADD_COLLECTION_TAG, CREATE_ARTIFACT, GROUP_FINISHED, "
    "LINK_ARTIFACT, REMOVE_ARTIFACT_TAG, REMOVE_COLLECTION_TAG, RUN_METRIC_CHANGE, RUN_METRIC_NONFINITE, RUN_METRIC_THRESHOLD, "
    "RUN_METRIC_ZSCORE, RUN_STALLED, RUN_STATE, UNLINK_ARTIFACT); "
    "did you mean 'RUN_METRIC_THRESHOLD'? (automation 'loss')"),
    ("automations[1].event.states[0]: invalid value 'runing' (allowed: crashed, failed, "
    "finished, running); did you mean 'running'? (automation 'states')"),
    ("automations[1].event.states[2]: invalid value 'faild' (allowed: crashed, failed, "
    "finished, running); did you mean 'failed'? (automation 'states')"),
    ("automations[1]: object contains unknown field `cooldwn`; did you mean 'cooldown'? "
    "(automation 'states')"),
    ("automations[2].event.agg: invalid value 'avrage' (allowed: average, avg, max, mean, "
    "min); did you mean 'average'? (automation 'avg')"),
    ("automations[2].event: object contains unknown field `treshold`; did you mean "
    "'threshold'? (automation 'avg')"),
    ("automations[2].action.severity: invalid value 'LOUD' (allowed: ERROR, INFO, WARN) "
    "(automation 'avg')"),
    # Decoded fine, so checked as the daemon would: reported in the same pass.
    ("automations[3].scope: expected 'project:ENTITY/PROJECT', 'registry:ENTITY/REGISTRY', "
    "'entity:ENTITY' or 'org:NAME', got 'projects:acme/vision' (automation 'scope')"),
]


def test_every_problem_in_one_pass():
    assert check(BROKEN.encode(), "f.toml") == EXPECTED


def test_the_cli_prints_them_all_and_a_count(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    run = subprocess.run([sys.executable, "-m", "runhook", "check-config", str(path)],
                         check=False, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stdout.splitlines() == [f"{path}: {p}" for p in EXPECTED] + ["10 problems found"]


def test_serve_refuses_with_the_whole_list(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    run = subprocess.run([sys.executable, "-m", "runhook", "serve", "--config", str(path)],
                         check=False, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    # serve decodes before it builds: the structural problems, all nine of them.
    assert [line.strip() for line in run.stderr.splitlines()[1:]] == EXPECTED[:9]


def test_a_misspelt_required_field_is_reported_once():
    raw = {"name": "a", "scope": "project:a/b", "action": {"kind": "none"},
           "event": {"kind": "RUN_METRIC_CHANGE", "metric": "m", "amout": 1.0}}
    assert unit_problems("automations[0]", raw, Automation) == [
        "automations[0].event: object contains unknown field `amout`; did you mean 'amount'?"]
    assert raw["event"]["amout"] == 1.0  # the caller's value is left as it was


def test_a_value_in_another_case_or_cut_short_gets_a_suggestion():
    def problems(event: dict, action: dict | None = None) -> list[str]:
        raw = {"name": "a", "scope": "project:a/b", "action": action or {"kind": "none"},
               "event": event}
        return unit_problems("automations[0]", raw, Automation)

    # One wording for a value not allowed, literal or tag; 'min' begins only minimize.
    assert problems({"kind": "GROUP_FINISHED", "metric": "loss", "goal": "min"}) == [
        ("automations[0].event.goal: invalid value 'min' (allowed: maximize, minimize); "
        "did you mean 'minimize'?")]
    # Case: `none` is lower case, and not among the fields W&B users paste in any case.
    assert problems({"kind": "CREATE_ARTIFACT"}, {"kind": "None"}) == [
        ("automations[0].action.kind: invalid value 'None' (allowed: none); "
        "did you mean 'none'?")]
    # 'fin' begins `finished` only.
    assert problems({"kind": "RUN_STATE", "states": ["fin"]})[0].endswith(
        "did you mean 'finished'?")


def test_closest_prefers_the_same_name_in_another_case_then_a_unique_prefix():
    from runhook.core.words import closest
    assert closest("info", ["INFO", "WARN", "ERROR"]) == "INFO"
    assert closest("Warn", ["INFO", "WARN", "ERROR"]) == "WARN"
    assert closest("min", ["maximize", "minimize"]) == "minimize"
    assert closest("m", ["maximize", "minimize"]) is None          # two begin with it
    assert closest("relatve", ["absolute", "relative"]) == "relative"  # spelling, as before
    # A field name's prefix is as often another field: no prefix guess for names.
    assert closest("url", ["url_secret", "api_url"], value=False) == "api_url"


def test_a_good_file_has_no_problem():
    good = BROKEN.split("[[automations]]")[0].replace('htp = "127.0.0.1:8787"', "") \
        .replace("timout = 5", "timeout = 5")
    assert check(good.encode(), "f.toml") == []


SHORT_TIMEOUTS = """
[server]
heartbeat_timeout = "20s"
@BEAT@
[[automations]]
name = "crashed"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["crashed"], heartbeat_timeout = "45s" }
action = { kind = "none" }

[[automations]]
name = "patient"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["failed"], heartbeat_timeout = "1m" }
action = { kind = "none" }
"""


def test_a_heartbeat_timeout_under_twice_the_clients_interval_is_refused():
    """runhook.init beats every 30 s: a 20 s or 45 s timeout would crash a live run whose
    beat comes once late (issue 23). Both are named with the interval; 1m (twice 30 s)
    passes. A site whose clients beat every 10 s says so, and all three pass."""
    hint = ("a live run whose heartbeat comes late once would be declared crashed; give at "
            "least 1m, or set client_heartbeat to the interval your clients use "
            "(runhook.init's heartbeat=, RUNHOOK_HEARTBEAT)")
    assert check(SHORT_TIMEOUTS.replace("@BEAT@", "").encode(), "f.toml") == [
        f"server.heartbeat_timeout: 20s is under twice server.client_heartbeat (30s): {hint}",
        ("automations[0].event.heartbeat_timeout: 45s is under twice "
         f"server.client_heartbeat (30s): {hint}"),
    ]
    faster = SHORT_TIMEOUTS.replace("@BEAT@", 'client_heartbeat = "10s"')
    assert check(faster.encode(), "f.toml") == []
    assert check(b'[server]\nclient_heartbeat = "0"', "f.toml") == [
        "server.client_heartbeat: expected a duration above 0"]


def test_a_tracking_sources_look_counts_as_its_runs_heartbeat():
    """An MLflow tracking source hears its runs once a look (docs/run-health.md): a timeout under
    twice its interval is refused, naming the source, even where clients beat faster."""
    follow = """
[server]
client_heartbeat = "10s"
heartbeat_timeout = "@TIMEOUT@"

[sources.mlf]
kind = "mlflow-tracking"
url = "https://mlflow.example.com"
entity = "acme"
interval = "1m"
"""
    assert check(follow.replace("@TIMEOUT@", "90s").encode(), "f.toml") == [
        ("server.heartbeat_timeout: 1m30s is under twice sources.mlf.interval (1m): a live "
        "run whose heartbeat comes late once would be declared crashed; give at least 2m, "
         "or have sources.mlf look more often")]
    assert check(follow.replace("@TIMEOUT@", "2m").encode(), "f.toml") == []
