"""The TOML configuration file as msgspec Structs; `load(path)` decodes and validates it."""

from __future__ import annotations

import datetime
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from runhook.config import spellings
from runhook.config.cluster import Cluster
from runhook.config.remote import Ingest, Source
from runhook.config.secrets import SecretSource
from runhook.core import constants
from runhook.core.schema import Table, field_error
from runhook.triggers.artifact import ArtifactTriggers
from runhook.triggers.runs import RunTriggers

Positive = Annotated[float, msgspec.Meta(gt=0)]
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]
# chmod() takes larger numbers (setuid, sticky bits) or fails on huge ones at start,
# after the socket exists: only the nine permission bits mean something for a socket.
PermissionMode = Annotated[int, msgspec.Meta(ge=0, le=0o777)]


class Server(Table, frozen=True):
    socket: str = constants.DEFAULT_SOCKET
    socket_mode: PermissionMode = 0o660
    http: str = constants.DEFAULT_HTTP  # "" turns the HTTP server off
    database: str = constants.DEFAULT_DATABASE
    run_ttl: str = constants.DEFAULT_RUN_TTL
    checkpoint_interval: str = "5s"
    # Finished, failed and skipped executions (and their attempts) older than this
    # are deleted; PENDING ones never are.
    history_ttl: str = constants.DEFAULT_HISTORY_TTL
    # Advanced (tests shorten them): how often stale runs are evicted, idempotency
    # ids past 24 h forgotten and old history deleted; and how long SIGTERM waits
    # for deliveries in flight before leaving them PENDING for the next start.
    purge_interval: str = constants.DEFAULT_PURGE_INTERVAL
    drain_timeout: str = constants.DEFAULT_DRAIN_TIMEOUT
    # A running run silent this long is `crashed` (RUN_STATE may override it).
    heartbeat_timeout: str = constants.DEFAULT_HEARTBEAT_TIMEOUT
    # Bounds (README, "What is guaranteed"): past them a new run's event is refused,
    # a firing with a new digest key is sent on its own, a silence is refused.
    max_runs_per_scope: AtLeastOne = constants.DEFAULT_MAX_RUNS_PER_SCOPE
    max_digest_windows_per_scope: AtLeastOne = constants.DEFAULT_MAX_DIGEST_WINDOWS_PER_SCOPE
    max_silences: AtLeastOne = constants.DEFAULT_MAX_SILENCES
    max_silence_pattern: AtLeastOne = constants.DEFAULT_MAX_SILENCE_PATTERN
    max_silence_duration: str = constants.DEFAULT_MAX_SILENCE_DURATION
    # How often clients heartbeat (runhook.init's `heartbeat=`): timeouts under twice it
    # are refused. A site whose clients beat faster (and tests) say so here.
    client_heartbeat: str = constants.DEFAULT_CLIENT_HEARTBEAT
    # Bytes read from clients (socket and HTTPS together) whose events are not yet
    # committed, in MiB; past it the daemon stops reading (read at start).
    ingest_budget_mib: Annotated[int, msgspec.Meta(ge=1, le=65536)] = \
        constants.INGEST_BUDGET_BYTES >> 20


class ScopeOptions(Table, frozen=True):
    """Settings of one scope (`[scopes."project:E/P"]`): facts about where its runs
    live, shared by every automation of the scope."""

    # "https://wandb.ai/{entity}/{project}/runs/{run_id}": `${run_url}`.
    run_url: str | None = None


class OrgOptions(Table, frozen=True):
    """`[orgs.NAME]`: the entities an automation at `org:NAME` covers, listed once."""

    entities: list[str]


class Delivery(Table, frozen=True):
    """Fields every integration kind shares."""

    rate: str | None = None
    max_in_flight: AtLeastOne = constants.DEFAULT_IN_FLIGHT
    timeout: Positive = constants.DEFAULT_TIMEOUT_S
    allow_http: bool = False
    allow_private: bool = False


class WebhookIntegration(Delivery, tag="webhook", tag_field="kind", kw_only=True, frozen=True):
    url: str
    access_token: str | None = None
    signing_secret: str | list[str] | None = None
    signature: Literal["standard", "wandb"] = "standard"
    secrets: list[str] = []
    headers: dict[str, str] = {}


class SlackIntegration(Delivery, tag="slack", tag_field="kind", kw_only=True, frozen=True):
    url_secret: str | None = None
    token: str | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api/chat.postMessage"
    rate: str | None = constants.SLACK_DEFAULT_RATE
    max_in_flight: AtLeastOne = 1


class TeamsIntegration(Delivery, tag="teams", tag_field="kind", kw_only=True, frozen=True):
    """A Power Automate Workflows webhook ("Post to a channel when a webhook request is
    received"). Its URL carries its own signature (`sig=`): whoever has it can post,
    so it is a secret, like a Slack incoming-webhook URL."""

    url_secret: str
    rate: str | None = constants.TEAMS_DEFAULT_RATE
    max_in_flight: AtLeastOne = 1  # one at a time keeps a channel's messages in order


class DiscordIntegration(Delivery, tag="discord", tag_field="kind", kw_only=True, frozen=True):
    """A Discord execute-webhook URL (https://discord.com/api/webhooks/ID/TOKEN): a secret."""

    url_secret: str
    username: str | None = None  # overrides the webhook's name in the channel
    rate: str | None = constants.DISCORD_DEFAULT_RATE
    max_in_flight: AtLeastOne = 1


class EmailIntegration(Delivery, tag="email", tag_field="kind", kw_only=True, frozen=True):
    """SMTP submission. `tls`: "starttls" (port 587: plain connect, then STARTTLS,
    refused if the server does not offer it) or "implicit" (port 465: TLS from the
    first byte). There is no plaintext mode: the password would cross the wire."""

    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None  # 587 or 465 by `tls`
    tls: Literal["starttls", "implicit"] = "starttls"
    username: str | None = None
    password: str | None = None  # a name under [secrets]
    # `from` is a Python keyword: the field is `sender`, spelled `from` in the file.
    sender: str = msgspec.field(name="from")
    to: Annotated[list[str], msgspec.Meta(min_length=1)]
    ca_file: str | None = None  # trust this CA (a private relay's) instead of the system's
    rate: str | None = constants.EMAIL_DEFAULT_RATE
    max_in_flight: AtLeastOne = 1


class PagerDutyIntegration(Delivery, tag="pagerduty", tag_field="kind", kw_only=True,
                           frozen=True):
    """PagerDuty Events API v2. The routing (integration) key is a secret; the URL is
    PagerDuty's (events.eu.pagerduty.com for the EU service region)."""

    routing_key: str  # a name under [secrets]
    url: str = constants.PAGERDUTY_URL
    source: str | None = None  # payload.source; by default the event's entity/project
    # One at a time: a run's trigger goes out before the resolve that follows it.
    max_in_flight: AtLeastOne = 1


Integration = (WebhookIntegration | SlackIntegration | TeamsIntegration | DiscordIntegration
               | EmailIntegration | PagerDutyIntegration)
# Kinds whose actions are messages (title, text, severity) rather than a JSON payload.
MessageIntegration = (SlackIntegration | TeamsIntegration | DiscordIntegration
                      | EmailIntegration | PagerDutyIntegration)


class Action(Table, frozen=True):
    integration: str | None = None
    kind: Literal["none"] | None = None
    payload: str | None = None
    title: str | None = None
    text: str | None = None
    severity: Literal["INFO", "WARN", "ERROR"] = "INFO"


# What a digest may group firings by: each names a variable of the firing (docs/alert-fatigue.md).
DigestField = Literal["group", "run_name", "user", "collection", "alias", "tag"]


class Digest(Table, frozen=True):
    """`digest = { window = "30s", by = ["group"] }`: firings of one key (the
    automation plus the `by` values) inside `window` after the first are sent as one."""

    window: str
    by: list[DigestField] = []


class Automation(Table, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    scope: str
    event: ArtifactTriggers | RunTriggers
    action: Action
    enabled: bool = True
    # Run kinds: per run, "24h" when not given (W&B's once per run per day); artifact
    # kinds: per collection, none when not given (docs/wandb.md).
    cooldown: str | None = None
    description: str = ""
    digest: Digest | None = None


class Config(Table, frozen=True):
    server: Server = Server()
    secrets: dict[str, SecretSource] = {}
    integrations: dict[str, Integration] = {}
    automations: list[Automation] = []
    scopes: dict[str, ScopeOptions] = {}
    orgs: dict[str, OrgOptions] = {}
    ingest: Ingest = Ingest()  # the remote listener: off unless `listen` is set
    sources: dict[str, Source] = {}
    cluster: Cluster = Cluster()  # several daemons over NATS: off unless `nats` is set


class ConfigError(Exception):
    """A configuration that cannot run; `problems` lists each one with its path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


# What msgspec's wording leaves out, by path ("expected `int` <= 511" for a mode
# people write in octal).
HINTS = {"server.socket_mode": " (a permission mode, 0o000 to 0o777, such as 0o660)"}


def decode(data: bytes | str, source: str = "<config>") -> Config:
    """Decode TOML into a Config; every way the text can fail becomes 'path: reason'
    (a reload must refuse a bad file, never take the daemon down)."""
    if isinstance(data, str):
        data = data.encode()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [_not_utf8(data, exc.start)]) from None
    raw: dict[str, Any] = {}
    try:
        # W&B's spellings become runhook's before the Structs see them (docs/wandb.md).
        raw, misspelt = spellings.canonical(tomllib.loads(text))
        # As msgspec.toml.decode converts: TOML's dates pass as they are.
        config = msgspec.convert(raw, Config, str_keys=True,
                                 builtin_types=(datetime.datetime, datetime.date, datetime.time))
        if misspelt:
            raise ConfigError(source, misspelt)
        return config
    except msgspec.ValidationError as exc:
        # msgspec stops at the first error; diagnose finds them all (and imports us).
        from runhook.config import diagnose
        found = diagnose.problems(raw)[0]
        raise ConfigError(source, found or [_reword(str(exc), text)]) from None
    except RecursionError:
        # tomllib recurses once per level of `[` or `{`; about a thousand levels exhaust
        # the stack. Caught here, it unwinds cleanly: nothing else is on that stack.
        nesting = "not valid TOML: arrays or inline tables nested too deeply"
        raise ConfigError(source, [nesting]) from None
    except ValueError as exc:
        # msgspec.DecodeError and tomllib's errors, and plain ValueError from int() on
        # a literal past Python's 4300-digit limit.
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None


def _not_utf8(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return (f"not UTF-8: byte 0x{data[offset]:02x} at offset {offset} "
            f"(line {line}, column {column}); TOML files are UTF-8 text")


def _reword(message: str, text: str) -> str:
    parsed = field_error(message)
    if parsed is None:
        return message
    path, reason = parsed
    for table, kind in (("secrets", SecretSource), ("integrations", Integration),
                        ("sources", Source)):
        if path.startswith(f"{table}[...]"):
            # msgspec cannot name a table's key; find the entry that fails on its own.
            entries = tomllib.loads(text).get(table, {})
            for key, value in entries.items():
                try:
                    msgspec.convert(value, kind)
                except msgspec.ValidationError:
                    path = f"{table}.{key}" + path[len(table) + 5:]
                    break
    return f"{path or '(top level)'}: {reason}{HINTS.get(path, '')}"


def read(path: str | Path) -> Config:
    """Read and decode a configuration file (no secrets resolved yet). A relative
    `socket` or `database` is relative to the file's directory, not to whoever
    reads it: the daemon and every client command then agree on where they are,
    from any working directory. So is a secret's `file`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return anchored(decode(data, str(path)), Path(path).parent)


def anchored(config: Config, here: Path) -> Config:
    """`config` with its relative `socket`, `database` and secret `file` paths made
    relative to `here` (the file's directory) instead of the working directory."""
    server = config.server
    socket, database = (os.path.normpath(here / p) if p and not Path(p).is_absolute() else p
                        for p in (server.socket, server.database))
    secrets = {name: msgspec.structs.replace(source, file=os.path.normpath(here / source.file))
               if source.file and not Path(source.file).is_absolute() else source
               for name, source in config.secrets.items()}
    return msgspec.structs.replace(
        config, server=msgspec.structs.replace(server, socket=socket, database=database),
        secrets=secrets)
