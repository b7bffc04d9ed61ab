"""A cluster node's connection to NATS made safe: TLS with a client certificate
(trustme's CA) against a `nats-server` that requires one, a user limited to the
permissions docs/cluster.md lists, NKey users, and refusals that say which key to
fix and never a secret. Every server and node here is a real process."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import anyio
import pytest
import trustme
from conftest import Receiver
from nats_cluster import node_config
from nats_server import serving
from test_cluster import BODY, Node, start_node, stop_node

from runhook.client import AsyncClient
from runhook.cluster.bus import Bus, Refused
from runhook.config.cluster import Cluster, check

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple"  # the test server's own


def permissions() -> str:
    """The permissions block docs/cluster.md tells an operator to copy, as it is there."""
    text = (ROOT / "docs/cluster.md").read_text()
    found = re.search(r"^```\n(permissions \{.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert found, "docs/cluster.md lists no permissions block"
    return found.group(1)


def settings(table: dict[str, object], secrets: dict[str, str] | None = None) -> Bus:
    problems, cluster = check(Cluster(node="probe", partitions=8, **table),  # type: ignore[arg-type]
                              set(secrets or {}), secrets or {})
    assert problems == [] and cluster is not None, problems
    return Bus(cluster)


async def refusal(bus: Bus) -> str:
    """Bus.connect's refusal, at once (within its first try, not after its minute of
    retries): a refusal is not a NATS server still starting."""
    with anyio.fail_after(15), pytest.raises(Refused) as caught:
        await bus.connect()
    return str(caught.value)


async def delivers(short_dir: Path, url: str, keys: str, receiver: Receiver,
                   extra: str = "") -> str:
    """A node given `keys` in its [cluster] table (and `extra` tables) starts, turns
    an event into a webhook (every stream and bucket on the way: publish, partition
    consumer, work queue, history mirror) and stops cleanly: its log."""
    config = node_config(short_dir, "solo", [url],
                         keys + BODY.replace("@URL@", receiver.url) + extra, partitions=8)
    node = Node("solo", config, str(short_dir / "solo.sock"), short_dir / "solo.log")
    await start_node(node)
    try:
        async with AsyncClient(node.socket) as client:
            answer = await client.request({"type": "artifact.created", "entity": "acme",
                                           "project": "p0", "collection": "m", "version": 1})
        assert answer == {"ok": True}
        got = await receiver.next(timeout=30)
        assert json.loads(got.body)["data"]["automation_name"] == "model-p0"
    finally:
        assert await stop_node(node) == 0
    log = node.log.read_text()
    assert "Traceback" not in log, log
    return log


@pytest.fixture
def pki(short_dir: Path) -> dict[str, Path]:
    """A CA, a server certificate for the name nats.test only (so that the URL's
    127.0.0.1 needs tls_hostname) and a client certificate for runhook-1."""
    ca = trustme.CA()
    server, client = ca.issue_cert("nats.test"), ca.issue_cert("runhook-1")
    files = {"ca": short_dir / "ca.pem", "server.crt": short_dir / "server.crt",
             "server.key": short_dir / "server.key", "client.crt": short_dir / "client.crt",
             "client.key": short_dir / "client.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server.crt"]))
    server.private_key_pem.write_to_path(str(files["server.key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client.crt"]))
    client.private_key_pem.write_to_path(str(files["client.key"]))
    return files


async def test_tls_with_a_client_certificate_delivers_and_without_one_is_refused(
        short_dir: Path, pki: dict[str, Path], receiver: Receiver) -> None:
    """The server requires TLS and a client certificate its CA signed (`verify: true`).
    A node with the certificate, the CA and the certificate's host name connects and
    delivers; without the certificate, the CA or the name, it is refused at once,
    each time naming the key to give."""
    tls = (f'tls {{ cert_file: "{pki["server.crt"]}", key_file: "{pki["server.key"]}", '
           f'ca_file: "{pki["ca"]}", verify: true }}')
    async with serving(short_dir / "nats", tls) as port:
        url = f"tls://127.0.0.1:{port}"
        keys = (f'tls_ca = "{pki["ca"]}"\ntls_cert = "{pki["client.crt"]}"\n'
                f'tls_key = "{pki["client.key"]}"\ntls_hostname = "nats.test"\n')
        await delivers(short_dir, url, keys, receiver)

        full = {"nats": [url], "tls_ca": str(pki["ca"]), "tls_hostname": "nats.test"}
        no_cert = await refusal(settings(full))
        assert "cluster.tls_cert" in no_cert and "client certificate" in no_cert, no_cert
        untrusted = await refusal(settings({**full, "tls_ca": ""}))
        assert "not trusted" in untrusted and "cluster.tls_ca" in untrusted, untrusted
        wrong_name = await refusal(settings({**full, "tls_hostname": ""}))
        assert "cluster.tls_hostname" in wrong_name, wrong_name


async def test_a_tls_node_never_talks_in_clear_to_a_server_without_tls(
        short_dir: Path) -> None:
    """nats-py takes a tls:// URL to a server that does not offer TLS in clear, with
    the password; the node refuses before sending anything (the server sees no
    CONNECT: its log has no authorization failure, as it would for a wrong password)."""
    users = f'authorization {{ users: [{{ user: "runhook", password: "{PASSWORD}" }}] }}'
    async with serving(short_dir / "nats", users) as port:
        bus = settings({"nats": [f"tls://127.0.0.1:{port}"], "user": "runhook",
                        "password_secret": "nats"}, {"nats": PASSWORD})
        text = await refusal(bus)
    assert "does not require TLS" in text and "nothing was sent" in text, text
    assert PASSWORD not in text
    assert "Authorization" not in (short_dir / "nats" / "nats.log").read_text()


async def test_a_user_with_exactly_the_documented_permissions_runs_a_node(
        short_dir: Path, receiver: Receiver) -> None:
    """runhook's own account, its user allowed only docs/cluster.md's list: the node
    starts, delivers and stops, and NATS refused it nothing (a missing subject shows
    as a permissions violation in the node's log and the server's). The password
    comes from [secrets]; a wrong one is refused naming the keys, not the value."""
    account = (f'accounts {{ RUNHOOK {{ jetstream: enabled, users: [{{ user: "runhook", '
               f'password: "{PASSWORD}", {permissions()} }}] }} }}')
    secret = short_dir / "nats-password"
    secret.write_text(PASSWORD)
    async with serving(short_dir / "nats", account) as port:
        url = f"nats://127.0.0.1:{port}"
        keys = 'user = "runhook"\npassword_secret = "nats"\n'
        log = await delivers(short_dir, url, keys, receiver,
                             f'\n[secrets.nats]\nfile = "{secret}"\n')
        assert "permissions violation" not in log.lower(), log
        assert PASSWORD not in log
        server_log = (short_dir / "nats" / "nats.log").read_text()
        assert "Permissions Violation" not in server_log

        wrong = "wrong-horse-battery-staple"
        text = await refusal(settings({"nats": [url], "user": "runhook",
                                       "password_secret": "nats"}, {"nats": wrong}))
    assert "refused this node's credentials (cluster.user and cluster.password_secret)" \
        in text, text
    assert wrong not in text and PASSWORD not in text


async def test_an_nkey_user_connects_and_another_seed_is_refused(
        short_dir: Path, receiver: Receiver) -> None:
    """A server that knows one NKey user: the node with its seed file starts and
    delivers; a node with another user's seed is refused naming
    cluster.nkey_seed_file, and neither seed is in the message."""
    nkeys = pytest.importorskip("nkeys", reason="nkeys (the [cluster] extra) signs the nonce")
    mine, other = (nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
                   for _ in range(2))
    public = nkeys.from_seed(bytearray(mine)).public_key.decode()
    seeds = {}
    for name, seed in (("mine", mine), ("other", other)):
        seeds[name] = short_dir / f"{name}.nk"
        seeds[name].write_bytes(seed + b"\n")
    users = f'authorization {{ users: [{{ nkey: "{public}" }}] }}'
    async with serving(short_dir / "nats", users) as port:
        url = f"nats://127.0.0.1:{port}"
        seed = f'nkey_seed_file = "{seeds["mine"]}"\n'
        await delivers(short_dir, url, seed, receiver)
        text = await refusal(settings({"nats": [url], "nkey_seed_file": str(seeds["other"])}))
    assert "refused this node's credentials (cluster.nkey_seed_file)" in text, text
    assert mine.decode() not in text and other.decode() not in text


@pytest.mark.parametrize(("table", "problem"), [
    ({"tls_key": "@key@"}, "cluster.tls_key: given without cluster.tls_cert"),
    ({"tls_cert": "@cert@"}, ("cluster.tls_cert: @cert@ (no cluster.tls_key given: the file "
                              "must hold the key too) are not a certificate and its private key")),
    ({"tls_cert": "@cert@", "tls_key": "@cert@"}, "cluster.tls_cert: @cert@ and cluster.tls_key"),
    ({"tls_ca": "@missing@"}, "cluster.tls_ca: cannot read @missing@: No such file or directory"),
    ({"tls_ca": "@key@"}, "cluster.tls_ca: @key@ holds no usable CA certificate"),
    ({"credentials": "@missing@"}, "cluster.credentials: cannot read @missing@"),
    ({"credentials": "@cert@"}, "cluster.credentials: @cert@ is not a NATS credentials file"),
    ({"nkey_seed_file": "@cert@"}, "cluster.nkey_seed_file: @cert@ holds no NKey user seed"),
    ({"user": "runhook"}, "cluster.user: give cluster.user and cluster.password_secret together"),
    ({"password_secret": "nats"}, "cluster.password_secret: given without cluster.user"),
    ({"token_secret": "undeclared"}, "cluster.token_secret: 'undeclared' is not declared"),
    ({"token_secret": "nats", "nkey_seed_file": "@seed@"},
     "cluster: nkey_seed_file and token_secret are ways to authenticate to NATS; give one"),
])
def test_check_config_names_the_access_key_at_fault(table: dict[str, str], problem: str,
                                                     tmp_path: Path) -> None:
    """Each mistake is one line naming its key (and file); a secret's value never."""
    ca = trustme.CA()
    cert = ca.issue_cert("runhook-1")
    files = {"@cert@": tmp_path / "client.crt", "@key@": tmp_path / "client.key",
             "@missing@": tmp_path / "missing.pem", "@seed@": tmp_path / "seed.nk"}
    cert.cert_chain_pems[0].write_to_path(str(files["@cert@"]))
    cert.private_key_pem.write_to_path(str(files["@key@"]))
    files["@seed@"].write_text("SUAEXAMPLE\n")

    def fill(text: str) -> str:
        for mark, path in files.items():
            text = text.replace(mark, str(path))
        return text

    given = {key: fill(value) for key, value in table.items()}
    problems, cluster = check(Cluster(nats=["nats://n1:4222"], **given),  # type: ignore[arg-type]
                              {"nats"}, {"nats": PASSWORD})
    assert cluster is None
    assert any(p.startswith(fill(problem)) for p in problems), problems
    assert not any(PASSWORD in p for p in problems)


def test_a_password_from_secrets_reaches_the_connection_and_no_repr() -> None:
    problems, cluster = check(Cluster(nats=["nats://n1:4222"], user="runhook",
                                      password_secret="nats"), {"nats"}, {"nats": PASSWORD})
    assert problems == [] and cluster is not None
    assert (cluster.access.user, cluster.access.password) == ("runhook", PASSWORD)
    assert PASSWORD not in repr(cluster)
    assert cluster.access.tls is False  # nats:// and no tls_ key: plain, as before


async def test_a_credentials_file_connects_and_one_of_another_account_is_refused(
        short_dir: Path, receiver: Receiver) -> None:
    """Decentralised auth (an operator, accounts as JWTs): a node with a .creds file of
    a user of runhook's account starts and delivers; one whose user was signed by an
    account the server does not know is refused naming cluster.credentials."""
    nkeys = pytest.importorskip("nkeys", reason="nkeys (the [cluster] extra) signs the nonce")
    from nats_jwt import creds, keypair, operator_mode

    server, account = operator_mode()
    _, stranger = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    mine = creds(short_dir / "runhook.creds", account, "runhook-1")
    other = creds(short_dir / "other.creds", stranger, "runhook-1")
    async with serving(short_dir / "nats", server) as port:
        url = f"nats://127.0.0.1:{port}"
        await delivers(short_dir, url, f'credentials = "{mine}"\n', receiver)
        text = await refusal(settings({"nats": [url], "credentials": str(other)}))
    assert "refused this node's credentials (cluster.credentials)" in text, text
    assert other.read_text().split("\n")[1] not in text  # the JWT, nor the seed


async def test_a_token_from_secrets_connects_and_a_wrong_one_is_refused(
        short_dir: Path) -> None:
    token, wrong = "token-0123456789abcdef", "token-fedcba9876543210"
    async with serving(short_dir / "nats", f'authorization {{ token: "{token}" }}') as port:
        url = f"nats://127.0.0.1:{port}"
        bus = settings({"nats": [url], "token_secret": "nats"}, {"nats": token})
        with anyio.fail_after(15):
            await bus.connect()  # and makes the streams and buckets
        await bus.close()
        text = await refusal(settings({"nats": [url], "token_secret": "nats"},
                                      {"nats": wrong}))
    assert "refused this node's credentials (cluster.token_secret)" in text, text
    assert token not in text and wrong not in text
