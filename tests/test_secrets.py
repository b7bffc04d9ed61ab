"""No secret value reaches the database file, the log, history or an error text."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import SIGNING_KEY, eventually, execution, settled, webhook_config

from runhook.config.secrets import Redactor

TOKEN = "ghp_SuperSecretToken1234567890"
API_KEY = "api-key-0f9e8d7c6b5a"


async def test_secrets_never_written(start_daemon, receiver):
    payload = '{"key": "${API_KEY}", "run": "${artifact_version}"}'
    body = webhook_config(receiver.url, payload,
                          extra='access_token = "TOKEN"\nsecrets = ["API_KEY"]').replace(
        "[secrets]", '[secrets]\nTOKEN = { env = "RH_TOKEN" }\nAPI_KEY = { env = "RH_API_KEY" }')
    daemon = await start_daemon(body, env={"RH_TOKEN": TOKEN, "RH_API_KEY": API_KEY})
    # The receiver echoes the secrets back, first in a failure, then in a success,
    # so they would land in the stored response and the error text if not redacted.
    receiver.responses.append((500, f"bad token {TOKEN} key {API_KEY}", {}))
    receiver.responses.append((200, f"accepted {TOKEN}", {}))
    async with daemon.client() as client:
        await client.send({"type": "artifact.alias_added", "entity": "acme", "registry": "model",
                           "collection": "c", "version": 1, "alias": "production"})
        first = await receiver.next()
        await receiver.next()
        answer = await settled(daemon, first.headers["webhook-id"])
        history = await client.request({"type": "query.history"})

    # The secrets were really used on the wire...
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(first.body)["key"] == API_KEY
    # ...and are nowhere we write.
    assert answer["execution"]["state"] == "FINISHED"
    assert answer["attempts"][0]["response"] == "bad token [secret TOKEN] key [secret API_KEY]"
    assert await daemon.stop() == 0
    stored = b"".join(p.read_bytes() for p in daemon.directory.glob("runhook.db*"))
    texts = {"database": stored, "log": daemon.log.read_bytes(),
             "history": json.dumps(history).encode(), "execution": json.dumps(answer).encode()}
    for secret in (TOKEN, API_KEY, SIGNING_KEY, SIGNING_KEY.split("_", 1)[1]):
        for where, text in texts.items():
            assert secret.encode() not in text, f"{secret[:6]}… found in the {where}"


HOOK_TOKEN = "SecretHookToken0123456789"


@pytest.mark.parametrize("form", [
    f"http://Hooks.Example.com:80/services/T0/B0/%7e{HOOK_TOKEN}",   # as configured
    f"http://hooks.example.com/services/T0/B0/~{HOOK_TOKEN}",        # str(yarl.URL(secret))
    f"URL('http://hooks.example.com/services/T0/B0/~{HOOK_TOKEN}')",  # its repr
    f"/services/T0/B0/~{HOOK_TOKEN}",                                # the path, as sent
    f"/services/T0/B0/%7e{HOOK_TOKEN}",                              # the path, as configured
    f"http%3A%2F%2FHooks.Example.com%3A80%2Fservices%2FT0%2FB0%2F%257e{HOOK_TOKEN}",  # encoded
])
def test_redaction_covers_the_forms_a_url_secret_takes(form):
    redact = Redactor({"HOOK": f"http://Hooks.Example.com:80/services/T0/B0/%7e{HOOK_TOKEN}"})
    text = redact(f"400, message='bad', url={form} (then more)")
    assert HOOK_TOKEN not in text
    assert "[secret HOOK]" in text


def test_short_secrets_are_redacted_and_empty_ones_ignored():
    assert Redactor({"PIN": "x7"})("code x7 ok") == "code [secret PIN] ok"
    assert Redactor({"EMPTY": ""})("nothing to hide") == "nothing to hide"


def test_a_mark_is_never_redacted_again():
    assert Redactor({"A": "abcdefgh", "B": "secret"})("abcdefgh") == "[secret A]"


def test_redact_first_then_cut():
    redact = Redactor({"TOKEN": TOKEN})
    # A secret straddling the cut is replaced whole, not left with its prefix.
    assert redact.keep("x" * 1010 + TOKEN + "y" * 50, 1024) == "x" * 1010 + "[secret TOKEN]"
    # Earlier replacements shorten the text; a secret beyond the cut must not slide in.
    text = (TOKEN + " ") * 40 + TOKEN[:-3]
    kept = redact.keep(text, 1024)
    assert TOKEN[:4] not in kept.replace("[secret TOKEN]", "")
    assert len(kept.encode()) <= 1024 + len("[secret TOKEN]")


@pytest.fixture
async def quoting_endpoint() -> AsyncIterator[tuple[int, asyncio.Queue[bytes]]]:
    """A raw HTTP endpoint that quotes the request target back at the client: for
    version 1, in a malformed status line (aiohttp's parse error then carries the
    URL as it sent it); otherwise in a 404 body, as Slack does for a bad hook."""
    arrived: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        body = await reader.readexactly(length)
        target = head.split(b" ", 2)[1]
        if b"resnet:v1\"" in body:
            writer.write(b"HTTP/1.1 5OO " + target + b"\r\n\r\n")
        else:
            answer = b"no_such_hook " + target
            writer.write(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))
        await writer.drain()
        writer.close()
        arrived.put_nowait(target)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], arrived
    server.close()


async def test_a_url_secret_in_its_normalised_forms_stays_out(start_daemon, quoting_endpoint):
    port, arrived = quoting_endpoint
    hook = f"http://LOCALHOST:{port}/services/T0/B0/%7e{HOOK_TOKEN}"
    daemon = await start_daemon("""
[secrets]
HOOK = { env = "RH_HOOK" }
[integrations.alerts]
kind = "slack"
url_secret = "HOOK"
allow_http = true
allow_private = true
[[automations]]
name = "new-model"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { integration = "alerts", title = "new", text = "${artifact_version}" }
""", env={"RH_HOOK": hook})
    event = {"type": "artifact.created", "entity": "acme", "project": "vision",
             "collection": "resnet", "version": 1}
    async with daemon.client() as client:
        await client.send(event)
        sent = await asyncio.wait_for(arrived.get(), 20)
        assert HOOK_TOKEN.encode() in sent  # the endpoint really saw (and quoted) it
        [first] = (await client.request({"type": "query.history"}))["executions"]
        await eventually(lambda: execution(daemon, first["id"]), lambda a: a["attempts"])
        await client.send({**event, "version": 2})
        second = (await client.request({"type": "query.history", "limit": 1}))["executions"][0]
        failed = await settled(daemon, second["id"])
        malformed = await execution(daemon, first["id"])
    assert failed["execution"]["reason"] == "HTTP 404: no_such_hook [secret HOOK]"
    assert failed["attempts"][0]["response"] == "no_such_hook [secret HOOK]"
    error = malformed["attempts"][0]["error"]
    assert error.startswith("invalid HTTP response from the endpoint: ")
    assert "localhost" not in error and str(port) not in error  # no URL in error texts

    texts = {"history --json": cli(daemon, "history", "--json", "--limit", "10").encode(),
             "status --json": cli(daemon, "status", "--json").encode(),
             "log": daemon.log.read_bytes(), "database while running": database_bytes(daemon)}
    async with daemon.console() as http:
        for path in ("/api/executions", f"/api/executions/{first['id']}",
                     f"/api/executions/{second['id']}", "/api/status", "/"):
            async with http.get(daemon.http + path) as answer:
                assert answer.status == 200
                texts[path] = await answer.read()
    assert await daemon.stop() == 0
    texts["database"] = database_bytes(daemon)
    texts["log"] = daemon.log.read_bytes()
    for where, text in texts.items():
        assert HOOK_TOKEN.encode() not in text, f"the hook's token found in {where}"
        assert b"SecretHook" not in text, f"a part of the hook's token found in {where}"


async def test_a_secret_straddling_the_response_cut_is_not_stored(start_daemon, receiver):
    body = webhook_config(receiver.url, extra='access_token = "TOKEN"').replace(
        "[secrets]", '[secrets]\nTOKEN = { env = "RH_TOKEN" }')
    daemon = await start_daemon(body, env={"RH_TOKEN": TOKEN})
    receiver.responses.append((400, "x" * 1010 + TOKEN + "y" * 100, {}))
    async with daemon.client() as client:
        await client.send({"type": "artifact.alias_added", "entity": "acme", "registry": "model",
                           "collection": "c", "version": 1, "alias": "production"})
    answer = await settled(daemon, (await receiver.next()).headers["webhook-id"])
    assert answer["attempts"][0]["response"] == "x" * 1010 + "[secret TOKEN]"
    assert await daemon.stop() == 0
    assert TOKEN[:8].encode() not in database_bytes(daemon)


def database_bytes(daemon: Any) -> bytes:
    """The database as it is on disk: the main file and its -wal and -shm."""
    return b"".join(p.read_bytes() for p in sorted(daemon.directory.glob("runhook.db*")))


def cli(daemon: Any, *args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "runhook", *args, "--socket", daemon.socket],
                         check=True, capture_output=True, text=True, timeout=60)
    return run.stdout
