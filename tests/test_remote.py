"""The remote listener against a real daemon over real HTTPS on loopback (a CA and a
certificate made by trustme): streamed answers, tokens and scopes, idempotency shared
with the socket, MLflow and Hugging Face webhooks, and the clients over HTTPS."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from conftest import free_port

from runhook.client import AsyncClient, Client, RunhookError
from runhook.config.model import ConfigError, decode
from runhook.config.settings import build

TRAINER = "trainer-token-0123456789"
OPS = "ops-token-abcdefghijkl"
MLFLOW_SECRET = "mlflow-secret-123"
HF_SECRET = "hf-secret-4567890"

CONFIG = """
[secrets]
TRAINER = {{ file = "@DIR@/trainer.token" }}
OPS = {{ file = "@DIR@/ops.token" }}
MLF = {{ file = "@DIR@/mlflow.secret" }}
HF = {{ file = "@DIR@/hf.secret" }}

[ingest]
listen = "127.0.0.1:{port}"
tls_cert = "@DIR@/tls.crt"
tls_key = "@DIR@/tls.key"
idle_timeout = "3s"

[ingest.tokens.trainers]
secret = "TRAINER"
scopes = ["project:acme/*"]

[ingest.tokens.ops]
secret = "OPS"
scopes = ["*"]
commands = true

[sources.mlf]
kind = "mlflow"
secret = "MLF"
entity = "acme"
registry = "model"

[sources.hub]
kind = "huggingface"
secret = "HF"
entity = "acme"

[[automations]]
name = "failed"
scope = "project:acme/vision"
event = {{ kind = "RUN_STATE", states = ["failed"] }}
action = {{ kind = "none" }}
cooldown = "0"

[[automations]]
name = "alias"
scope = "registry:acme/model"
event = {{ kind = "ADD_ARTIFACT_ALIAS", alias = "^production$" }}
action = {{ kind = "none" }}
cooldown = "0"

[[automations]]
name = "linked"
scope = "registry:acme/model"
event = {{ kind = "LINK_ARTIFACT" }}
action = {{ kind = "none" }}
cooldown = "0"

[[automations]]
name = "hub"
scope = "project:acme/hub"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ kind = "none" }}
cooldown = "0"

[[automations]]
name = "hubtag"
scope = "project:acme/hub"
event = {{ kind = "ADD_ARTIFACT_TAG" }}
action = {{ kind = "none" }}
cooldown = "0"
"""


def failed(run: str, event_id: str | None = None, project: str = "vision") -> dict[str, Any]:
    event = {"type": "run.state", "entity": "acme", "project": project, "run_id": run,
             "run_name": run, "state": "failed"}
    return event | ({"id": event_id} if event_id else {})


@pytest.fixture
def tls(short_dir: Path) -> ssl.SSLContext:
    """Certificate and key files for 127.0.0.1, and a client context trusting their CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(short_dir / "tls.key"))
    cert.cert_chain_pems[0].write_to_path(str(short_dir / "tls.crt"))
    ca.cert_pem.write_to_path(str(short_dir / "ca.pem"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    for name, value in (("trainer.token", TRAINER), ("ops.token", OPS),
                        ("mlflow.secret", MLFLOW_SECRET), ("hf.secret", HF_SECRET)):
        (short_dir / name).write_text(value)
    return context


@pytest.fixture
async def remote(start_daemon, tls):
    port = free_port()
    daemon = await start_daemon(CONFIG.format(port=port))
    daemon.url = f"https://127.0.0.1:{port}"
    daemon.tls = tls
    yield daemon


async def history(daemon, automation: str) -> list[dict[str, Any]]:
    async with daemon.client() as client:
        answer = await client.request({"type": "query.history", "automation": automation})
    assert answer["ok"], answer
    return answer["executions"]


def session(daemon, token: str | None = TRAINER) -> aiohttp.ClientSession:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(headers=headers,
                                 connector=aiohttp.TCPConnector(ssl=daemon.tls))


async def test_answers_stream_back_while_the_client_is_still_sending(remote):
    """Line 2 is only sent once line 1's answer came back over the same request."""
    first_answered = asyncio.Event()

    async def body():
        yield (json.dumps(failed("r1")) + "\n").encode()
        await asyncio.wait_for(first_answered.wait(), 10)
        yield (json.dumps(failed("r2")) + "\n").encode()
        yield b'{"type": "run.state"}\n'

    async with session(remote) as http, http.post(
            remote.url + "/v1/events", data=body(),
            headers={"Content-Type": "application/x-ndjson"}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-ndjson"
        answers = [json.loads(await response.content.readline())]
        first_answered.set()
        while line := await response.content.readline():
            answers.append(json.loads(line))
    assert answers[0] == {"ok": True}
    assert answers[1] == {"ok": True}
    assert not answers[2]["ok"] and answers[2]["error"].startswith("line 3: ")
    assert {e["run_id"] for e in await history(remote, "failed")} == {"r1", "r2"}


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789",
                                           f"Basic {TRAINER}", f"Bearer {TRAINER}x", "Bearer"])
async def test_no_or_wrong_token_is_401_and_nothing_is_evaluated(remote, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    async with session(remote, None) as http, http.post(
            remote.url + "/v1/events", data=json.dumps(failed("r9")) + "\n",
            headers=headers) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.text()
    assert TRAINER not in body
    assert await history(remote, "failed") == []
    assert TRAINER not in remote.log_text() and OPS not in remote.log_text()


async def test_a_line_outside_the_tokens_scopes_is_refused_alone(remote):
    lines = [failed("r1"), failed("r2", project="x") | {"entity": "acme"},
             {**failed("r3"), "entity": "other"}, {"type": "query.status"}, failed("r4"),
             {**failed("r5"), "entity": "acme-evil"}]  # shares a prefix with acme
    async with session(remote) as http, http.post(
            remote.url + "/v1/events", data="".join(json.dumps(x) + "\n" for x in lines)) as r:
        answers = [json.loads(line) for line in (await r.read()).splitlines()]
    assert answers[0] == {"ok": True}
    assert answers[1] == {"ok": True}  # project:acme/x is inside project:acme/*
    assert answers[2] == {"ok": False, "error": "line 3: token 'trainers' may not write "
                                                "project:other/vision"}
    assert answers[3]["error"] == ("line 4: token 'trainers' may not send query.status "
                                   "(it has no commands = true)")
    assert answers[4] == {"ok": True}
    assert answers[5] == {"ok": False, "error": "line 6: token 'trainers' may not write "
                                                "project:acme-evil/vision"}
    assert {e["run_id"] for e in await history(remote, "failed")} == {"r1", "r4"}


async def test_an_id_accepted_on_the_socket_is_a_duplicate_over_https(remote):
    async with remote.client() as client:
        assert await client.send(failed("r1", "once")) == {"ok": True}
    async with AsyncClient(remote.url, token=TRAINER, ssl_context=remote.tls) as client:
        assert await client.send(failed("r1", "once")) == {"ok": True, "duplicate": True}
        assert await client.send(failed("r2", "twice")) == {"ok": True}
    async with remote.client() as client:
        assert await client.send(failed("r2", "twice")) == {"ok": True, "duplicate": True}
    assert len(await history(remote, "failed")) == 2


async def test_the_python_client_pipelines_over_https(remote):
    events = [failed(f"r{i}", f"id{i}") for i in range(1500)]

    def run() -> list[dict[str, Any]]:
        with Client(remote.url, token=OPS, ssl_context=remote.tls) as client:
            answers = list(client.send_many(events))
            answers.append(client.request({"type": "query.status"}))
            answers.append(client.send(failed("last")))
            return answers

    answers = await asyncio.to_thread(run)
    assert answers[:1500] == [{"ok": True}] * 1500
    assert answers[1500]["ok"] and "status" in answers[1500]
    assert answers[1501] == {"ok": True}

    def wrong() -> None:
        with Client(remote.url, token="not-the-token-at-all", ssl_context=remote.tls) as c:
            c.send(failed("r"))

    with pytest.raises(RunhookError, match="HTTP 401"):
        await asyncio.to_thread(wrong)


async def test_the_cli_takes_runhook_url_and_token(remote, short_dir):
    env = {**os.environ, "RUNHOOK_URL": remote.url, "RUNHOOK_TOKEN": OPS,
           "SSL_CERT_FILE": str(short_dir / "ca.pem")}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "runhook", "send", json.dumps(failed("cli"))],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ok": True}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "runhook", "history", "--json"],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [e["run_id"] for e in json.loads(done.stdout)] == ["cli"]
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "runhook", "status"],
        env={**env, "RUNHOOK_TOKEN": "wrong-token-0123456789"}, capture_output=True,
        text=True, timeout=60)
    assert done.returncode == 1 and "HTTP 401" in done.stderr


async def test_a_body_line_over_the_limit_is_refused_and_the_rest_answered(remote):
    body = (json.dumps(failed("r1")) + "\n" + "x" * (1 << 20 + 1) + "\n"
            + json.dumps(failed("r2")) + "\n")
    async with session(remote) as http, http.post(remote.url + "/v1/events", data=body) as r:
        answers = [json.loads(line) for line in (await r.read()).splitlines()]
    assert answers[0] == {"ok": True}
    assert "line 2: line is over" in answers[1]["error"]
    assert answers[2] == {"ok": True}


async def test_a_stalled_body_is_cut_after_the_idle_timeout(remote):
    """A slowloris body: what was sent is answered, then the request ends."""
    async def body():
        yield (json.dumps(failed("r1")) + "\n").encode()
        await asyncio.sleep(30)

    started = time.monotonic()
    async with session(remote) as http, http.post(remote.url + "/v1/events", data=body()) as r:
        assert json.loads(await r.content.readline()) == {"ok": True}
        try:  # the answer ends (or the connection is cut) at the idle timeout, 3 s
            assert await asyncio.wait_for(r.read(), 20) == b""
        except aiohttp.ClientError:
            pass
    assert time.monotonic() - started < 15


# MLflow: a vector made once with MLflow 3.17's own `_generate_hmac_signature`
# (mlflow/webhooks/delivery.py), for these exact bytes.
MLFLOW_BODY = (b'{"entity": "model_version_alias", "action": "created", "timestamp": '
               b'"2023-11-14T22:13:20+00:00", "data": {"name": "clf", "alias": "production", '
               b'"version": "3"}}')
MLFLOW_DELIVERY = "d3b07384-0000-4000-8000-000000000001"
MLFLOW_VECTOR = ("1700000000", "v1,g0RO1Z5W/5Gi5tWH+lQSJscpk/N0NFC3zJyeDwYbtHA=")


def test_the_mlflow_signature_matches_mlflows_own():
    from runhook.sources import mlflow
    timestamp, expected = MLFLOW_VECTOR
    signed = mlflow.signature(MLFLOW_SECRET, MLFLOW_DELIVERY, timestamp, MLFLOW_BODY)
    assert "v1," + base64.b64encode(signed).decode() == expected
    headers = {mlflow.SIGNATURE: expected, mlflow.DELIVERY_ID: MLFLOW_DELIVERY,
               mlflow.TIMESTAMP: timestamp}
    assert mlflow.verify(MLFLOW_SECRET, headers, MLFLOW_BODY, 1700000000 + 299) == MLFLOW_DELIVERY
    for now in (1700000000 + 301, 1700000000 - 301):
        with pytest.raises(mlflow.Refused, match="minutes"):
            mlflow.verify(MLFLOW_SECRET, headers, MLFLOW_BODY, now)
    with pytest.raises(mlflow.Refused, match="does not match"):
        mlflow.verify(MLFLOW_SECRET, headers, MLFLOW_BODY + b" ", 1700000000)


def mlflow_request(body: bytes, delivery: str, timestamp: int | None = None,
                   secret: str = MLFLOW_SECRET) -> dict[str, str]:
    """Headers signed as MLflow signs them, written out independently of runhook."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"{delivery}.{stamp}.".encode() + body,
                   hashlib.sha256).digest()
    return {"X-MLflow-Signature": "v1," + base64.b64encode(mac).decode(),
            "X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp,
            "Content-Type": "application/json"}


async def test_mlflow_deliveries_commit_once_and_forgeries_are_401(remote):
    body = MLFLOW_BODY
    async with session(remote, None) as http:
        url = remote.url + "/v1/hooks/mlf"
        async with http.post(url, data=body, headers=mlflow_request(body, "dl-1")) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"ok": True, "events": 1}
        # The same delivery again (MLflow's retry, or a replay): acknowledged, once.
        async with http.post(url, data=body, headers=mlflow_request(body, "dl-1")) as r:
            assert (r.status, await r.json()) == (200, {"ok": True, "events": 1,
                                                        "duplicate": True})
        stale = mlflow_request(body, "dl-2", int(time.time()) - 600)
        tampered = mlflow_request(body, "dl-3") | {"X-MLflow-Delivery-Id": "dl-4"}
        wrong_key = mlflow_request(body, "dl-5", secret="another-secret-xyz")
        for headers in (stale, tampered, wrong_key, {"Content-Type": "application/json"}):
            async with http.post(url, data=body, headers=headers) as r:
                assert r.status == 401, headers
                assert MLFLOW_SECRET not in await r.text()
        other = (b'{"entity": "registered_model", "action": "created", "timestamp": "x", '
                 b'"data": {"name": "clf", "tags": {}, "description": null}}')
        async with http.post(url, data=other, headers=mlflow_request(other, "dl-6")) as r:
            assert (r.status, await r.json()) == (200, {"ok": True, "ignored": True})
        async with http.post(remote.url + "/v1/hooks/nope", data=body,
                             headers=mlflow_request(body, "dl-7")) as r:
            assert r.status == 404
    executions = await history(remote, "alias")
    assert len(executions) == 1
    context = executions[0]["context"]
    assert (context["artifact_collection_name"], context["artifact_version_index"]) == ("clf", 3) \
        or context["artifact_version_string"] == "clf:v3"
    assert executions[0]["event_id"] == "mlflow:mlf:dl-1"
    assert MLFLOW_SECRET not in remote.log_text()


def hub_payload(sha: str, refs: list[dict[str, Any]]) -> bytes:
    """Shaped as the Hub's webhook documentation shows a repo.content update."""
    return json.dumps({
        "event": {"action": "update", "scope": "repo.content"},
        "repo": {"type": "model", "name": "some-user/some-repo", "id": "6366c000a2abcdf2fd69a080",
                 "private": False,
                 "url": {"web": "https://huggingface.co/some-user/some-repo",
                         "api": "https://huggingface.co/api/models/some-user/some-repo"},
                 "headSha": sha, "tags": ["license:other", "has_space"],
                 "owner": {"id": "61d2000c3c2083e1c08af22d"}},
        "updatedRefs": refs,
        "webhook": {"id": "6390e855e30d9209411de93b", "version": 3}}).encode()


async def test_hugging_face_commits_become_numbered_versions_and_tags(remote):
    url = remote.url + "/v1/hooks/hub"
    first = hub_payload("c379e821", [{"ref": "refs/heads/main", "oldSha": "ce9a4674",
                                      "newSha": "c379e821"}])
    second = hub_payload("575db8b7", [
        {"ref": "refs/heads/main", "oldSha": "c379e821", "newSha": "575db8b7"},
        {"ref": "refs/tags/test", "oldSha": None, "newSha": "575db8b7"}])
    async with session(remote, None) as http:
        for secret in (None, "wrong-secret-123", HF_SECRET[:-1]):
            headers = {"X-Webhook-Secret": secret} if secret else {}
            async with http.post(url, data=first, headers=headers) as r:
                assert r.status == 401
        good = {"X-Webhook-Secret": HF_SECRET, "Content-Type": "application/json"}
        for body in (first, second, first):  # the last: a replay from the activity tab
            async with http.post(url, data=body, headers=good) as r:
                assert r.status == 200, await r.text()
        discussion = json.dumps({"event": {"action": "create", "scope": "discussion"},
                                 "repo": {"type": "model", "name": "x/y"}}).encode()
        async with http.post(url, data=discussion, headers=good) as r:
            assert await r.json() == {"ok": True, "ignored": True}
    created = sorted(await history(remote, "hub"), key=lambda e: e["context"]["artifact_version_index"])
    assert [e["context"]["artifact_version_index"] for e in created] == [0, 1]
    assert all(e["context"]["artifact_collection_name"] == "some-user/some-repo" for e in created)
    tagged = await history(remote, "hubtag")
    assert [e["context"]["artifact_version_index"] for e in tagged] == [1]


async def test_a_branch_moved_back_to_an_earlier_sha_is_a_new_event(remote):
    """main: ce9a4674 -> c379e821 -> 575db8b7, then force-pushed back to c379e821 within
    the hour. The Hub sends no delivery id; keyed by the new sha alone, the third move
    was dropped as a duplicate of the first. Keyed by the move, it is a new event
    (version 0 again: the same commit), and a replay of it is still one."""
    url = remote.url + "/v1/hooks/hub"
    moves = [("ce9a4674", "c379e821"), ("c379e821", "575db8b7"), ("575db8b7", "c379e821")]
    bodies = [hub_payload(new, [{"ref": "refs/heads/main", "oldSha": old, "newSha": new}])
              for old, new in moves]
    good = {"X-Webhook-Secret": HF_SECRET, "Content-Type": "application/json"}
    async with session(remote, None) as http:
        for body in [*bodies, bodies[2]]:  # the last: a replay of the move back
            async with http.post(url, data=body, headers=good) as r:
                assert r.status == 200, await r.text()
    created = await history(remote, "hub")
    assert sorted(e["context"]["artifact_version_index"] for e in created) == [0, 0, 1]


def test_a_listener_beyond_loopback_without_tls_is_refused_at_load(tmp_path):
    (tmp_path / "t").write_text(TRAINER)
    base = f"""
[secrets]
T = {{ file = "{tmp_path}/t" }}
[ingest.tokens.a]
secret = "T"
scopes = ["project:acme/*"]
"""
    with pytest.raises(ConfigError, match="not loopback, and without TLS"):
        build(decode(base + '[ingest]\nlisten = "0.0.0.0:8443"\n'))
    build(decode(base + '[ingest]\nlisten = "0.0.0.0:8443"\ninsecure = true\n'))
    build(decode(base + '[ingest]\nlisten = "127.0.0.1:8443"\n'))
    with pytest.raises(ConfigError, match="UNDECLARED"):
        build(decode(base.replace('"T"\n', '"UNDECLARED"\n') + '[ingest]\nlisten = "127.0.0.1:1"\n'))


async def test_failed_tls_handshakes_give_their_connection_slots_back(start_daemon, tls):
    """Three connections allowed. Three clients that speak plain text to the TLS port
    and three that say nothing until the handshake times out: none of them ever
    reaches aiohttp, and each must give its slot back, or the listener refuses
    everyone from then on (found by an attacker's review: it did)."""
    port = free_port()
    body = CONFIG.format(port=port).replace(
        'idle_timeout = "3s"', 'idle_timeout = "3s"\nmax_connections = 3\nheader_timeout = "1s"')
    daemon = await start_daemon(body)
    daemon.tls = tls
    for _ in range(3):  # not TLS: the handshake fails at once
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) is not None  # closed by the server
        writer.close()
    silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    for reader, writer in silent:  # the handshake times out after 1 s: the server closes
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    async with session(daemon) as http, http.post(f"https://127.0.0.1:{port}/v1/events",
                         data=json.dumps(failed("slots")) + "\n") as answer:
        assert answer.status == 200
        assert json.loads(await answer.text()) == {"ok": True}


async def test_idle_strangers_in_every_slot_do_not_keep_out_a_token(start_daemon, tls):
    """Three connections allowed, all three taken by clients that connected and sent
    nothing (an idle flood; each would hold its slot for the 10 s header timeout).
    A run's heartbeat with a valid token still gets through, over and over: at the
    cap the oldest connection that has not authenticated is closed for it (it got
    503 while the flood lasted, and the run was declared crashed)."""
    port = free_port()
    body = CONFIG.format(port=port).replace(
        'idle_timeout = "3s"', 'idle_timeout = "3s"\nmax_connections = 3\nheader_timeout = "10s"')
    daemon = await start_daemon(body)
    daemon.tls = tls
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    try:
        for n in range(3):
            async with session(daemon) as http, http.post(
                    f"https://127.0.0.1:{port}/v1/events",
                    data=json.dumps(failed(f"slots{n}")) + "\n") as answer:
                assert answer.status == 200
                assert json.loads(await answer.text()) == {"ok": True}
            idle.append(await asyncio.open_connection("127.0.0.1", port))  # the flood goes on
        # The oldest idle connections were the ones closed, one per request let in.
        for reader, _ in idle[:3]:
            assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        for _, writer in idle:
            writer.close()


async def test_a_token_cannot_send_the_ids_registry_webhooks_give_their_events(remote):
    """Hugging Face ids are predictable; a token that could send one first would make
    the real delivery a duplicate. Such ids are refused on the line, alone."""
    lines = [failed("a", "hf:hub:anything"), failed("b", "mlflow:mlf:123"), failed("c", "mine")]
    async with session(remote) as http, http.post(f"{remote.url}/v1/events",
                         data="".join(json.dumps(line) + "\n" for line in lines)) as answer:
        answers = [json.loads(x) for x in (await answer.text()).splitlines()]
    assert [a["ok"] for a in answers] == [False, False, True]
    assert "registry webhooks' own" in answers[0]["error"]
    assert [e["context"]["run_name"] for e in await history(remote, "failed")] == ["c"]


def test_token_patterns_of_entity_scopes_and_plain_http_tokens_are_refused(tmp_path):
    """An event's place is a project or a registry, so `entity:acme` as a token scope
    would match nothing: refused at load, saying what to write. A client never sends
    a token over plain http:// beyond loopback."""
    (tmp_path / "t").write_text(TRAINER)
    with pytest.raises(ConfigError, match="registry:acme/\\*"):
        build(decode(f"""
[secrets]
T = {{ file = "{tmp_path}/t" }}
[ingest]
listen = "127.0.0.1:8443"
[ingest.tokens.a]
secret = "T"
scopes = ["entity:acme"]
"""))
    from runhook.client import locate
    assert locate("http://127.0.0.1:8443", "t") == ("http://127.0.0.1:8443", "t")
    with pytest.raises(ValueError, match="only over https"):
        locate("http://ingest.example.com:8443", "t")


async def test_runhook_init_reports_over_https_with_its_token(remote, short_dir):
    env = {**os.environ, "RUNHOOK_URL": remote.url, "RUNHOOK_TOKEN": TRAINER,
           "SSL_CERT_FILE": str(short_dir / "ca.pem")}
    code = """
import runhook
run = runhook.init(entity="acme", project="vision", id="https-1", name="prod-https")
run.log({"loss": 0.5}, step=0)
raise RuntimeError("out of memory")
"""
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], env=env,
                                   capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "RuntimeError: out of memory" in done.stderr
    (row,) = await history(remote, "failed")
    assert (row["run_id"], row["reason"]) == ("https-1", "RuntimeError: out of memory")
    assert row["event_id"].startswith("https-1-") and row["event_id"].endswith("-3")
