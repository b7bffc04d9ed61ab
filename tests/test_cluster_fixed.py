"""Settings JetStream fixes when the cluster's streams and buckets are made (`lease`,
`replicas`, `retention`): a node configured otherwise than the first is refused at
once, naming the setting and both values, on real nats-server processes."""

from __future__ import annotations

from pathlib import Path

from conftest import Receiver
from nats_cluster import NatsCluster, node_config
from test_cluster import BODY, PARTITIONS, Node, balanced, refused, start_node, status, stop_node


async def test_a_node_with_another_lease_or_replicas_is_refused_naming_the_setting(
        short_dir: Path, receiver: Receiver) -> None:
    """Node a made the streams with replicas 1 and lease 2s over three NATS servers.
    A node with lease 5s, and one with the default replicas (3 for three servers),
    each exit at once with the setting, its value here and the one the cluster was
    made with; a stream's retention likewise. Before, each retried for a minute and
    then blamed cluster.nats ("stream name already in use with a different
    configuration"). Node a goes on owning every partition."""
    nats = NatsCluster(short_dir / "nats", 3)
    await nats.start()
    body = BODY.replace("@URL@", receiver.url)

    def config(name: str, extra: str = "", **kw: str) -> Path:
        path = node_config(short_dir / name, name, nats.urls, body, partitions=PARTITIONS,
                           **kw)
        path.write_text(path.read_text().replace("[cluster]\n", f"[cluster]\n{extra}"))
        return path

    a = Node("a", config("a", "replicas = 1\n"), str(short_dir / "a" / "a.sock"),
             short_dir / "a.log")
    try:
        await start_node(a)
        await balanced([a])
        lease = await refused(config("b", "replicas = 1\n", lease="5s"), short_dir / "b.log")
        assert ("cluster.lease: 5s here, but RUNHOOK_LEASES was made with 2s; it is fixed "
                "when the cluster first starts") in lease
        replicas = await refused(config("c"), short_dir / "c.log")
        assert "cluster.replicas: 3 here, but RUNHOOK_EVENTS was made with 1" in replicas
        retention = await refused(config("d", 'replicas = 1\nretention = "2d"\n'),
                                  short_dir / "d.log")
        assert "cluster.retention: 2d here, but RUNHOOK_EVENTS was made with 7d" in retention
        for text in (lease, replicas, retention):
            assert "cluster.nats" not in text and "trying again" not in text
        assert (await status(a))["partitions"] == list(range(PARTITIONS))
    finally:
        if a.process is not None and a.process.returncode is None:
            assert await stop_node(a) == 0
        await nats.stop()
