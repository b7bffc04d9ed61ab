"""No secret value reaches the database file, the log, history or an error text."""

from __future__ import annotations

import json

from conftest import SIGNING_KEY, settled, webhook_config

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
