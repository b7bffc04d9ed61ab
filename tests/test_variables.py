"""The template variables' table (core.variables) against the contexts executions
really record, the template compiler, docs/variables.md and `runhook vars`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runhook.core.events import (
    AliasAdded,
    ArtifactCreated,
    ArtifactLinked,
    ArtifactUnlinked,
    CollectionTagAdded,
    CollectionTagRemoved,
    Deadline,
    RunMetrics,
    RunState,
    TagAdded,
    TagRemoved,
)
from runhook.core.executions import artifact_context, group_context, run_context
from runhook.core.scopes import ALLOWED_KINDS, ARTIFACT_KINDS, GROUP_KINDS, RUN_KINDS
from runhook.core.templates import KNOWN_VARIABLES
from runhook.core.variables import (
    METRIC_KINDS,
    VARIABLES,
    for_kind,
    kinds_markdown_table,
    markdown_table,
)
from runhook.evaluate.metadata import Remembered
from runhook.triggers.artifact import occurrences

VARIABLES_PAGE = Path(__file__).resolve().parent.parent / "docs" / "variables.md"
PROJECT = {"entity": "acme", "project": "vision"}
REGISTRY = {"entity": "acme", "registry": "model"}
ARTIFACT = {"collection": "c", "version": 3, "author": "al"}


def _artifact_contexts() -> dict[tuple[str, str], set[str]]:
    """(kind, where) -> the variables its context holds, for every wire event that
    produces the kind, in a project and in a registry, with metadata where possible."""
    out: dict[tuple[str, str], set[str]] = {}
    events = []
    for where, location in (("project", PROJECT), ("registry", REGISTRY)):
        events += [
            (where, ArtifactCreated(**location, **ARTIFACT, aliases=["a"], tags=["t"],
                                    metadata={"acc": 0.9})),
            (where, ArtifactLinked(**location, **ARTIFACT, aliases=["a"])),
            (where, ArtifactUnlinked(**location, **ARTIFACT)),
            (where, AliasAdded(**location, **ARTIFACT, alias="a")),
            (where, TagAdded(**location, **ARTIFACT, tag="t")),
            (where, TagRemoved(**location, **ARTIFACT, tag="t")),
            (where, CollectionTagAdded(**location, collection="c", author="al", tag="t")),
            (where, CollectionTagRemoved(**location, collection="c", author="al", tag="t")),
        ]
    # As the evaluator does: a version's later events carry its creation's metadata.
    remembered = Remembered()
    remembered.keep(frozenset({"acme"}))
    for where, event in events:
        metadata = remembered.note("entity:acme", event, [])
        for occurrence in occurrences(event):
            if occurrence.kind not in ALLOWED_KINDS[where]:
                continue  # no automation there can see it (a project has no links)
            context = artifact_context(event, occurrence, "auto", "ex_1", 0.0)
            if metadata:
                context["artifact_metadata"] = metadata
            names = {k for k in context if k != "artifact_metadata"}
            if "artifact_metadata" in context:
                names.add("artifact_metadata.KEY")
            out.setdefault((occurrence.kind, where), set()).update(names)
    return out


def test_every_kind_sets_exactly_the_variables_the_table_says():
    contexts = _artifact_contexts()
    for kind in RUN_KINDS:
        event = RunState(**PROJECT, run_id="r", run_name="n", user="u", state="failed",
                         config={"lr": 0.1}) \
            if kind == "RUN_STATE" else RunMetrics(**PROJECT, run_id="r", values={"loss": 1.0},
                                                   group="g", config={"lr": 0.1})
        metric = "loss" if kind in METRIC_KINDS else None
        context = run_context(event, "auto", kind, "ex_1", 0.0, None, "cond", metric, [1.0])
        names = {k for k in context if k != "run_config"}
        if "run_config" in context:
            names.add("run_config.KEY")
        contexts.setdefault((kind, "project"), set()).update(names)
    summary = {"group": "g", "group_runs": 2, "group_finished": 1, "group_failed": 1,
               "group_best_run": "n", "group_best_value": 0.5}
    context = group_context(Deadline(**PROJECT, run_id=""), "auto", "ex_1", 0.0, "cond", summary)
    contexts[("GROUP_FINISHED", "project")] = set(context)
    assert {k for k, _ in contexts} == ARTIFACT_KINDS | RUN_KINDS | GROUP_KINDS
    for kind in ARTIFACT_KINDS | RUN_KINDS | GROUP_KINDS:
        # What any event of the kind can set, in any scope that produces it.
        seen = set().union(*(names for (k, _), names in contexts.items() if k == kind))
        table = {v.name for v in for_kind(kind)}
        assert seen == table, kind


def test_the_table_is_what_templates_accept():
    # ACCESS_TOKEN is a secret: only a webhook with an access_token may use it
    assert KNOWN_VARIABLES == {v.name for v in VARIABLES} - {"artifact_metadata.KEY",
                                                             "run_config.KEY", "ACCESS_TOKEN"}


def test_the_docs_table_is_generated_from_the_code():
    text = VARIABLES_PAGE.read_text()
    between = text.split("<!-- variables:start -->\n")[1].split("<!-- variables:end -->")[0]
    assert between == markdown_table()
    assert "| `${run_name}` | run kinds | `prod-resnet-lr3e-4` | the run's name |" in between


def test_the_docs_kinds_table_is_generated_from_the_code():
    text = VARIABLES_PAGE.read_text()
    between = text.split("<!-- kinds:start -->\n")[1].split("<!-- kinds:end -->")[0]
    assert between == kinds_markdown_table()
    # By hand, from core.scopes: a link happens in a registry, and GROUP_FINISHED is
    # kept per project.
    assert "| `LINK_ARTIFACT` | `registry:`, `entity:`, `org:` |" in between
    assert "| `GROUP_FINISHED` | `project:` | `${metric_filter}`, `${group}`," in between
    assert between.count("\n| `") == len(ALLOWED_KINDS["project"] | ALLOWED_KINDS["registry"])


def test_vars_command_for_one_kind():
    run = subprocess.run([sys.executable, "-m", "runhook", "vars", "ADD_ARTIFACT_TAG"],
                         check=True, capture_output=True, text=True)
    names = [line.split()[0] for line in run.stdout.splitlines()[1:] if line.startswith("${")]
    assert names == ["${event_type}", "${event_author}", "${entity_name}", "${project_name}",
                     "${registry_name}", "${automation_name}", "${execution_id}",
                     "${event_time}", "${artifact_collection_name}", "${artifact_version}",
                     "${artifact_version_string}", "${artifact_version_index}",
                     "${artifact_metadata.KEY}", "${tag}"]


@pytest.mark.parametrize("kind", ["NOPE", "run_stat"])
def test_vars_refuses_an_unknown_kind(kind):
    run = subprocess.run([sys.executable, "-m", "runhook", "vars", kind],
                         check=False, capture_output=True, text=True)
    assert run.returncode == 2 and "unknown kind" in run.stderr


@pytest.mark.parametrize(("given", "meant"), [
    ("run_stat", "'RUN_STATE'"),              # a kind cut short, in lower case
    ("GROUP_FINSHED", "'GROUP_FINISHED'"),    # a kind misspelt
    ("run_nme", "'${run_name}'"),             # a variable misspelt
    ("metric_filtr", "'${metric_filter}'"),
])
def test_vars_suggests_the_kind_or_variable_meant(given, meant):
    run = subprocess.run([sys.executable, "-m", "runhook", "vars", given],
                         check=False, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.splitlines()[0] == \
        f"runhook: unknown kind or variable {given!r}; did you mean {meant}?"


def test_vars_shows_one_variable_by_its_name():
    run = subprocess.run([sys.executable, "-m", "runhook", "vars", "${group_best_value}"],
                         check=True, capture_output=True, text=True)
    assert run.stdout.splitlines() == [
        "${group_best_value}: its last logged value of the metric", "set by: GROUP_FINISHED",
        "example: 0.183"]
    # W&B's stored name of a kind is a kind (as in the configuration)
    wandb = subprocess.run([sys.executable, "-m", "runhook", "vars", "RUN_METRIC"],
                           check=True, capture_output=True, text=True)
    assert "${metric_filter}" in wandb.stdout
