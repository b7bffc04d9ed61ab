"""A node that reaches NATS on another host without saying who it is warns at start
and in `runhook status` (docs/cluster.md, Security): whoever reaches that server can
do what a runhook node does."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace

import anyio
import pytest

from runhook.cli.cluster_status import cluster_lines
from runhook.cluster.bus import Bus
from runhook.cluster.health import Health
from runhook.config.cluster import Cluster, ClusterSettings, check
from runhook.config.nats_access import Access, unauthenticated

KEYS = ("cluster.credentials, cluster.nkey_seed_file, cluster.user and "
        "cluster.password_secret, cluster.token_secret, or cluster.tls_cert for a server "
        "that verifies it")


@pytest.mark.parametrize(("servers", "access", "hosts"), [
    (["nats://127.0.0.1:4222", "nats://localhost:4223", "nats://[::1]:4224",
      "tls://127.8.0.1:4225", "nats://[::ffff:127.0.0.1]:4226"], Access(), None),  # loopback only: this host's own
    (["nats://127.0.0.1:4222", "nats://10.0.0.5"], Access(), "10.0.0.5:4222"),
    (["tls://n1:4222", "nats://[fd00::5]:7422"], Access(tls=True), "n1:4222, [fd00::5]:7422"),
    (["nats://n1:4222"], Access(credentials="/etc/runhook/node.creds"), None),
    (["nats://n1:4222"], Access(nkey_seed_file="/etc/runhook/seed"), None),
    (["nats://n1:4222"], Access(user="runhook", password="pw"), None),
    (["nats://n1:4222"], Access(token="tok"), None),
    (["tls://n1:4222"], Access(tls_cert="/etc/runhook/cert.pem", tls=True), None),
    (["nats://runhook:pw@n1:4222"], Access(), None),  # a user in the URL
])
def test_warned_only_on_another_host_without_a_way_to_say_who_it_is(
        servers: list[str], access: Access, hosts: str | None) -> None:
    """TLS alone is no account (it checks the server, not the client); the hosts
    named are the remote ones, with NATS's default port when none is given."""
    said = unauthenticated(servers, access)
    if hosts is None:
        assert said is None
    else:
        assert said is not None and said.startswith(f"NATS at {hosts} is reached without "
                                                     "credentials: anyone who reaches")
        assert "signed webhooks" in said and said.endswith(KEYS)


class _Seen(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.event.set()


@pytest.fixture
def seen() -> Iterator[_Seen]:
    handler = _Seen()
    logger = logging.getLogger("runhook.cluster")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_a_node_says_it_at_start_and_in_status(seen: _Seen) -> None:
    """The real connect of a node configured for a server of TEST-NET-3 and no
    credentials: the warning is its first line, before any connection is tried (the
    test stops it there); status's NATS part carries it and the CLI prints it."""
    problems, settings = check(Cluster(nats=["nats://203.0.113.7:4222"], node="n1"))
    assert problems == [] and isinstance(settings, ClusterSettings)
    bus = Bus(settings)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(bus.connect)
                await seen.event.wait()
                tg.cancel_scope.cancel()
    finally:
        await bus.close()
    expected = unauthenticated(["nats://203.0.113.7:4222"], Access())
    assert expected is not None and expected.startswith("NATS at 203.0.113.7:4222 is")
    assert seen.lines[0] == f"cluster: {expected}"

    mirror = SimpleNamespace(failing=None, progress_at=0.0, rejected={})
    report = Health(bus, mirror).report()  # type: ignore[arg-type]
    assert report["nats"]["unauthenticated"] == expected
    lines = cluster_lines({"node": "n1", "live": ["n1"], "partitions": [], "of": 16, **report})
    assert f"  WARNING: {expected}" in lines
