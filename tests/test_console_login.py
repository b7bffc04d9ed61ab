"""The console's login on a real daemon: a user who cannot read the login file (uid
`nobody`) gets 401 from every page, form and API route and can do nothing; the login
URL `runhook console` prints gives a cookie that lets everything in; a rotated token
(`runhook console --rotate`, a restart) refuses the old cookie."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from conftest import settled
from test_console import CONFIG, TOKEN, _failed, _token

from runhook.core.metrics import Metrics
from runhook.web import server
from runhook.web.session import OPEN_PATHS, Login

# Every route of the console and its API, with the path the test uses for it.
ROUTES = [
    ("GET", "/", "/"),
    ("GET", "/automations", "/automations"),
    ("GET", "/automations/{name}", "/automations/crash"),
    ("GET", "/executions", "/executions"),
    ("GET", "/executions/{id}", "/executions/@ID@"),
    ("GET", "/runs", "/runs"),
    ("GET", "/runs/{id}", "/runs/r1"),
    ("GET", "/integrations", "/integrations"),
    ("POST", "/executions/{id}/redeliver", "/executions/@ID@/redeliver"),
    ("POST", "/integrations/test", "/integrations/test"),
    ("POST", "/integrations/{name}/test", "/integrations/ci/test"),
    ("POST", "/integrations/{name}/enable", "/integrations/ci/enable"),
    ("GET", "/api/executions", "/api/executions"),
    ("GET", "/api/executions/{id}", "/api/executions/@ID@"),
    ("GET", "/api/status", "/api/status"),
    ("GET", "/api/silences", "/api/silences"),
    ("POST", "/api/silences", "/api/silences"),
    ("POST", "/api/silences/{id}/expire", "/api/silences/si_x/expire"),
]

# Run as `nobody`: every route without a session, and the login file. Standard
# library only (the venv's interpreter lives under /root, which nobody cannot enter).
STRANGER = r"""
import json, sys, urllib.request, urllib.error
base, login_file, routes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
answers = {}
for method, path in routes:
    if path.startswith("/api/"):
        body, kind = b'{"all": true, "duration": "87600h", "comment": "x"}', "application/json"
    else:
        body, kind = b"csrf=guess&integration=ci&payload=mine", "application/x-www-form-urlencoded"
    request = urllib.request.Request(base + path, method=method,
                                     data=body if method == "POST" else None,
                                     headers={"Origin": base, "Content-Type": kind})
    try:
        with urllib.request.urlopen(request) as r:
            answers[method + " " + path] = [r.status, r.headers.get_content_type()]
    except urllib.error.HTTPError as e:
        answers[method + " " + path] = [e.code, e.headers.get_content_type()]
try:
    open(login_file).read()
    answers["login file"] = "read"
except PermissionError:
    answers["login file"] = "refused"
print(json.dumps(answers))
"""


def _runhook(daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runhook", *args, "--socket", daemon.socket],
                          check=False, capture_output=True, text=True, timeout=60)


def _as_nobody(python: str, base: str, login_file: Path,
               routes: list[tuple[str, str]]) -> dict[str, object]:
    """What the stranger script got, run as uid nobody (not in the socket's group)."""
    done = subprocess.run([python, "-I", "-c", STRANGER, base, str(login_file),
                           json.dumps(routes)], user="nobody", group="nogroup",
                          capture_output=True, text=True, timeout=60, check=False, cwd="/")
    assert done.returncode == 0, done.stderr
    answers: dict[str, object] = json.loads(done.stdout)
    return answers


async def _daemon(start_daemon, short_dir: Path, url: str):
    (short_dir / "token").write_text(TOKEN)
    return await start_daemon(CONFIG.replace("@URL@", url))


async def _one_execution(daemon, receiver) -> str:
    async with daemon.client() as client:
        assert (await client.send(_failed("prod-1")))["ok"]
    execution_id = (await receiver.next()).headers["webhook-id"]
    await settled(daemon, execution_id)
    return execution_id


def test_every_route_is_in_the_list():
    """The stranger below tries every route the app has (a new one is added here)."""
    class Idle:
        metrics = Metrics()

    app = server.make_app(Idle(), None, Login("/nonexistent/ev.sock", 0o660, "127.0.0.1:1"))
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    assert routes - {("GET", path) for path in OPEN_PATHS} == {(m, p) for m, p, _ in ROUTES}


async def test_another_uid_gets_401_everywhere_and_cannot_read_the_token(
        start_daemon, receiver, short_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root, to drop to uid nobody (CI runs as root)")
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 that uid nobody can run")
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    execution_id = await _one_execution(daemon, receiver)
    # The directory open to all: only the file's own mode keeps the token in.
    short_dir.chmod(0o755)
    login_file = Path(f"{daemon.socket}.console")
    info = login_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640 and (info.st_uid, info.st_gid) == (0, 0)
    routes = [(m, p.replace("@ID@", execution_id)) for m, _, p in ROUTES]
    routes += [("GET", path) for path in ("/healthz", "/readyz", "/metrics")]
    answers = _as_nobody(python, daemon.http, login_file, routes)
    assert answers.pop("login file") == "refused"
    for route, path in ((f"{m} {p}", p) for m, p in routes):
        status, kind = answers[route]
        if path in ("/healthz", "/readyz", "/metrics"):
            assert status == 200, route  # no secret, no action: open
        elif route.startswith("GET /") and not path.startswith("/api/"):
            assert (status, kind) == (401, "text/html"), route
        else:
            assert (status, kind) == (401, "application/json"), route
    # Nothing was done: no test request went out, no silence, no redelivery.
    async with daemon.client() as client:
        assert (await client.request({"type": "command.silence_list"}))["silences"] == []
        found = await client.request({"type": "query.execution", "id": execution_id})
    assert len(found["attempts"]) == 1 and len(receiver.requests) == 1


async def test_the_login_url_gives_a_strict_cookie_and_then_everything_works(
        start_daemon, receiver, short_dir):
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    execution_id = await _one_execution(daemon, receiver)
    printed = _runhook(daemon, "console")
    assert printed.returncode == 0, printed.stderr
    url = printed.stdout.strip()
    token = json.loads(Path(f"{daemon.socket}.console").read_text())["token"]
    assert url == f"{daemon.http}/login?token={token}"
    assert token not in daemon.log_text()
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{url}&next=/executions/{execution_id}",
                            allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == f"/executions/{execution_id}"
            cookie = r.headers["Set-Cookie"]
        assert token not in cookie  # the cookie is made from the token, not the token
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        for path in ("/", "/automations/crash", f"/executions/{execution_id}",
                     "/integrations", "/api/status", f"/api/executions/{execution_id}"):
            async with http.get(daemon.http + path) as r:
                assert r.status == 200, path
        async with http.get(f"{daemon.http}/executions/{execution_id}") as r:
            csrf = _token(await r.text())
        # A form action goes through with the session and the CSRF token.
        async with http.post(f"{daemon.http}/integrations/ci/test", allow_redirects=False,
                             data={"csrf": csrf}, headers={"Origin": daemon.http}) as r:
            assert r.status == 303
        await receiver.next()
        # An off-site `next` is not followed.
        async with http.get(f"{url}&next=//evil.example/", allow_redirects=False) as r:
            assert r.headers["Location"] == "/"
    # Scripts: the token as a bearer header; a wrong one is refused.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{daemon.http}/api/status",
                            headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
        async with http.get(f"{daemon.http}/api/status",
                            headers={"Authorization": f"Bearer {token}x"}) as r:
            assert r.status == 401
        async with http.get(f"{daemon.http}/login?token=nope", allow_redirects=False) as r:
            assert r.status == 401 and "Set-Cookie" not in r.headers


async def test_a_rotated_token_refuses_the_old_cookie(start_daemon, receiver, short_dir):
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    old_url = daemon.login_url()
    async with daemon.console() as http:
        async with http.get(daemon.http + "/") as r:
            assert r.status == 200
        rotated = _runhook(daemon, "console", "--rotate")
        assert rotated.returncode == 0, rotated.stderr
        new_url = rotated.stdout.strip()
        assert new_url != old_url and new_url == daemon.login_url()
        for path in ("/", "/api/status"):
            async with http.get(daemon.http + path) as r:
                assert r.status == 401, path
        async with http.get(old_url, allow_redirects=False) as r:
            assert r.status == 401
        async with http.get(new_url, allow_redirects=False) as r:
            assert r.status == 303
        async with http.get(daemon.http + "/") as r:
            assert r.status == 200
        # A restart makes a new token too; the file is gone while the daemon is down.
        assert await daemon.stop() == 0
        assert not Path(f"{daemon.socket}.console").exists()
        daemon = await start_daemon(config=daemon.config)
        assert daemon.login_url() not in (old_url, new_url)
        async with http.get(daemon.http + "/") as r:
            assert r.status == 401


def test_console_without_a_daemon_says_so(short_dir):
    done = subprocess.run([sys.executable, "-m", "runhook", "console", "--socket",
                           f"{short_dir}/ev.sock"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1
    assert f"no console login file {short_dir}/ev.sock.console" in done.stderr


async def test_host_guard_refuses_what_is_not_a_loopback_name_and_port(
        start_daemon, receiver, short_dir):
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    port = daemon.http.rsplit(":", 1)[1]
    refused = ["[::1]evil.com", f"localhost:{port}@evil.com", f"127.0.0.1:{port}:80",
               "localhost.", f"[::1]:{port}x", "127.0.0.1 evil.com", "[::1", "[::2]",
               "evil.com#localhost", f"localhost:{port}/x", f"localhost:-{port}"]
    let_in = [f"[::1]:{port}", "localhost", f"LOCALHOST:{port}", f"127.0.0.1:{port}"]
    async with daemon.console() as http:
        for host in refused + let_in:
            async with http.get(daemon.http + "/", headers={"Host": host},
                                allow_redirects=False) as r:
                if host in let_in:
                    assert r.status == 200, host
                else:
                    assert r.status == 403, host
                    assert "is not a loopback name" in await r.text()


async def test_a_malformed_form_body_is_400_not_500(start_daemon, receiver, short_dir):
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    bodies = [
        ("multipart/form-data", b"csrf=x"),  # no boundary
        ("multipart/form-data; boundary=xx", b"not a part"),
        ("multipart/form-data; boundary=xx", b"--xx\r\nno header colon\r\n\r\nv\r\n--xx--\r\n"),
        ("multipart/form-data; boundary=xx",  # a part without a name
         b"--xx\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xx--\r\n"),
        ("application/x-www-form-urlencoded; charset=nope", b"csrf=x"),
    ]
    async with daemon.console() as http:
        for kind, body in bodies:
            async with http.post(f"{daemon.http}/integrations/ci/enable", data=body,
                                 headers={"Content-Type": kind, "Origin": daemon.http},
                                 allow_redirects=False) as r:
                assert r.status == 400, (kind, body)
                assert (await r.text()).startswith("bad form: "), (kind, body)
    assert "Traceback" not in daemon.log_text()


async def test_the_login_pages_name_the_config_the_console_command_needs(start_daemon):
    # `runhook console` without --config looks for the default socket's login file:
    # a `make run` daemon's is beside its own socket, so the pages say to give it.
    daemon = await start_daemon()
    hint = ("run `runhook console --config FILE` (FILE: the file the daemon runs on) on "
            "this machine as a user of the events socket")
    async with aiohttp.ClientSession() as http:
        async with http.get(daemon.http + "/") as r:
            assert r.status == 401 and hint in await r.text()
        async with http.get(daemon.http + "/login?token=old", allow_redirects=False) as r:
            page = await r.text()
            assert r.status == 401 and "Wrong or old login token" in page and hint in page
        async with http.get(daemon.http + "/api/status") as r:
            assert r.status == 401
            assert (await r.json())["error"] == "not logged in to the console: " + hint
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "runhook", "console"],
        env={**os.environ, "RUNHOOK_URL": daemon.socket + ".elsewhere"},
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr == (f"runhook: no console login file {daemon.socket}.elsewhere.console"
                           " (by $RUNHOOK_URL or the default socket; give the daemon's "
                           "configuration file with --config FILE): is the daemon running, "
                           "with [server] http set?\n")
