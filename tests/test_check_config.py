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
    # serve says what check-config says: all ten, the scope only the build sees among them.
    assert [line.strip() for line in run.stderr.splitlines()[1:]] == EXPECTED


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


HOOK = """
[integrations.local]
kind = "webhook"
url = "http://127.0.0.1:8788/hook"
rate = "fast"
alow_http = true
allow_private = true
"""


def test_an_unknown_field_hides_no_bad_value_in_its_table():
    # The rate is checked (by the build) with the misspelt field read as meant: no
    # "plain http needs allow_http" either, which `alow_http = true` would cause.
    assert check(HOOK.encode(), "f.toml") == [
        ("integrations.local: object contains unknown field `alow_http`; did you mean "
        "'allow_http'?"),
        "integrations.local.rate: expected a rate like '10/s' or '100/min', got 'fast'"]


def automation(event: str, action: str = '{ kind = "none" }') -> str:
    return (f'[[automations]]\nname = "a"\nscope = "project:acme/vision"\n'
            f"event = {event}\naction = {action}\n")


CMP = ("automations[0].event.cmp: invalid value '=>' (allowed: !=, <, <=, ==, >, >=); "
       "did you mean '>='? (automation 'a')")


def test_a_bad_kind_hides_no_bad_cmp():
    near = automation('{ kind = "RUN_METRIC_TRESHOLD", metric = "loss", cmp = "=>", '
                      "threshold = 1.0 }")
    found = check(near.encode(), "f.toml")
    assert len(found) == 2 and found[0].startswith(
        "automations[0].event.kind: invalid value 'RUN_METRIC_TRESHOLD'")
    assert found[1] == CMP
    # No name near: read as the kind with the most of the fields given (the threshold
    # one), whose other fields are then not called unknown.
    far = automation('{ kind = "WHEN_LOSS_IS_HIGH", metric = "loss", cmp = "=>", '
                     "threshold = 1.0 }")
    found = check(far.encode(), "f.toml")
    assert len(found) == 2 and found[0].startswith(
        "automations[0].event.kind: invalid value 'WHEN_LOSS_IS_HIGH' (allowed: ")
    assert found[1] == CMP


def test_a_value_spelt_backwards_gets_the_one_meant():
    from runhook.core.words import closest
    assert closest("=>", ["!=", "<", "<=", "==", ">", ">="]) == ">="
    assert closest("=<", ["!=", "<", "<=", "==", ">", ">="]) == "<="


def test_a_misspelt_integration_and_variable_get_a_suggestion():
    text = HOOK.replace('rate = "fast"\nalow_http', "allow_http") + automation(
        '{ kind = "CREATE_ARTIFACT" }', '{ integration = "locl" }') + automation(
        '{ kind = "CREATE_ARTIFACT" }',
        """{ integration = "local", payload = '{"v": "${artifact_version_strng}"}' }""")
    assert check(text.encode(), "f.toml") == [
        ("automations[0].action.integration: 'locl' is not declared under [integrations]; "
        "did you mean 'local'? (automation 'a')"),
        "automations[1].name: 'a' is used by an earlier automation",
        ("automations[1].action.payload: unknown variable ${artifact_version_strng}: not a "
        "W&B template variable, nor a secret that integration 'local' lists in `secrets`; "
        "did you mean ${artifact_version_string}? (automation 'a')")]


def test_a_socket_path_too_long_is_refused_before_serve_creates_anything(tmp_path):
    from runhook.config.addresses import SUN_PATH
    # The longest path that fits is SUN_PATH - 1 bytes (the last one is the NUL).
    fits = tmp_path / ("s" * (SUN_PATH - 1 - len(str(tmp_path)) - 1))
    assert len(str(fits)) == SUN_PATH - 1
    text = f'[server]\nsocket = "{fits}"\ndatabase = "{tmp_path}/runhook.db"\n'
    assert check(text.encode(), "f.toml") == []
    longer = f"{fits}x"
    path = tmp_path / "long.toml"
    path.write_text(text.replace(str(fits), longer))
    assert check(path.read_bytes(), str(path)) == [
        (f"server.socket: {longer!r} is {SUN_PATH} bytes; a Unix socket's path is at most "
        f"{SUN_PATH - 1} bytes on this system: choose a shorter one (such as "
        "/run/runhook/events.sock)")]
    run = subprocess.run([sys.executable, "-m", "runhook", "serve", "--config", str(path)],
                         check=False, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "server.socket: " in run.stderr, run.stderr
    assert not (tmp_path / "runhook.db").exists()


def test_check_config_takes_config_like_every_command(tmp_path):
    path = tmp_path / "hook.toml"
    path.write_text(HOOK)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runhook", "check-config", *args],
                              check=False, capture_output=True, text=True, timeout=30)

    both = cli(str(path)), cli("--config", str(path))
    assert both[0].stdout == both[1].stdout != ""
    assert both[1].returncode == 1 and "2 problems found" in both[1].stdout
    neither = cli()
    assert neither.returncode == 2
    assert "give the configuration file, as FILE or --config FILE" in neither.stderr
