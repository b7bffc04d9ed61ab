"""Commands that explain without sending: `runhook preview` (the request an automation
would send for an event), `runhook vars` (the template variables), and the check that
`runhook test` makes of its payload's variables."""

from __future__ import annotations

import argparse
import sys
from difflib import SequenceMatcher

import msgspec

from runhook.config.model import ConfigError
from runhook.config.settings import load
from runhook.config.spellings import canonical_kind
from runhook.core.events import ArtifactEvents, RunEvents
from runhook.core.executions import test_context
from runhook.core.scopes import ARTIFACT_KINDS, GROUP_KINDS, RUN_KINDS
from runhook.core.templates import Payload, TemplateError, Text
from runhook.core.variables import BY_NAME, for_kind, kinds_text
from runhook.core.words import closest
from runhook.delivery import preview
from runhook.delivery.preview import empty_variables

_event = msgspec.json.Decoder(ArtifactEvents | RunEvents)


def cmd_preview(args: argparse.Namespace) -> int:
    try:
        settings = load(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"runhook: {exc.source}: {problem}", file=sys.stderr)
        return 2
    automation = settings.automation(args.automation)
    if automation is None:
        names = ", ".join(a.name for a in settings.automations) or "none"
        print(f"runhook: no automation {args.automation!r} in {args.config} "
              f"(it has: {names})", file=sys.stderr)
        return 2
    try:
        event = _event.decode(args.event.encode())
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        print(f"runhook: --event: {exc}", file=sys.stderr)
        return 2
    shown = preview.for_event(settings, automation, event)
    for warning in shown.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(shown.text())
    return 0


def cmd_vars(args: argparse.Namespace) -> int:
    kinds = sorted(ARTIFACT_KINDS | RUN_KINDS | GROUP_KINDS)
    kind = canonical_kind(args.kind) if args.kind else None  # any case, W&B's names too
    if kind is not None and kind not in kinds:
        return _not_a_kind(args.kind, kinds)
    rows = [("VARIABLE", "SET BY", "EXAMPLE")] + [
        ("${" + v.name + "}", kinds_text(v.kinds) if kind is None else v.meaning, v.example)
        for v in for_kind(kind)]
    if kind is not None:
        rows[0] = ("VARIABLE", "MEANING", "EXAMPLE")
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
    print("\nsecrets an integration lists in `secrets` read as ${NAME}; "
          "a known variable that does not apply renders empty")
    return 0


def _not_a_kind(given: str, kinds: list[str]) -> int:
    """`runhook vars X` where X is no kind: a variable's name shows that variable; else
    the kind or variable it probably meant."""
    name = given.removeprefix("${").removesuffix("}")
    variable = BY_NAME.get(name)
    if variable is not None:
        print(f"${{{variable.name}}}: {variable.meaning}\nset by: {kinds_text(variable.kinds)}"
              f"\nexample: {variable.example}")
        return 0
    # The nearer of the closest kind and the closest variable.
    candidates = [(c, shown) for c, shown in (
        (closest(given, kinds), "{}"), (closest(name, list(BY_NAME)), "${{{}}}")) if c]
    meant = max(candidates, key=lambda c: SequenceMatcher(
        None, name.casefold(), c[0].casefold()).ratio(), default=None)
    hint = f"; did you mean {meant[1].format(meant[0])!r}?" if meant else ""
    print(f"runhook: unknown kind or variable {given!r}{hint}\nkinds: {', '.join(kinds)}",
          file=sys.stderr)
    return 2


def empty_in_test(payload: str | None, webhook: bool) -> list[str]:
    """What a `runhook test` payload's variables render to: a test has no event, so
    every event variable in it renders empty."""
    if payload is None:
        return []
    try:
        template: Payload | Text = Payload(payload) if webhook else Text(payload)
    except TemplateError as exc:
        return [f"the payload does not compile: {exc}"]
    context = test_context("-", "ex_", 0.0)
    # Names not in the test's context may be secrets the integration lists; only the
    # daemon knows, so upper-case names (as secrets are named) are left alone.
    empty = [n for n in empty_variables([template], context) if not n.isupper()]
    if not empty:
        return []
    names = ", ".join("${" + n + "}" for n in empty)
    sets = ", ".join(sorted(k for k in context if k != "integration"))
    return [f"{names} will render empty: a test has no event, it sets only {sets}"]
