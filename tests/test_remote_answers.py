"""What the remote listener answers and logs: a single `application/json` event gets
its status from its outcome (NDJSON's per-line answers are the acknowledgement), and
a flood of malformed requests is a line per 10 s in the log, not a traceback each."""

from __future__ import annotations

import asyncio
import json

from test_remote import failed, history, remote, session, tls  # noqa: F401 - fixtures


async def test_a_single_json_event_gets_its_status_from_its_outcome(remote):  # noqa: F811
    """200 once committed (the history has it when the answer arrives); 400 for a
    body that is not an event; 403 for an event outside the token's scopes. All of
    them were 200 before, sent before the body was even read."""
    url = remote.url + "/v1/events"
    json_type = {"Content-Type": "application/json"}
    async with session(remote) as http:
        async with http.post(url, data=json.dumps(failed("single")), headers=json_type) as r:
            assert (r.status, await r.json()) == (200, {"ok": True})
        assert [e["run_id"] for e in await history(remote, "failed")] == ["single"]
        async with http.post(url, data=b'{"type": "run.state"', headers=json_type) as r:
            answer = await r.json()
            assert r.status == 400 and not answer["ok"] and "line 1" in answer["error"]
        outside = failed("elsewhere") | {"entity": "globex"}
        async with http.post(url, data=json.dumps(outside), headers=json_type) as r:
            answer = await r.json()
            assert r.status == 403 and "may not write project:globex/vision" in answer["error"]
        async with http.post(url, data=b"  ", headers=json_type) as r:
            assert r.status == 400
    assert [e["run_id"] for e in await history(remote, "failed")] == ["single"]


async def test_malformed_requests_are_logged_once_per_interval_without_traceback(remote):  # noqa: F811
    """Forty requests aiohttp cannot parse (a Content-Length that is not a number),
    each answered 400: one warning line in the log, no traceback; it was an ERROR
    with a traceback each (~360 KB/s of log from one client)."""
    port = int(remote.url.rsplit(":", 1)[1])
    for _ in range(40):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=remote.tls)
        writer.write(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: lots\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:80]
        writer.close()
    # The daemon still answers, and its log says it once.
    async with session(remote) as http, http.post(remote.url + "/v1/events",
                                                  data=json.dumps(failed("after")) + "\n") as r:
        assert r.status == 200
    log = remote.log_text()
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "Error handling request" in line]
    assert len(lines) == 1, lines
    assert " WARNING " in lines[0]
