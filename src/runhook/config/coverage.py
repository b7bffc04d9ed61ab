"""Which automations each scope actor holds: `org:NAME` spread over its listed entities,
and run kinds at `entity:`/`org:` handed to the actor of each project they cover."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from runhook.config.model import OrgOptions
from runhook.core.scopes import ENTITY_NAME, RUN_KINDS


class Scoped(Protocol):
    """What coverage reads of a compiled automation."""

    @property
    def scope(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def index(self) -> int: ...


A = TypeVar("A", bound=Scoped)


def check_org(name: str, org: OrgOptions) -> list[str]:
    """The problems of one `[orgs.NAME]` table."""
    where = f"orgs.{name}"
    if not ENTITY_NAME.match(name):
        return [f"{where}: an org name has no '/', ':' or spaces"]
    if not org.entities:
        return [(f"{where}.entities: empty; list the entities an automation at "
                 f"org:{name} covers, e.g. entities = [\"acme\", \"acme-research\"]")]
    problems = []
    for i, entity in enumerate(org.entities):
        if not ENTITY_NAME.match(entity):
            problems.append(f"{where}.entities[{i}]: {entity!r} is not an entity name "
                            "(no '/', ':' or spaces)")
        elif entity in org.entities[:i]:
            problems.append(f"{where}.entities[{i}]: {entity!r} is listed twice")
    return problems


def org_problem(scope: str, orgs: dict[str, OrgOptions]) -> str | None:
    """Why an automation at `org:NAME` cannot load (no such org), else None."""
    name = scope.partition(":")[2]
    if name in orgs:
        return None
    declared = ", ".join(sorted(orgs)) or "none"
    return (f"org {name!r} is not declared: add [orgs.{name}] with entities = [...] "
            f"(declared orgs: {declared})")


def spread(automations: Sequence[A], orgs: dict[str, OrgOptions]
                      ) -> tuple[dict[str, list[A]], dict[str, list[A]]]:
    """(actor key -> its automations, entity -> run automations covering each of its
    projects). An org automation counts as at `entity:E` for each listed entity; a run
    kind at `entity:E` goes to no entity actor: each project's runs are kept in that
    project's actor (run book, crash deadlines, flags per project)."""
    by_scope: dict[str, list[A]] = {}
    entity_runs: dict[str, list[A]] = {}
    for automation in automations:
        kind, _, place = automation.scope.partition(":")
        entities = [place] if kind == "entity" else \
            list(orgs[place].entities) if kind == "org" and place in orgs else []
        if not entities:
            by_scope.setdefault(automation.scope, []).append(automation)
        for entity in entities:
            if automation.kind in RUN_KINDS:
                entity_runs.setdefault(entity, []).append(automation)
            else:
                by_scope.setdefault(f"entity:{entity}", []).append(automation)
    for listed in by_scope.values():
        listed.sort(key=lambda a: a.index)  # an entity's own and its orgs': file order
    return by_scope, entity_runs


def project_entity(key: str) -> str | None:
    """The entity of a `project:E/P` key; None for any other scope."""
    if not key.startswith("project:"):
        return None
    return key[8:].partition("/")[0]
