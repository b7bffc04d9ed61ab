"""`[cluster]`: several daemons over one NATS JetStream cluster (docs/cluster.md), as the
Struct the file decodes into and the checked settings the cluster node runs on."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

from runhook.config.nats_access import Access
from runhook.config.nats_access import check as check_access
from runhook.core.durations import parse_duration
from runhook.core.schema import Table
from runhook.core.words import count

# JetStream drops a copy of a message id seen within this window (an event a client
# sends again, an execution a new owner makes again); the events stream must keep
# its messages at least as long.
DUPLICATE_WINDOW_S = 3600.0
_NODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SERVER = re.compile(r"^(nats|tls)://[^\s/]+$")


class Cluster(Table, frozen=True):
    """Off while `nats` is empty. Every node runs the same file but for `node`
    (each node's own name, unique in the cluster; the host name when left out)."""

    nats: list[str] = []  # noqa: RUF012 - msgspec copies it per instance
    node: str = ""
    partitions: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    replicas: Annotated[int, msgspec.Meta(ge=0, le=5)] = 0  # 0: min(3, servers)
    lease: str = "3s"
    checkpoint_interval: str = "10s"
    retention: str = "7d"  # how long events stay in the stream
    delivery_workers: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 128
    # Who this node is to NATS (one of the four; docs/cluster.md, Security) and TLS.
    credentials: str = ""  # a .creds file (user JWT and NKey seed), as nsc writes it
    nkey_seed_file: str = ""  # an NKey user's seed, as `nk -gen user` writes it
    user: str = ""  # with password_secret
    password_secret: str = ""  # a name under [secrets]
    token_secret: str = ""  # a name under [secrets]
    tls_ca: str = ""  # the CA the servers' certificates are checked against
    tls_cert: str = ""  # this node's client certificate (PEM), for `verify: true`
    tls_key: str = ""  # its private key (PEM)
    tls_hostname: str = ""  # the name on the servers' certificates, if not the URLs' host


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    servers: list[str]
    node: str
    partitions: int
    replicas: int
    lease: float
    checkpoint_interval: float
    retention: float
    delivery_workers: int
    access: Access = field(default_factory=Access)


def public(servers: list[str]) -> str:
    """Servers as a log line or an error may show them: no user:password@ part."""
    return ", ".join(re.sub(r"//[^@/]*@", "//", server) for server in servers)


def _port_ok(server: str) -> bool:
    """A port, when one is given, that exists."""
    host = server.split("://", 1)[1].rsplit("@", 1)[-1]
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else None
    return port is None or (port.isdigit() and 0 < int(port) < 65536)


def check(cluster: Cluster, declared: set[str] | None = None,
          secrets: Mapping[str, str] | None = None
          ) -> tuple[list[str], ClusterSettings | None]:
    """The problems of `[cluster]` and, when it is on and sound, its settings
    (`declared`: the names under [secrets]; `secrets`: their values)."""
    if not cluster.nats:
        if cluster != Cluster():  # settings for a cluster, and no servers: say so
            return [("cluster.nats: no NATS servers given; list them, or remove [cluster] "
                     "to run on one machine")], None
        return [], None
    problems = [f"cluster.nats[{i}]: expected nats://HOST:PORT or tls://HOST:PORT, "
                f"got {public([s])!r}" for i, s in enumerate(cluster.nats)
                if not _SERVER.match(s) or not _port_ok(s)]
    if cluster.replicas > len(cluster.nats):
        problems.append(f"cluster.replicas: {cluster.replicas}, but only "
                        f"{count(len(cluster.nats), 'server')} in cluster.nats")
    node = cluster.node or socket.gethostname().split(".")[0]
    if not _NODE.match(node):
        problems.append(f"cluster.node: {node!r} is not a node name "
                        "(1-64 letters, digits, '-' or '_')")
    durations: dict[str, float] = {}
    for name in ("lease", "checkpoint_interval", "retention"):
        try:
            durations[name] = parse_duration(getattr(cluster, name))
        except ValueError as exc:
            problems.append(f"cluster.{name}: {exc}")
            continue
        if durations[name] <= 0:
            problems.append(f"cluster.{name}: expected a duration above 0")
    if durations.get("retention", DUPLICATE_WINDOW_S) < DUPLICATE_WINDOW_S:
        problems.append("cluster.retention: at least 1h (JetStream's duplicate window)")
    if durations.get("checkpoint_interval", 0.0) >= DUPLICATE_WINDOW_S:
        problems.append("cluster.checkpoint_interval: below 1h (a new owner evaluates again "
                        "what came since the last checkpoint, and JetStream drops the copies "
                        "of what it makes again only within 1h)")
    if durations.get("lease", 1.0) < 1.0:
        problems.append("cluster.lease: at least 1s (NATS expires keys by the second)")
    access_problems, access = check_access(cluster, declared or set(), secrets or {})
    problems.extend(access_problems)
    if problems:
        return problems, None
    replicas = cluster.replicas or min(3, len(cluster.nats))
    return [], ClusterSettings(list(cluster.nats), node, cluster.partitions, replicas,
                               durations["lease"], durations["checkpoint_interval"],
                               durations["retention"], cluster.delivery_workers, access)
