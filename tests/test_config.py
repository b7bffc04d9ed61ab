"""Configuration errors name their path and reason; good files load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runhook.config.model import ConfigError, decode
from runhook.config.settings import build, load

ROOT = Path(__file__).resolve().parent.parent

HOOK = """
[integrations.ci]
kind = "webhook"
url = "https://ci.example.com/hook"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build(decode(text))
    return caught.value.problems


def automation(event: str, action: str = 'action = { kind = "none" }',
               scope: str = "project:acme/vision", extra: str = "") -> str:
    return f"""
[[automations]]
name = "a1"
scope = "{scope}"
event = {event}
{action}
{extra}
"""


def test_example_config_loads():
    settings = load(ROOT / "config" / "runhook.toml")
    assert [a.name for a in settings.automations] == ["record-new-versions",
                                                      "deploy-on-production", "loss-diverged",
                                                      "run-failed"]
    assert set(settings.integrations) == {"local"}


@pytest.mark.parametrize("text, expected", [
    ("[server]\nsockt = 'x'", "server: object contains unknown field `sockt`"),
    (automation('{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 1, '
                'window = 0 }'), "automations[0].event.window: expected `int` >= 1"),
    (automation('{ kind = "NOT_A_KIND" }'), "automations[0].event.kind: invalid value"),
    (automation('{ kind = "CREATE_ARTIFACT", alias = "x" }'),
     "automations[0].event: object contains unknown field `alias`"),
    (automation('{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = "~", threshold = 1 }'),
     "automations[0].event.cmp: invalid value '~'"),
    ("[integrations.x]\nkind = 'fax'\nurl = 'https://x'", "integrations.x.kind: invalid value"),
    ("[[automations]]\nname = 'a'", "automations[0]: object missing required field `scope`"),
    ("this is = not toml =", "not valid TOML"),
])
def test_structural_errors_name_the_path(text, expected):
    with pytest.raises(ConfigError) as caught:
        decode(text)
    assert caught.value.problems[0].startswith(expected), caught.value.problems


@pytest.mark.parametrize("text, expected", [
    (automation('{ kind = "CREATE_ARTIFACT" }', scope="registry:acme/model"),
     "automations[0].event.kind: CREATE_ARTIFACT cannot happen in a registry scope"),
    (automation('{ kind = "LINK_ARTIFACT" }', scope="project:acme/vision"),
     "automations[0].event.kind: LINK_ARTIFACT cannot happen in a project scope"),
    (automation('{ kind = "GROUP_FINISHED" }', scope="entity:acme"),
     "automations[0].event.kind: GROUP_FINISHED cannot happen in an entity scope"),
    (automation('{ kind = "RUN_STATE", states = ["failed"] }', scope="registry:acme/model"),
     "automations[0].event.kind: RUN_STATE cannot happen in a registry scope"),
    (automation('{ kind = "CREATE_ARTIFACT" }', scope="team:acme"),
     "automations[0].scope: expected 'project:ENTITY/PROJECT'"),
    (automation('{ kind = "ADD_ARTIFACT_ALIAS", alias = "prod(" }'),
     "automations[0].event.alias: bad regular expression 'prod('"),
    (automation('{ kind = "CREATE_ARTIFACT" }', extra='cooldown = "soon"'),
     "automations[0].cooldown: expected a duration"),
    (automation('{ kind = "CREATE_ARTIFACT" }', action='action = { integration = "nope" }'),
     "automations[0].action.integration: 'nope' is not declared under [integrations]"),
    (automation('{ kind = "CREATE_ARTIFACT" }', action="action = {}"),
     "automations[0].action: name an `integration`"),
    (HOOK + automation('{ kind = "CREATE_ARTIFACT" }',
                       action="""action = { integration = "ci", payload = '{"x": "${run_nmae}"}' }"""),
     "automations[0].action.payload: unknown variable ${run_nmae}"),
    (HOOK + automation('{ kind = "CREATE_ARTIFACT" }',
                       action="""action = { integration = "ci", payload = '{"x": ${tag}}' }"""),
     "automations[0].action.payload: payload is not valid JSON"),
    (HOOK + automation('{ kind = "CREATE_ARTIFACT" }',
                       action='action = { integration = "ci", title = "t" }'),
     "automations[0].action.title: webhook actions take `payload`"),
    ("[integrations.ci]\nkind = 'webhook'\nurl = 'http://ci.example.com'",
     "integrations.ci.url: plain http needs allow_http = true"),
    ("[integrations.ci]\nkind = 'webhook'\nurl = 'ftp://x'", "integrations.ci.url: expected an http"),
    ("[integrations.ci]\nkind = 'webhook'\nurl = 'https://x'\naccess_token = 'GH'",
     "integrations.ci.access_token: 'GH' is not declared under [secrets]"),
    ("[integrations.ci]\nkind = 'webhook'\nurl = 'https://x'\nrate = 'fast'",
     "integrations.ci.rate: expected a rate"),
    ("[integrations.s]\nkind = 'slack'", "integrations.s: give either url_secret"),
    ("[secrets]\nX = { env = 'RUNHOOK_TEST_UNSET_VARIABLE' }",
     "secrets.X: environment variable RUNHOOK_TEST_UNSET_VARIABLE is not set"),
    ("[secrets]\nX = { file = '/nonexistent/key' }", "secrets.X: cannot read /nonexistent/key"),
    ("[secrets]\nX = { env = 'A', file = 'b' }", "secrets.X: give exactly one of"),
])
def test_semantic_errors_name_the_path(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_errors_name_the_automation_and_all_are_reported():
    text = automation('{ kind = "LINK_ARTIFACT" }') + automation(
        '{ kind = "ADD_ARTIFACT_TAG", tag = "[" }').replace("a1", "second") + automation(
        '{ kind = "CREATE_ARTIFACT" }')
    found = problems(text)
    assert len(found) == 3
    assert "(automation 'a1')" in found[0]
    assert "(automation 'second')" in found[1]
    assert found[2] == "automations[2].name: 'a1' is used by an earlier automation"


def test_secret_from_systemd_credential(tmp_path, monkeypatch):
    (tmp_path / "gh_token").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = build(decode("[secrets]\nGH = { credential = 'gh_token' }"))
    assert settings.secrets == {"GH": "from-credential"}


def test_check_config_cli(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(HOOK + automation('{ kind = "CREATE_ARTIFACT" }'))
    bad = tmp_path / "bad.toml"
    bad.write_text(automation('{ kind = "LINK_ARTIFACT" }'))
    run = [sys.executable, "-m", "runhook", "check-config"]
    ok = subprocess.run([*run, str(good)], check=False, capture_output=True, text=True)
    assert ok.returncode == 0
    assert ok.stdout.strip() == f"{good}: ok, 1 automation, 1 integration"
    failed = subprocess.run([*run, str(bad)], check=False, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stdout.startswith(f"{bad}: automations[0].event.kind: LINK_ARTIFACT cannot")


def test_serve_refuses_a_bad_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 1")
    run = subprocess.run([sys.executable, "-m", "runhook", "serve", "--config", str(bad)],
                         check=False, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert "server: object contains unknown field `port`" in run.stderr


def test_serve_says_why_it_cannot_start(tmp_path):
    import socket as socketlib
    taken = socketlib.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = tmp_path / "c.toml"
    config.write_text(f'[server]\nsocket = "{tmp_path}/s.sock"\nhttp = "127.0.0.1:{port}"\n'
                      f'database = "{tmp_path}/r.db"\n')
    run = subprocess.run([sys.executable, "-m", "runhook", "serve", "--config", str(config)],
                         check=False, capture_output=True, text=True, timeout=30)
    taken.close()
    assert run.returncode == 1
    assert f"cannot start: cannot serve HTTP on 127.0.0.1:{port}" in run.stderr
    assert "address already in use (server.http)" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "s.sock").exists()  # nothing left behind

    database = tmp_path / "not-a-db"
    database.write_text("this is not SQLite " * 100)
    config.write_text(f'[server]\nsocket = "{tmp_path}/s.sock"\nhttp = ""\n'
                      f'database = "{database}"\n')
    run = subprocess.run([sys.executable, "-m", "runhook", "serve", "--config", str(config)],
                         check=False, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert f"cannot start: cannot open the database {database}: file is not a database" in run.stderr


@pytest.mark.parametrize("data, expected", [
    (b"[server]\n# caf\xe9\n", "not UTF-8: byte 0xe9 at offset 14 (line 2, column 6)"),
    (b"x = " + b"[" * 100_000, "not valid TOML: arrays or inline tables nested too deeply"),
    (b"x = " + b"{a = " * 100_000, "not valid TOML: arrays or inline tables nested too deeply"),
    (b"x = 1" + b"0" * 5000, "not valid TOML: Exceeds the limit (4300 digits)"),
], ids=["not-utf8", "deep-array", "deep-table", "huge-integer"])
def test_text_that_is_not_toml_is_a_config_error(data, expected):
    with pytest.raises(ConfigError) as caught:
        decode(data, "f.toml")
    assert caught.value.problems[0].startswith(expected), caught.value.problems


def test_check_config_names_the_file_and_offset_of_a_bad_byte(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[server]\nhttp = "127.0.0.1:8787"  # caf\xe9\n')
    run = subprocess.run([sys.executable, "-m", "runhook", "check-config", str(bad)],
                         check=False, capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (1, "")
    assert run.stdout == (f"{bad}: not UTF-8: byte 0xe9 at offset 39 (line 2, column 31); "
                          "TOML files are UTF-8 text\n")


@pytest.mark.parametrize("server, expected", [
    ("socket_mode = 99999999999999999999999",
     "server.socket_mode: expected `int` <= 511 (a permission mode, 0o000 to 0o777"),
    ("socket_mode = 0o1000", "server.socket_mode: expected `int` <= 511"),
    ("socket_mode = -1", "server.socket_mode: expected `int` >= 0"),
    ('http = "127.0.0.1:99999"', "server.http: port must be a number from 1 to 65535, got '99999'"),
    ('http = "127.0.0.1:0"', "server.http: port 0 would be any free port"),
    ('http = "127.0.0.1:"', "server.http: expected HOST:PORT"),
    ('http = "127.0.0.1: 80"', "server.http: port must be a number from 1 to 65535"),
    ('http = "127.0.0.1:８０"', "server.http: port must be a number from 1 to 65535"),
    ('http = "8787"', "server.http: expected HOST:PORT"),
    ('http = "0.0.0.0:0"', "server.http: "),
    ('http = "0.0.0.0:8787"', "server.http: '0.0.0.0' is not a loopback address"),
    ('http = "[::]:8787"', "server.http: '::' is not a loopback address"),
    ('http = "192.168.1.10:8787"', "server.http: '192.168.1.10' is not a loopback address"),
    ('http = "example.com:8787"', "server.http: 'example.com' is not a loopback address"),
    ('http = "127.1:8787"', "server.http: '127.1' is not a loopback address"),
    ('http = "[::ffff:127.0.0.1]:8787"', "server.http: '::ffff:127.0.0.1' is not a loopback"),
])
def test_server_values_serve_would_misread_are_refused(server, expected):
    with pytest.raises(ConfigError) as caught:
        build(decode(f"[server]\n{server}\n"))
    assert caught.value.problems[0].startswith(expected), caught.value.problems


@pytest.mark.parametrize("http", ["127.0.0.1:8787", "127.3.2.1:1", "localhost:65535",
                                  "[::1]:8787", "::1:8787", ":8787", ""])
def test_loopback_http_addresses_load(http):
    settings = build(decode(f'[server]\nhttp = "{http}"\nsocket_mode = 0o600\n'))
    assert settings.config.server.http == http


@pytest.mark.parametrize("server, expected", [
    ("socket_mode = 99999999999999999999999", "server.socket_mode: expected `int` <= 511"),
    ('http = "0.0.0.0:0"', "server.http: port 0 would be any free port"),
])
def test_serve_refuses_what_check_config_refuses(tmp_path, server, expected):
    config = tmp_path / "c.toml"
    config.write_text(f'[server]\nsocket = "{tmp_path}/s.sock"\ndatabase = "{tmp_path}/r.db"\n'
                      f"{server}\n")
    run = [sys.executable, "-m", "runhook"]
    checked = subprocess.run([*run, "check-config", str(config)],
                             check=False, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 1
    assert checked.stdout.startswith(f"{config}: {expected}")
    served = subprocess.run([*run, "serve", "--config", str(config)],
                            check=False, capture_output=True, text=True, timeout=30)
    assert served.returncode == 2
    assert f"  {expected}" in served.stderr
    assert "Traceback" not in served.stderr
    assert not (tmp_path / "s.sock").exists()


def test_payload_key_placeholder_names_the_automation():
    text = HOOK + automation('{ kind = "CREATE_ARTIFACT" }', action="""action = { integration = \
"ci", payload = '{"approved_by": "ci", "${event_author}": true}' }""")
    expected = ("automations[0].action.payload: placeholder in an object key at $: keys are "
                "fixed, so no rendered value can overwrite another key; put ${event_author} in "
                "a value (automation 'a1')")
    assert problems(text) == [expected]


@pytest.mark.parametrize("value", ["", "abc", "1234567", " 12345 "])
def test_secret_shorter_than_eight_characters_is_refused(tmp_path, value):
    # The redactor replaces a secret of any length, so a short one would garble every
    # log line holding its letters; it is refused at load instead.
    (tmp_path / "key").write_text(value)
    found = problems(f"[secrets]\nSHORT = {{ file = '{tmp_path}/key' }}")
    assert len(found) == 1
    assert found[0].startswith("secrets.SHORT: ")
    if value.strip():
        assert found[0] == ("secrets.SHORT: shorter than 8 characters; a secret that short "
                            "is guessable, and too likely to occur in ordinary text to be "
                            "redacted from logs and stored errors")
        assert value.strip() not in found[0]


def test_secret_of_eight_characters_loads(monkeypatch):
    monkeypatch.setenv("RH_TEST_SECRET", "8chars!!")
    assert build(decode("[secrets]\nOK = { env = 'RH_TEST_SECRET' }")).secrets == {"OK": "8chars!!"}


def test_secret_file_that_is_not_utf8_is_refused_without_its_bytes(tmp_path):
    (tmp_path / "key").write_bytes(b"secret-\xe9\xff-value")
    found = problems(f"[secrets]\nBIN = {{ file = '{tmp_path}/key' }}")
    assert found == [f"secrets.BIN: {tmp_path}/key is not UTF-8 text"]


def webhook(url: str, private: bool) -> str:
    return (f"[integrations.ci]\nkind = 'webhook'\nurl = '{url}'\nallow_http = true\n"
            f"allow_private = {str(private).lower()}\n")


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0", "127.0.0.1.", "0x7f.0.0.1",
                                  "0177.0.0.1", "127.000.000.001", "1.2.3.4.5", "10.0.0.1."])
@pytest.mark.parametrize("private", [False, True])
def test_noncanonical_ipv4_hosts_are_refused_at_load(host, private):
    found = problems(webhook(f"http://{host}:8080/hook", private))
    assert any(p.startswith("integrations.ci.url: ") and "not a canonical IPv4 address" in p
               for p in found), found


@pytest.mark.parametrize("url, address", [
    ("http://127.0.0.1:8080/hook", "127.0.0.1 is a loopback"),
    ("http://１２７.０.０.１:8080/hook", "127.0.0.1 is a loopback"),
    ("http://127。0。0。1:8080/hook", "127.0.0.1 is a loopback"),
    ("http://[::ffff:10.0.0.1]/hook", "10.0.0.1 is a private"),
    ("https://169.254.169.254/latest", "169.254.169.254 is a link-local"),
    ("https://100.100.100.200/latest", "100.100.100.200 is a non-global"),
])
def test_literal_private_addresses_are_refused_at_load_unless_allowed(url, address):
    found = problems(webhook(url, private=False))
    assert any(p.startswith("integrations.ci.url: ") and address in p for p in found), found
    build(decode(webhook(url, private=True)))


def test_a_slack_url_secret_is_checked_at_load_without_echoing_it(monkeypatch):
    monkeypatch.setenv("RH_HOOK", "http://2130706433/services/T0/B0/SecretHookToken")
    found = problems("[secrets]\nHOOK = { env = 'RH_HOOK' }\n[integrations.s]\nkind = 'slack'\n"
                     "url_secret = 'HOOK'\nallow_http = true\n")
    assert any(p.startswith("integrations.s.url_secret: ") and "canonical" in p for p in found)
    assert not any("SecretHookToken" in p or "2130706433" in p for p in found), found


def test_serve_refuses_a_hostile_url_before_anything_is_sent(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[server]\nsocket = "{tmp_path}/s.sock"\nhttp = ""\n'
                      f'database = "{tmp_path}/r.db"\n' + webhook("http://127。0。0。1:9/h", False))
    run = subprocess.run([sys.executable, "-m", "runhook", "serve", "--config", str(config)],
                         check=False, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert "integrations.ci.url: 127.0.0.1 is a loopback address" in run.stderr


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    """socket, database and a secret's file: from the file's directory, whatever the
    working directory (the daemon and `--config` clients agree; a newcomer ran
    check-config from /tmp and the key file was looked for there)."""
    from runhook.config.model import read
    from runhook.config.settings import load
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "signing.key").write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    (tmp_path / "etc" / "r.toml").write_text("""
[server]
socket = "../var/r.sock"
database = "/abs/r.db"
[secrets]
KEY = { file = "signing.key" }
""")
    monkeypatch.chdir("/")
    config = read(tmp_path / "etc" / "r.toml")
    assert config.server.socket == str(tmp_path / "var" / "r.sock")
    assert config.server.database == "/abs/r.db"  # absolute: as written
    assert config.secrets["KEY"].file == str(tmp_path / "etc" / "signing.key")
    assert load(tmp_path / "etc" / "r.toml").secrets["KEY"].startswith("whsec_")


def test_a_public_http_bind_is_refused_for_the_reason_that_holds_now():
    # The console requires a login session: what a public bind would expose is the
    # token and cookie over plain HTTP, and the open health and metrics routes.
    with pytest.raises(ConfigError) as caught:
        build(decode('[server]\nhttp = "0.0.0.0:8080"\n'))
    assert caught.value.problems == [
        ("server.http: '0.0.0.0' is not a loopback address: the HTTP server has no TLS, so "
        "beyond this machine the console's login token and session cookie would cross the "
        "network in clear text, and /healthz, /readyz and /metrics answer anyone; it "
        "listens on 127.0.0.0/8, ::1 or localhost only, and no setting changes that: from "
        "elsewhere, open the console through an SSH tunnel (ssh -L 8080:127.0.0.1:8080 HOST)")]
