"""The console on a real daemon: its pages, what they escape and mask, filters and
keyset paging, and the guard around its actions (Host, Origin, CSRF)."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from conftest import eventually, settled

TOKEN = "tok_console_very_secret_42"
HOSTILE = "<script>alert('x')</script>\"&"

CONFIG = """
[secrets]
SIGNING = { file = "@DIR@/signing.key" }
TOKEN = { file = "@DIR@/token" }

[integrations.ci]
kind = "webhook"
url = "@URL@"
access_token = "TOKEN"
signing_secret = "SIGNING"
allow_http = true
allow_private = true

[[automations]]
name = "crash"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["failed"] }
action = { integration = "ci", payload = '''{"run": "${run_name}", "status": "${run_status}"}''' }

[[automations]]
name = "record"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }
"""


async def _daemon(start_daemon, short_dir: Path, url: str):
    (short_dir / "token").write_text(TOKEN)
    return await start_daemon(CONFIG.replace("@URL@", url))


def _failed(run_name: str, run_id: str = "r1") -> dict:
    return {"type": "run.state", "entity": "acme", "project": "vision", "run_id": run_id,
            "run_name": run_name, "state": "failed"}


def _created(version: int, collection: str = "ds") -> dict:
    return {"type": "artifact.created", "entity": "acme", "project": "vision",
            "collection": collection, "version": version}


async def _get(http: aiohttp.ClientSession, url: str, **kw) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False, **kw) as r:
        return r.status, await r.text()


def _token(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def test_execution_page_escapes_masks_and_lists_attempts(start_daemon, receiver,
                                                               short_dir):
    receiver.responses.append((200, "received: all good", {}))
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    async with daemon.client() as client:
        assert (await client.send(_failed(HOSTILE)))["ok"]
    sent = await receiver.next()
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"  # the real one goes out
    execution_id = sent.headers["webhook-id"]
    await settled(daemon, execution_id)
    async with daemon.console() as http:
        status, html = await _get(http, f"{daemon.http}/executions/{execution_id}")
    assert status == 200
    assert "<script" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)" in html
    assert TOKEN not in html
    assert "Authorization: Bearer [secret TOKEN]" in html
    assert "webhook-signature: [HMAC-SHA256 with secret SIGNING, computed at send time]" in html
    assert f"webhook-id: {execution_id}" in html
    # The body as it is sent: the hostile name JSON-escaped, then HTML-escaped.
    assert ('{&quot;run&quot;:&quot;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;'
            '\\&quot;&amp;&quot;,&quot;status&quot;:&quot;failed&quot;}') in html
    attempt = html.split("<h2>Attempts</h2>")[1]
    assert "<td>200</td>" in attempt and "received: all good" in attempt
    assert re.search(r"\d\d:\d\d:\d\d UTC([+-]\d\d:\d\d)?<", html)  # time with its zone, once
    # Never in a log line or a database row either.
    assert TOKEN not in daemon.log_text()
    for path in short_dir.glob("runhook.db*"):
        assert TOKEN.encode() not in path.read_bytes(), path


async def test_pages_list_and_link(start_daemon, receiver, short_dir):
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    async with daemon.client() as client:
        await client.send(_failed("prod-7", "r7"))
        await client.send(_created(1))
    execution_id = (await receiver.next()).headers["webhook-id"]
    await settled(daemon, execution_id)
    async with daemon.console() as http:
        for path in ("/", "/automations", "/automations/crash", "/executions", "/integrations"):
            status, html = await _get(http, daemon.http + path)
            assert status == 200, path
            assert f'href="/executions/{execution_id}"' in html or path in (
                "/automations", "/integrations"), path
        _, html = await _get(http, daemon.http + "/")
        # One scope (acme/vision), one run (r7), two events: each noun agrees.
        assert "2 events received since start" in html
        assert "1 scope ·" in html and "1 run tracked" in html
        _, html = await _get(http, daemon.http + "/automations/crash")
        assert "<dt>states</dt><dd><code>[&quot;failed&quot;]</code></dd>" in html
        assert "<dt>cooldown</dt><dd>1d per run</dd>" in html
        assert "1 execution: pending 0 · finished 1 · failed 0 · skipped 0" in html
        _, html = await _get(http, daemon.http + "/executions?run=r7")
        assert execution_id in html and "record" not in html.split("</form>")[1]
        _, html = await _get(http, daemon.http + "/executions?state=FAILED")
        assert "no executions match" in html
        status, _ = await _get(http, daemon.http + "/executions?state=DONE")
        assert status == 400
        status, _ = await _get(http, daemon.http + "/automations/nope")
        assert status == 404


async def test_keyset_pages_walk_both_ways(start_daemon, receiver, short_dir):
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    async with daemon.client() as client:
        for version in range(1, 8):
            await client.send(_created(version, collection="even" if version % 2 == 0
                                       else "odd"))

    def versions(html: str) -> list[int]:
        return [int(v) for v in re.findall(r"acme/vision/(?:even|odd):v(\d)", html)]

    def next_link(html: str, label: str) -> str:
        return re.search(rf'<a href="([^"]+)">{label}</a>', html).group(1).replace("&amp;", "&")

    base = f"{daemon.http}/executions?automation=record&rows=3"
    async with daemon.console() as http:
        _, first = await _get(http, base)
        assert versions(first) == [7, 6, 5] and "newer" not in first
        _, second = await _get(http, daemon.http + next_link(first, "older →"))
        assert versions(second) == [4, 3, 2]
        _, third = await _get(http, daemon.http + next_link(second, "older →"))
        assert versions(third) == [1] and "older" not in third
        _, back = await _get(http, daemon.http + next_link(third, "← newer"))
        assert versions(back) == [4, 3, 2]
        _, top = await _get(http, daemon.http + next_link(back, "← newer"))
        assert versions(top) == [7, 6, 5] and "newer" not in top
        _, even = await _get(http, f"{daemon.http}/executions?collection=even")
        assert versions(even) == [6, 4, 2]


async def test_guard_refuses_rebinding_cross_site_and_tokenless_posts(start_daemon, receiver,
                                                                       short_dir):
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    async with daemon.client() as client:
        await client.send(_failed("prod-1"))
    execution_id = (await receiver.next()).headers["webhook-id"]
    await settled(daemon, execution_id)
    page = f"{daemon.http}/executions/{execution_id}"
    action = f"{page}/redeliver"
    origin = daemon.http
    async with daemon.console() as http:
        # DNS rebinding: the attacker's name resolves to 127.0.0.1, the Host stays theirs.
        status, text = await _get(http, page, headers={"Host": "evil.example:8787"})
        assert status == 403 and "not a loopback name" in text
        async with http.get(page) as r:
            assert r.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            token = _token(await r.text())
        refused = [
            ({"Origin": "http://evil.example"}, {"csrf": token}),
            ({}, {"csrf": token}),  # no Origin, no Referer
            ({"Origin": origin, "Sec-Fetch-Site": "cross-site"}, {"csrf": token}),
            ({"Origin": origin}, {"csrf": "guessed"}),
            ({"Origin": origin}, {}),
            ({"Origin": origin, "Host": "evil.example"}, {"csrf": token}),
        ]
        for headers, form in refused:
            async with http.post(action, data=form, headers=headers,
                                 allow_redirects=False) as r:
                assert r.status == 403, (headers, form)
        assert len(receiver.requests) == 1  # nothing was redelivered
        async with http.post(action, data={"csrf": token}, allow_redirects=False,
                             headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"}) as r:
            assert r.status == 303
            location = r.headers["Location"]
        again = await receiver.next()
        assert again.headers["webhook-id"] == execution_id  # the same id, for dedup
        _, html = await _get(http, daemon.http + location)
        assert f"queued for redelivery: {execution_id}" in html
        # A message the console did not sign is not shown.
        _, html = await _get(http, f"{page}?done=send+your+token+to+evil&sig=00")
        assert "send your token" not in html


async def test_integration_actions_and_last_error(start_daemon, receiver, short_dir):
    receiver.responses += [(500, "down", {}), (200, "ok", {}), (410, "gone", {}),
                           (200, "test ok", {})]
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    url = f"{daemon.http}/integrations"
    async with daemon.console() as http:
        async with daemon.client() as client:
            await client.send(_failed("a", "r1"))
        await receiver.next()
        html = await eventually(lambda: _get(http, url), lambda r: "HTTP 500" in r[1])
        assert 'class="s bad">failing' in html[1]
        async with daemon.client() as client:
            await client.send(_failed("b", "r2"))
        await receiver.next()
        # A success clears the error: the endpoint answers again.
        html = await eventually(lambda: _get(http, url), lambda r: "HTTP 500" not in r[1])
        assert 'class="s ok">ok' in html[1]
        async with daemon.client() as client:
            await client.send(_failed("c", "r3"))
        await receiver.next()
        _, html = await eventually(lambda: _get(http, url), lambda r: "disabled" in r[1])
        token = _token(html)
        assert 'action="/integrations/ci/enable"' in html
        post = {"headers": {"Origin": daemon.http}, "allow_redirects": False}
        async with http.post(f"{url}/ci/enable", data={"csrf": token}, **post) as r:
            assert r.status == 303
        _, html = await _get(http, daemon.http + r.headers["Location"])
        assert "ci: enabled" in html and 'action="/integrations/ci/enable"' not in html
        async with http.post(f"{url}/test", data={"csrf": token, "integration": "ci",
                                                  "payload": '{"hello": "${event_type}"}'},
                             **post) as r:
            assert r.status == 303
        test = await receiver.next()
        assert test.body == b'{"hello":"TEST"}'
        _, html = await _get(http, daemon.http + r.headers["Location"])
        assert "test of ci: status 200" in html


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
async def test_loopback_names_are_let_in(start_daemon, receiver, short_dir, host):
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    port = daemon.http.rsplit(":", 1)[1]
    async with daemon.console() as http:
        status, _ = await _get(http, daemon.http + "/", headers={"Host": f"{host}:{port}"})
    assert status == 200


async def test_crafted_query_strings_are_answered_not_500(start_daemon, receiver, short_dir):
    """Found by an attacker's review: a non-ASCII `sig` made compare_digest raise,
    and year 1 made the time filter overflow; both were 500s."""
    daemon = await _daemon(start_daemon, short_dir, receiver.url)
    async with daemon.console() as http:
        status, page = await _get(http, daemon.http + "/?done=hi&sig=%C3%A9")
        assert status == 200 and 'class="flash"' not in page  # unsigned: not shown
        status, page = await _get(http, daemon.http + "/executions?since=0001-01-01T00:00")
        assert status == 400 and "out of range" in page
