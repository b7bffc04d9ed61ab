"""An automation compiled from its TOML: its trigger's checker, its action's templates and
its digest, each checked where it is written (a FieldError names the field)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

from runhook.config import model as cfg
from runhook.config.coverage import org_problem
from runhook.core import constants
from runhook.core.durations import parse_duration
from runhook.core.schema import FieldError
from runhook.core.scopes import ALLOWED_KINDS, ARTIFACT_KINDS, scope_kind
from runhook.core.templates import KNOWN_VARIABLES, Payload, TemplateError, Text, unknown_variables
from runhook.core.variables import ACCESS_TOKEN, DIGEST_BY
from runhook.core.words import closest
from runhook.triggers import artifact, runs


@dataclass(frozen=True, slots=True)
class ActionSpec:
    kind: str  # the integration's kind ("webhook", "slack", "teams", …) or "none"
    integration: str | None
    payload: Payload | None = None
    title: Text | None = None
    text: Text | None = None
    severity: str = "INFO"


@dataclass(frozen=True, slots=True)
class DigestSpec:
    """`digest = { window, by }` compiled: the window in seconds, and per `by` entry
    the variables its value is read from (core.variables.DIGEST_BY)."""

    window: float
    by: tuple[str, ...]
    reads: tuple[tuple[str, ...], ...]


@dataclass(slots=True)
class Automation:
    index: int
    name: str
    scope: str
    kind: str
    enabled: bool
    cooldown: float
    artifact: artifact.ArtifactChecker | None
    run: runs.RunChecker | None  # None for artifact kinds
    action: ActionSpec
    # A digest of the automation's definition: a reload (or restart) keeps the run
    # state of automations whose digest did not change. (Not `digest_spec`, the
    # grouping of firings into one delivery, which `digest = {…}` configures.)
    digest: str
    digest_spec: DigestSpec | None = None



def compile_automation(automation: cfg.Automation, config: cfg.Config) -> Automation:
    """One automation compiled as the daemon loads it (FieldError says where), without
    resolving secrets: `runhook import` checks what it writes with it."""
    return compile_one(0, automation, config)


def compile_one(index: int, automation: cfg.Automation, config: cfg.Config) -> Automation:
    try:
        kind_of_scope = scope_kind(automation.scope)
    except ValueError as exc:
        raise FieldError("scope", str(exc)) from None
    if kind_of_scope == "org" and (problem := org_problem(automation.scope, config.orgs)):
        raise FieldError("scope", problem)
    event = automation.event
    kind: str = event.__struct_config__.tag  # type: ignore[assignment]
    if kind not in ALLOWED_KINDS[kind_of_scope]:
        allowed = ", ".join(sorted(ALLOWED_KINDS[kind_of_scope]))
        article = "an" if kind_of_scope[0] in "eo" else "a"
        raise FieldError("event.kind", f"{kind} cannot happen in {article} {kind_of_scope} scope "
                                       f"({automation.scope}); it allows {allowed}")
    given = automation.cooldown
    if given is None:
        # The default depends on the kind; the definition's digest reads as it did
        # when run kinds' "24h" was the field's default, so no run state is lost.
        automation = msgspec.structs.replace(automation, cooldown=constants.DEFAULT_COOLDOWN)
    try:
        cooldown = 0.0 if given is None and kind in ARTIFACT_KINDS \
            else parse_duration(automation.cooldown or "")
    except ValueError as exc:
        raise FieldError("cooldown", str(exc)) from None
    try:
        if kind in ARTIFACT_KINDS:
            artifact_checker = artifact.from_config(event)  # type: ignore[arg-type]
            run_checker = None
        else:
            artifact_checker = None
            run_checker = runs.from_config(event)  # type: ignore[arg-type]
    except FieldError as exc:
        raise FieldError(f"event.{exc.field}", exc.message) from None
    return Automation(
        index=index, name=automation.name, scope=automation.scope, kind=kind,
        enabled=automation.enabled, cooldown=cooldown, artifact=artifact_checker,
        run=run_checker, action=_compile_action(automation.action, config),
        digest=hashlib.blake2b(msgspec.json.encode(automation), digest_size=8).hexdigest(),
        digest_spec=_compile_digest(automation.digest, kind))


def _compile_digest(digest: cfg.Digest | None, kind: str) -> DigestSpec | None:
    if digest is None:
        return None
    try:
        window = parse_duration(digest.window)
    except ValueError as exc:
        raise FieldError("digest.window", str(exc)) from None
    if window <= 0:
        raise FieldError("digest.window", "expected a duration above zero")
    for i, field in enumerate(digest.by):
        if kind not in DIGEST_BY[field][1]:
            # Every firing would have the same (empty) value: a silent no-op.
            raise FieldError(f"digest.by[{i}]", f"{kind} firings have no {field}")
        if field in digest.by[:i]:
            raise FieldError(f"digest.by[{i}]", f"{field} is listed twice")
    return DigestSpec(window, tuple(digest.by), tuple(DIGEST_BY[f][0] for f in digest.by))


def readable_secrets(integration: cfg.Integration) -> frozenset[str]:
    """The secrets a template sent through `integration` may read as ${NAME}: those a
    webhook lists in `secrets`, and ACCESS_TOKEN when it has an access_token."""
    if not isinstance(integration, cfg.WebhookIntegration):
        return frozenset()
    listed = frozenset(integration.secrets)
    return listed | {ACCESS_TOKEN} if integration.access_token is not None else listed


def unknown_problem(variables: frozenset[str], allowed: frozenset[str],
                    integration: str) -> str | None:
    """Why a template's variables cannot all be rendered (a name that is neither a
    W&B variable nor a secret `integration` lists, which would render empty), with the
    name it probably meant; None when they can."""
    unknown = unknown_variables(variables, allowed)
    if not unknown:
        return None
    names = ", ".join("${" + n + "}" for n in unknown)
    meant = [m for m in (closest(n, [*KNOWN_VARIABLES, *allowed], value=False)
                         for n in unknown) if m]
    return (f"unknown variable {names}: not a W&B template variable, nor a secret that "
            f"integration {integration!r} lists in `secrets`"
            + ("; did you mean " + ", ".join("${" + m + "}" for m in meant) + "?"
               if meant else ""))


def _compile_action(action: cfg.Action, config: cfg.Config) -> ActionSpec:
    if action.integration is None:
        if action.kind != "none":
            raise FieldError("action", "name an `integration`, or set kind = \"none\" "
                                       "to only record executions")
        return ActionSpec("none", None)
    if action.kind is not None:
        raise FieldError("action.kind", "kind = \"none\" takes no integration")
    integration = config.integrations.get(action.integration)
    if integration is None:
        meant = closest(action.integration, list(config.integrations), value=False)
        raise FieldError("action.integration",
                         f"{action.integration!r} is not declared under [integrations]"
                         + (f"; did you mean {meant!r}?" if meant else ""))
    allowed = readable_secrets(integration)

    def compile_field(field: str, text: str | None, as_json: bool) -> Any:
        if text is None:
            return None
        try:
            template: Payload | Text = Payload(text) if as_json else Text(text)
        except TemplateError as exc:
            raise FieldError(f"action.{field}", str(exc)) from None
        if ACCESS_TOKEN in unknown_variables(template.variables, allowed):
            raise FieldError(f"action.{field}", "${ACCESS_TOKEN} is the access_token of a "
                             f"webhook integration; {action.integration!r} has none")
        problem = unknown_problem(template.variables, allowed, str(action.integration))
        if problem:
            raise FieldError(f"action.{field}", problem)
        return template

    if isinstance(integration, cfg.WebhookIntegration):
        for field in ("title", "text"):
            if getattr(action, field) is not None:
                raise FieldError(f"action.{field}", "webhook actions take `payload`, not "
                                                    "title/text (those are for Slack)")
        return ActionSpec("webhook", action.integration,
                          payload=compile_field("payload", action.payload, True))
    kind = str(integration.__struct_config__.tag)
    if action.payload is not None:
        raise FieldError("action.payload", f"{kind} actions take title, text and severity")
    return ActionSpec(kind, action.integration,
                      title=compile_field("title", action.title, False),
                      text=compile_field("text", action.text, False), severity=action.severity)
