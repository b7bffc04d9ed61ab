"""The running configuration: the whole file checked, secrets resolved, automations
(compiled in automations.py) grouped by scope."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from runhook.config import channels, diagnose
from runhook.config import model as cfg
from runhook.config.addresses import loopback_http, socket_problem
from runhook.config.automations import Automation, compile_one
from runhook.config.cluster import ClusterSettings
from runhook.config.cluster import check as check_cluster
from runhook.config.coverage import check_org, project_entity, spread
from runhook.config.destinations import url_problem
from runhook.config.heartbeats import timeout_problems
from runhook.config.remote import Remote
from runhook.config.remote import check as check_remote
from runhook.config.secrets import Redactor, resolve, signing_key
from runhook.config.tracking import MlflowTrackingSource, Tracking
from runhook.config.tracking import check as check_tracking
from runhook.core import constants
from runhook.core.durations import parse_duration, parse_rate
from runhook.core.events import Event
from runhook.core.identity import check_url_pattern
from runhook.core.schema import FieldError
from runhook.core.scopes import scope_keys, scope_kind

# Automation is compiled in automations.py; the daemon's parts take it from here, with
# the settings that hold it.
__all__ = ["MIN_SECRET_LENGTH", "Automation", "ScopeSettings", "Settings", "build", "load"]

# Every secret value is replaced by its name in logs, errors and stored responses,
# whatever its length; a short one would garble ordinary text ("abc" in every word
# holding it) and is guessable anyway. At 8 a value is both worth its name and rare
# enough in other text to be redacted wherever it appears.
MIN_SECRET_LENGTH = 8


@dataclass(frozen=True, slots=True)
class ScopeSettings:
    """What a scope actor needs besides its automations."""

    heartbeat_timeout: float = 300.0
    run_url: str | None = None  # the pattern of `${run_url}`
    max_runs: int = constants.DEFAULT_MAX_RUNS_PER_SCOPE  # tracked runs (past it: refused)
    max_digest_windows: int = constants.DEFAULT_MAX_DIGEST_WINDOWS_PER_SCOPE


@dataclass(slots=True)
class Settings:
    source: str
    config: cfg.Config
    secrets: dict[str, str]
    redactor: Redactor
    automations: list[Automation]
    by_scope: dict[str, list[Automation]]
    run_ttl: float
    checkpoint_interval: float
    by_name: dict[str, Automation]
    history_ttl: float = 30 * 86400.0
    purge_interval: float = 600.0
    drain_timeout: float = 20.0
    heartbeat_timeout: float = 300.0
    remote: Remote | None = None  # the [ingest] listener, when it is on
    cluster: ClusterSettings | None = None  # [cluster], when it is on
    max_silence_duration: float = 90 * 86400.0
    # entity -> run automations at `entity:E` / `org:` covering every project of E
    entity_runs: dict[str, list[Automation]] = dataclasses.field(default_factory=dict)
    # The MLflow tracking servers followed; each one's `interval` is its runs'
    # heartbeat interval (docs/mlflow.md).
    tracking: dict[str, Tracking] = dataclasses.field(default_factory=dict)

    def automation(self, name: str) -> Automation | None:
        return self.by_name.get(name)

    def covers(self, key: str) -> bool:
        """Whether the scope `key` has an actor's worth of automations."""
        return key in self.by_scope or project_entity(key) in self.entity_runs

    def automations_of(self, key: str) -> list[Automation]:
        """The automations the actor of `key` evaluates: its own, and for a project
        the run automations of its entity's (and orgs') scopes, in file order."""
        own = self.by_scope.get(key, [])
        wide = self.entity_runs.get(project_entity(key) or "")
        return sorted(own + wide, key=lambda a: a.index) if wide else own

    def keys_of(self, event: Event) -> list[str]:
        """The scopes whose actors evaluate `event`: of those it is seen in (where it
        happened, its entity), each with automations."""
        return [key for key in scope_keys(event) if self.covers(key)]

    def evaluates(self, automation: Automation, event: Event) -> bool:
        """Whether an actor that `event` is routed to evaluates `automation` (its
        scope, an `entity:` or an `org:` listing the event's entity, covers it)."""
        return any(automation in self.automations_of(key) for key in self.keys_of(event))

    def scope(self, key: str) -> ScopeSettings:
        options = self.config.scopes.get(key)
        server = self.config.server
        run_url = options.run_url if options else None
        if run_url is None:
            run_url = next((t.run_url for t in self.tracking.values()
                            if key.startswith(f"project:{t.entity}/")), None)
        return ScopeSettings(self.heartbeat_timeout, run_url,
                             server.max_runs_per_scope, server.max_digest_windows_per_scope)

    @property
    def integrations(self) -> dict[str, cfg.Integration]:
        return self.config.integrations


def load(path: str | Path) -> Settings:
    """Read, decode, resolve and compile a configuration file; ConfigError lists every
    problem, as `runhook check-config` does (decoding alone stops at a table's first)."""
    try:
        return build(cfg.read(path), str(path))
    except cfg.ConfigError as exc:
        try:
            data = Path(path).read_bytes()
        except OSError:
            raise exc from None
        raise cfg.ConfigError(str(path), diagnose.check(data, str(path)) or exc.problems) \
            from None


def build(config: cfg.Config, source: str = "<config>") -> Settings:
    problems: list[str] = []
    secrets: dict[str, str] = {}
    for name, secret_source in config.secrets.items():
        try:
            secrets[name] = resolve(name, secret_source)
        except ValueError as exc:
            problems.append(f"secrets.{name}: {exc}")
            continue
        if len(secrets[name]) < MIN_SECRET_LENGTH:
            problems.append(f"secrets.{name}: shorter than {MIN_SECRET_LENGTH} characters; a "
                            "secret that short is guessable, and too likely to occur in "
                            "ordinary text to be redacted from logs and stored errors")
    for name, integration in config.integrations.items():
        problems.extend(_check_integration(f"integrations.{name}", integration, config, secrets))
    automations: list[Automation] = []
    where_of: dict[str, str] = {}  # compiled automation -> where its definition is
    seen: set[str] = set()
    for index, automation in enumerate(config.automations):
        where = f"automations[{index}]"
        if automation.name in seen:
            problems.append(f"{where}.name: {automation.name!r} is used by an earlier automation")
        seen.add(automation.name)
        try:
            automations.append(compile_one(index, automation, config))
            where_of.setdefault(automation.name, where)
        except FieldError as exc:
            problems.append(f"{where}.{exc.field}: {exc.message} (automation {automation.name!r})")
    server = config.server
    durations: dict[str, float] = {}
    for field in ("run_ttl", "checkpoint_interval", "history_ttl", "purge_interval",
                  "drain_timeout", "heartbeat_timeout", "max_silence_duration",
                  "client_heartbeat"):
        try:
            durations[field] = parse_duration(getattr(server, field))
        except ValueError as exc:
            problems.append(f"server.{field}: {exc}")
    for field in ("purge_interval", "heartbeat_timeout", "max_silence_duration",
                  "client_heartbeat"):
        if durations.get(field) == 0:  # a round right after the last one, forever
            problems.append(f"server.{field}: expected a duration above 0")
    for key, options in config.scopes.items():
        problems.extend(_check_scope(key, options))
    for name, org in config.orgs.items():
        problems.extend(check_org(name, org))
    if server.socket and (problem := socket_problem(server.socket)):
        problems.append(f"server.socket: {problem}")
    if server.http:
        try:
            loopback_http(server.http)
        except ValueError as exc:
            problems.append(f"server.http: {exc}")
    remote_problems, remote = check_remote(config.ingest, config.sources, set(config.secrets),
                                           secrets)
    problems.extend(remote_problems)
    tracking: dict[str, Tracking] = {}
    for name, followed in config.sources.items():
        if isinstance(followed, MlflowTrackingSource):
            found, compiled = check_tracking(name, followed, set(config.secrets), secrets)
            problems.extend(found)
            if compiled is not None:
                tracking[name] = compiled
    problems.extend(timeout_problems(
        [("server.heartbeat_timeout", durations.get("heartbeat_timeout"))]
        + [(f"{where_of[a.name]}.event.heartbeat_timeout", a.run.state.timeout)
           for a in automations if a.run is not None and a.run.state is not None],
        [("server.client_heartbeat", durations.get("client_heartbeat", 0.0))]
        + [(f"sources.{name}.interval", t.interval) for name, t in tracking.items()]))
    cluster_problems, cluster = check_cluster(config.cluster, set(config.secrets), secrets)
    problems.extend(cluster_problems)
    if problems:
        raise cfg.ConfigError(source, problems)
    by_scope, entity_runs = spread(automations, config.orgs)
    return Settings(source, config, secrets, Redactor(secrets), automations, by_scope,
                    durations["run_ttl"], durations["checkpoint_interval"],
                    {a.name: a for a in automations}, durations["history_ttl"],
                    durations["purge_interval"], durations["drain_timeout"],
                    durations["heartbeat_timeout"], remote, cluster,
                    durations["max_silence_duration"], entity_runs, tracking)


def _check_scope(key: str, options: cfg.ScopeOptions) -> list[str]:
    where = f'scopes."{key}"'
    try:
        if scope_kind(key) != "project":
            return [f"{where}: only project scopes have runs"]
    except ValueError as exc:
        return [f"{where}: {exc}"]
    if options.run_url is not None:
        problem = check_url_pattern(options.run_url)
        if problem:
            return [f"{where}.run_url: {problem}"]
    return []


def _check_integration(where: str, integration: cfg.Integration, config: cfg.Config,
                       secrets: dict[str, str]) -> list[str]:
    problems: list[str] = []

    def secret_ref(field: str, name: str | None) -> None:
        if name is not None and name not in config.secrets:
            problems.append(f"{where}.{field}: {name!r} is not declared under [secrets]")

    if integration.rate is not None:
        try:
            parse_rate(integration.rate)
        except ValueError as exc:
            problems.append(f"{where}.rate: {exc}")
    if isinstance(integration, cfg.WebhookIntegration):
        problem = url_problem(integration.url, integration.allow_http,
                              integration.allow_private)
        if problem:
            problems.append(f"{where}.url: {problem}")
        secret_ref("access_token", integration.access_token)
        signing = integration.signing_secret
        names = [signing] if isinstance(signing, str) else (signing or [])
        for i, name in enumerate(names):
            secret_ref(f"signing_secret[{i}]" if isinstance(signing, list) else "signing_secret",
                       name)
            if name in secrets:
                try:
                    signing_key(secrets[name])
                except ValueError as exc:
                    problems.append(f"{where}.signing_secret: secret {name!r}: {exc}")
        if integration.signature == "wandb" and not names:
            problems.append(f"{where}.signature: 'wandb' needs a signing_secret")
        for i, name in enumerate(integration.secrets):
            secret_ref(f"secrets[{i}]", name)
    elif isinstance(integration, cfg.SlackIntegration):
        secret_ref("url_secret", integration.url_secret)
        secret_ref("token", integration.token)
        by_url = integration.url_secret is not None
        by_token = integration.token is not None or integration.channel is not None
        if by_url == by_token or (by_token and not (integration.token and integration.channel)):
            problems.append(f"{where}: give either url_secret (an incoming webhook) "
                            "or token and channel (chat.postMessage)")
        if by_token:
            problem = url_problem(integration.api_url, integration.allow_http,
                                  integration.allow_private)
            if problem:
                problems.append(f"{where}.api_url: {problem}")
        if integration.url_secret in secrets:
            # The value is a secret: the problem names neither it nor its host.
            problem = url_problem(secrets[integration.url_secret], integration.allow_http,
                                  integration.allow_private, secret=True)
            if problem:
                problems.append(f"{where}.url_secret: secret {integration.url_secret!r}: "
                                f"{problem}")
    else:
        problems.extend(channels.check(where, integration, secrets, secret_ref))
    return problems
