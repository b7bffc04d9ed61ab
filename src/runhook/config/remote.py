"""`[ingest]` and `[sources.NAME]`: the remote listener, its tokens and the registry
webhooks it takes, as Structs and as the checked settings the listener runs on."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import msgspec

from runhook.config.secrets import SecretSource
from runhook.config.tracking import MlflowTrackingSource
from runhook.core.durations import parse_duration
from runhook.core.schema import Table

Name = Annotated[str, msgspec.Meta(min_length=1)]
_PORT = re.compile(r"[0-9]{1,5}")
# What may stand in a scope pattern: a scope's own characters and the glob's. An
# event's place is always a project or a registry, never `entity:` (which an
# automation's scope may be): such a pattern would match nothing, so it is refused.
_PATTERN = re.compile(r"^(project|registry|\*)[^\s]*$")


class IngestToken(Table, frozen=True):
    """A bearer token and what it may write. `scopes` are glob patterns matched
    against an event's location (`project:acme/*`); `commands` lets it send the
    CLI's queries and commands too (history, status, reload, redeliver), which
    read or change every scope, so it is off unless asked for."""

    secret: Name  # a name under [secrets]
    scopes: list[str] = []
    commands: bool = False


class Ingest(Table, frozen=True):
    """The remote listener. Off while `listen` is empty. A listener beyond
    loopback carries bearer tokens, so it takes TLS unless `insecure` says a
    proxy in front of it terminates TLS."""

    listen: str = ""
    tls_cert: str | SecretSource | None = None  # a path, or { credential = "tls.crt" }
    tls_key: str | SecretSource | None = None
    insecure: bool = False
    tokens: dict[str, IngestToken] = {}
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 256
    header_timeout: str = "10s"
    idle_timeout: str = "60s"


class MlflowSource(Table, tag="mlflow", tag_field="kind", frozen=True):
    """MLflow 3 model-registry webhooks, signed with `secret`; their events land in
    `registry:ENTITY/REGISTRY`."""

    secret: Name
    entity: Name
    registry: Name


class HuggingFaceSource(Table, tag="huggingface", tag_field="kind", frozen=True):
    """Hugging Face Hub webhooks carrying `secret` in X-Webhook-Secret; repo
    updates land in `project:ENTITY/PROJECT` (PROJECT defaults to the source's name)."""

    secret: Name
    entity: Name
    project: Name | None = None


Source = MlflowSource | HuggingFaceSource | MlflowTrackingSource
# The sources that arrive as webhooks on the listener (a tracking source is followed).
Hook = MlflowSource | HuggingFaceSource


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    secret: bytes
    scopes: tuple[str, ...]
    commands: bool


@dataclass(frozen=True, slots=True)
class Remote:
    """The listener's settings, checked: where, how, who."""

    host: str
    port: int
    cert: Path | None
    key: Path | None
    tokens: tuple[Token, ...]
    sources: dict[str, Hook] = field(default_factory=dict)
    max_connections: int = 256
    header_timeout: float = 10.0
    idle_timeout: float = 60.0


def check(ingest: Ingest, sources: dict[str, Source], declared: set[str],
          secrets: dict[str, str]) -> tuple[list[str], Remote | None]:
    """The problems of `[ingest]` and its webhook `[sources]`, and the listener's
    settings when there are none and it is on. Problems name fields and secrets,
    never a value. (Tracking sources are config/tracking.py's.)"""
    problems: list[str] = []
    webhooks = hooks(sources)

    def secret(where: str, name: str) -> None:
        if name not in declared:
            problems.append(f"{where}: {name!r} is not declared under [secrets]")

    for name, token in ingest.tokens.items():
        secret(f"ingest.tokens.{name}.secret", token.secret)
        for i, pattern in enumerate(token.scopes):
            if not _PATTERN.match(pattern):
                problems.append(f"ingest.tokens.{name}.scopes[{i}]: expected a project or "
                                f"registry, or a glob of them such as 'project:acme/*' "
                                f"(an entity's are 'project:acme/*' and 'registry:acme/*'), "
                                f"got {pattern!r}")
        if not token.scopes and not token.commands:
            problems.append(f"ingest.tokens.{name}: may do nothing; give `scopes` it may "
                            "write (or commands = true)")
    by_secret: dict[str, str] = {}
    for name, token in ingest.tokens.items():
        other = by_secret.setdefault(token.secret, name)
        if other != name:
            # One value for two tokens: which token's scopes apply would be a guess.
            problems.append(f"ingest.tokens.{name}.secret: token {other!r} has the same secret")
    for name, source in webhooks.items():
        secret(f"sources.{name}.secret", source.secret)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            problems.append(f"sources.{name}: a source's name is part of its URL "
                            "(/v1/hooks/NAME): letters, digits, '_', '.', '-' only")
    timeouts: dict[str, float] = {}
    for field_name in ("header_timeout", "idle_timeout"):
        try:
            timeouts[field_name] = parse_duration(getattr(ingest, field_name))
            if timeouts[field_name] <= 0:
                raise ValueError("expected a duration above 0")
        except ValueError as exc:
            problems.append(f"ingest.{field_name}: {exc}")
    if not ingest.listen:
        if webhooks:
            problems.append("sources: webhooks arrive on the [ingest] listener; set "
                            "ingest.listen (and TLS) to receive them")
        return problems, None
    try:
        host, port = _address(ingest.listen)
    except ValueError as exc:
        return [*problems, f"ingest.listen: {exc}"], None
    if (ingest.tls_cert is None) != (ingest.tls_key is None):
        problems.append("ingest: give both tls_cert and tls_key, or neither")
    if ingest.tls_cert is None and not ingest.insecure and not _loopback(host):
        problems.append(f"ingest.listen: {host!r} is not loopback, and without TLS every bearer "
                        "token would cross the network in clear; give tls_cert and tls_key "
                        "(or insecure = true when a proxy in front terminates TLS)")
    cert = _pem("ingest.tls_cert", ingest.tls_cert, problems)
    key = _pem("ingest.tls_key", ingest.tls_key, problems)
    if problems:
        return problems, None
    tokens = tuple(Token(name, secrets[t.secret].encode(), tuple(t.scopes), t.commands)
                   for name, t in ingest.tokens.items())
    return [], Remote(host, port, cert, key, tokens, webhooks, ingest.max_connections,
                      timeouts["header_timeout"], timeouts["idle_timeout"])


def hooks(sources: dict[str, Source]) -> dict[str, Hook]:
    """The webhook sources among `sources`."""
    return {name: s for name, s in sources.items() if not isinstance(s, MlflowTrackingSource)}


def _address(listen: str) -> tuple[str, int]:
    host, colon, port_text = listen.rpartition(":")
    if not colon or not _PORT.fullmatch(port_text) or not 0 < int(port_text) <= 65535:
        raise ValueError(f'expected HOST:PORT such as "0.0.0.0:8443", got {listen!r}')
    host = host.strip("[]")
    if not host:
        raise ValueError('give the address to listen on: "0.0.0.0:8443" for every '
                         'interface, "127.0.0.1:8443" for this machine only')
    return host, int(port_text)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name resolves to whatever DNS says: not known to be loopback


def _pem(where: str, source: str | SecretSource | None, problems: list[str]) -> Path | None:
    """The file a certificate or key is read from: a path, or a systemd credential
    (LoadCredential=tls.crt:… puts it in $CREDENTIALS_DIRECTORY)."""
    if source is None:
        return None
    if isinstance(source, str):
        path = Path(source)
    elif source.credential is not None and source.env is None and source.file is None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            problems.append(f"{where}: credential {source.credential!r} needs "
                            "$CREDENTIALS_DIRECTORY (systemd LoadCredential=)")
            return None
        path = Path(directory) / source.credential
    elif source.file is not None and source.env is None and source.credential is None:
        path = Path(source.file)
    else:
        problems.append(f"{where}: a path, {{ file = … }} or {{ credential = … }}")
        return None
    try:
        path.read_bytes()
    except OSError as exc:
        problems.append(f"{where}: cannot read {path}: {exc.strerror}")
        return None
    return path
