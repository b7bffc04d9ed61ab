"""How a cluster node proves itself to NATS and checks NATS back: credentials, NKeys,
user and password or a token (from `[secrets]`), and TLS with a client certificate."""

from __future__ import annotations

import importlib.util
import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from runhook.config.cluster import Cluster

_CREDS_MARKS = ("-----BEGIN NATS USER JWT-----", "-----BEGIN USER NKEY SEED-----")


@dataclass(frozen=True, slots=True)
class Access:
    """Checked; at most one way to authenticate is set. The secret values are left
    out of repr (a settings object may end up in a log line or a traceback)."""

    credentials: str = ""  # a .creds file: a user JWT and its NKey seed
    nkey_seed_file: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_hostname: str = ""
    tls: bool = False  # a tls:// server, or any tls_ key: TLS, never a plain connection

    def method(self) -> str:
        """The keys that say who this node is, for an error about a refusal."""
        given = [key for key, on in (("cluster.credentials", self.credentials),
                                     ("cluster.nkey_seed_file", self.nkey_seed_file),
                                     ("cluster.user and cluster.password_secret", self.user),
                                     ("cluster.token_secret", self.token)) if on]
        return given[0] if given else "no credentials given (cluster.credentials, " \
            "cluster.nkey_seed_file, cluster.user or cluster.token_secret)"


def unauthenticated(servers: list[str], access: Access) -> str | None:
    """What to tell when this node reaches NATS on another host and says to no one who
    it is (no credentials, NKey, user, token, client certificate, nor a user in a
    server's URL): None on loopback only, or when one of those is given. TLS alone
    does not keep strangers out: it checks the server, not who connects to it."""
    named = access.credentials or access.nkey_seed_file or access.user or access.token \
        or access.tls_cert or any(urlsplit(server).username for server in servers)
    remote = [server for server in servers if not _loopback(urlsplit(server).hostname or "")]
    if named or not remote:
        return None
    return (f"NATS at {_hosts(remote)} is "
            "reached without credentials: anyone who reaches that server can do what a "
            "runhook node does: queue executions that are sent as signed webhooks with "
            "the context they choose, mark executions delivered, silence alerts and "
            "disable integrations across the cluster, or take partitions away. Give "
            "runhook an account of its own (docs/cluster.md, Security): cluster.credentials, "
            "cluster.nkey_seed_file, cluster.user and cluster.password_secret, "
            "cluster.token_secret, or cluster.tls_cert for a server that verifies it")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name other than localhost: it may resolve anywhere
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 (3.11 says not loopback)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _hosts(servers: list[str]) -> str:
    """The servers' hosts and ports (never a user or password a URL holds)."""
    out = []
    for server in servers:
        url = urlsplit(server)
        host = url.hostname or ""
        out.append(f"{f'[{host}]' if ':' in host else host}:{url.port or 4222}")
    return ", ".join(out)


def check(cluster: Cluster, declared: set[str],
          secrets: Mapping[str, str]) -> tuple[list[str], Access]:
    """The problems of `[cluster]`'s access keys, and the access they give. Files are
    read here, so that check-config says what `serve` would find; a problem names
    its key and file, never what the file or a secret holds."""
    problems: list[str] = []
    ways = [key for key, on in (("credentials", cluster.credentials),
                                ("nkey_seed_file", cluster.nkey_seed_file),
                                ("user", cluster.user or cluster.password_secret),
                                ("token_secret", cluster.token_secret)) if on]
    if len(ways) > 1:
        problems.append(f"cluster: {' and '.join(ways)} are ways to authenticate to NATS; "
                        "give one")
    if bool(cluster.user) != bool(cluster.password_secret):
        problems.append("cluster.user: give cluster.user and cluster.password_secret together"
                        if cluster.user else
                        "cluster.password_secret: given without cluster.user")
    for key in ("password_secret", "token_secret"):
        name = getattr(cluster, key)
        if name and name not in declared:
            problems.append(f"cluster.{key}: {name!r} is not declared under [secrets]")
    unread: set[str] = set()
    for key in ("credentials", "nkey_seed_file", "tls_ca", "tls_cert", "tls_key"):
        found = _readable(key, getattr(cluster, key))
        problems.extend(found)
        if found:
            unread.add(key)
    if (cluster.credentials or cluster.nkey_seed_file) and \
            importlib.util.find_spec("nkeys") is None:
        key = "credentials" if cluster.credentials else "nkey_seed_file"
        problems.append(f"cluster.{key}: signing with an NKey needs the nkeys package "
                        "(pip install 'runhook[cluster]')")
    if cluster.credentials and "credentials" not in unread:
        text = Path(cluster.credentials).read_text(errors="replace")
        if not all(mark in text for mark in _CREDS_MARKS):
            problems.append(f"cluster.credentials: {cluster.credentials} is not a NATS "
                            "credentials file (a user JWT and its NKey seed, as nsc writes it)")
    if cluster.nkey_seed_file and "nkey_seed_file" not in unread:
        seed = Path(cluster.nkey_seed_file).read_text(errors="replace").strip()
        if not seed.startswith("SU"):  # a user's seed; never quoted back
            problems.append(f"cluster.nkey_seed_file: {cluster.nkey_seed_file} holds no NKey "
                            "user seed (one line starting SU, as `nk -gen user` writes it)")
    if cluster.tls_key and not cluster.tls_cert:
        problems.append("cluster.tls_key: given without cluster.tls_cert")
    access = Access(cluster.credentials, cluster.nkey_seed_file, cluster.user,
                    secrets.get(cluster.password_secret, ""),
                    secrets.get(cluster.token_secret, ""), cluster.tls_ca, cluster.tls_cert,
                    cluster.tls_key, cluster.tls_hostname,
                    any(s.startswith("tls://") for s in cluster.nats)
                    or any((cluster.tls_ca, cluster.tls_cert, cluster.tls_hostname)))
    if not unread:
        try:
            tls_context(access)
        except ValueError as exc:
            problems.append(str(exc))
    return problems, access


def tls_context(access: Access) -> ssl.SSLContext | None:
    """The context every connection to NATS uses, or None without TLS. Servers are
    checked against `tls_ca` (the system's CAs when not given); `tls_cert` is shown
    to servers whose tls block says `verify: true`. ValueError names the key."""
    if not access.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=access.tls_ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cluster.tls_ca: {access.tls_ca} holds no usable CA certificate "
                         f"({_reason(exc)})") from None
    if access.tls_cert:
        try:
            context.load_cert_chain(access.tls_cert, access.tls_key or None)
        except (OSError, ssl.SSLError) as exc:
            key = f" and cluster.tls_key ({access.tls_key})" if access.tls_key else \
                " (no cluster.tls_key given: the file must hold the key too)"
            raise ValueError(f"cluster.tls_cert: {access.tls_cert}{key} are not a "
                             f"certificate and its private key ({_reason(exc)})") from None
    return context


def _readable(key: str, path: str) -> list[str]:
    if not path:
        return []
    try:
        Path(path).read_bytes()
    except OSError as exc:
        return [f"cluster.{key}: cannot read {path}: {exc.strerror}"]
    return []


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None)
               or type(exc).__name__)
