"""Every template variable in one table: its name, the event kinds that set it and an
example. `runhook vars`, docs/variables.md and the template compiler read it here."""

from __future__ import annotations

from typing import NamedTuple

from runhook.core.scopes import (
    ALLOWED_KINDS,
    ARTIFACT_KINDS,
    COLLECTION_KINDS,
    GROUP_KINDS,
    RUN_KINDS,
    VERSION_KINDS,
)

# Kinds as runhook's contexts set them (core.executions): a variable's kinds are
# those whose execution context holds it, checked against the contexts by a test.
METRIC_KINDS = frozenset({"RUN_METRIC_THRESHOLD", "RUN_METRIC_CHANGE", "RUN_METRIC_ZSCORE",
                          "RUN_METRIC_NONFINITE"})
ALL_KINDS = ARTIFACT_KINDS | RUN_KINDS | GROUP_KINDS
# Artifact kinds a project produces (an artifact event in a project carries project_name).
PROJECT_KINDS = frozenset({"CREATE_ARTIFACT", "ADD_ARTIFACT_ALIAS", "ADD_ARTIFACT_TAG",
                           "REMOVE_ARTIFACT_TAG"}) | COLLECTION_KINDS | RUN_KINDS | GROUP_KINDS
REGISTRY_KINDS = ARTIFACT_KINDS - {"CREATE_ARTIFACT"}
# W&B's `${ACCESS_TOKEN}`: not in any context (a secret is never stored), rendered
# at send time by webhooks whose integration has an `access_token`.
ACCESS_TOKEN = "ACCESS_TOKEN"
WEBHOOK_KINDS = frozenset({"WEBHOOK"})
# Not an event kind: the variables a digest execution adds to those its firings share.
DIGEST_KINDS = frozenset({"DIGEST"})

# What `digest.by` may name: the variables it reads (the first one present: a run's
# group is `run_group`, GROUP_FINISHED's is `group`) and the kinds that set them.
DIGEST_BY: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "group": (("run_group", "group"), RUN_KINDS | GROUP_KINDS),
    "run_name": (("run_name",), RUN_KINDS),
    "user": (("event_author",), ARTIFACT_KINDS | RUN_KINDS),
    "collection": (("artifact_collection_name",), ARTIFACT_KINDS),
    "alias": (("alias",), frozenset({"ADD_ARTIFACT_ALIAS"})),
    "tag": (("tag",), frozenset({"ADD_ARTIFACT_TAG", "REMOVE_ARTIFACT_TAG"}) | COLLECTION_KINDS),
}


class Variable(NamedTuple):
    name: str
    kinds: frozenset[str]
    example: str
    meaning: str


VARIABLES: tuple[Variable, ...] = (
    Variable("event_type", ALL_KINDS, "ADD_ARTIFACT_ALIAS", "the automation's event kind"),
    Variable("event_author", ALL_KINDS, "alice", "who caused it (artifact author, run user)"),
    Variable("entity_name", ALL_KINDS, "acme", "the entity"),
    Variable("project_name", ALL_KINDS, "vision",
             "the project; on registry events W&B's project of it, `wandb-registry-NAME`"),
    Variable("registry_name", REGISTRY_KINDS, "model", "the registry, for registry events"),
    Variable("automation_name", ALL_KINDS, "deploy-on-production", "the automation's name"),
    Variable("execution_id", ALL_KINDS, "ex_018c2b5e9a40000000a1b2c3d4",
             "the execution id, also the webhook-id"),
    Variable("event_time", ALL_KINDS, "2026-11-27T09:30:00.000Z", "the event's time, RFC 3339"),
    Variable("artifact_collection_name", ARTIFACT_KINDS, "resnet50", "the collection"),
    Variable("artifact_version", VERSION_KINDS, "acme/model/resnet50:v3",
             "entity/project-or-registry/collection:vN"),
    Variable("artifact_version_string", VERSION_KINDS, "acme/model/resnet50:production",
             "as artifact_version, with the alias that triggered in place of vN"),
    Variable("artifact_version_index", VERSION_KINDS, "3", "the version number (an integer)"),
    Variable("artifact_metadata.KEY", VERSION_KINDS, "0.91",
             "a metadata entry of the version's artifact.created (remembered for its later "
             "events)"),
    Variable("alias", frozenset({"ADD_ARTIFACT_ALIAS"}), "production", "the alias added"),
    Variable("tag", frozenset({"ADD_ARTIFACT_TAG", "REMOVE_ARTIFACT_TAG"}) | COLLECTION_KINDS,
             "approved", "the tag added or removed (a version's or a collection's)"),
    Variable("run_id", RUN_KINDS, "r7x2k9", "the run's id"),
    Variable("run_name", RUN_KINDS, "prod-resnet-lr3e-4", "the run's name"),
    Variable("run_status", RUN_KINDS, "running", "the run's state"),
    Variable("run_group", RUN_KINDS, "sweep-7f3a", "the run's group (a sweep id), if any"),
    Variable("run_tags", RUN_KINDS, '["baseline", "a100"]', "the run's tags (a list)"),
    Variable("run_config.KEY", RUN_KINDS, "0.0003", "an entry of the run's config"),
    Variable("run_reason", frozenset({"RUN_STATE"}), "ValueError: loss is nan",
             "why the run failed or crashed (the client's reason, or `no heartbeat for 5m`)"),
    Variable("run_url", RUN_KINDS, "https://wandb.ai/acme/vision/runs/r7x2k9",
             "the run's page, from the scope's `run_url` pattern"),
    Variable("metric_name", METRIC_KINDS, "loss", "the metric the condition reads"),
    Variable("metric_values", METRIC_KINDS, "[12.5, 13.1]",
             "the values the condition saw (a list)"),
    Variable("metric_filter", RUN_KINDS | GROUP_KINDS, "avg(loss) over last 5 > 10",
             "the condition in words"),
    Variable("group", GROUP_KINDS, "sweep-7f3a", "the group that finished"),
    Variable("group_runs", GROUP_KINDS, "20", "how many runs it had"),
    Variable("group_finished", GROUP_KINDS, "17", "how many finished"),
    Variable("group_failed", GROUP_KINDS, "3", "how many failed or crashed"),
    Variable("group_best_run", GROUP_KINDS, "sweep-7f3a-12",
             "the best finished run's name by the automation's metric and goal "
             "(empty if none finished with a finite value)"),
    Variable("group_best_value", GROUP_KINDS, "0.183", "its last logged value of the metric"),
    Variable(ACCESS_TOKEN, WEBHOOK_KINDS, "(the secret, at send time)",
             "a webhook's `access_token` secret; rendered only in the request sent, "
             "never stored or logged"),
    Variable("digest_count", DIGEST_KINDS, "100", "how many firings a digest carries"),
    Variable("digest_items", DIGEST_KINDS, '[{"run_name": "sweep-7-3", …}, …]',
             "each firing's variables (a list; the first 1,000)"),
    Variable("digest_key", DIGEST_KINDS, "sweep-7f3a",
             "the values the digest groups by (`digest.by`), joined by `/`"),
    Variable("digest_runs", DIGEST_KINDS, "23 runs",
             "how many distinct runs its firings name, in words (`1 run`; empty if none)"),
)

BY_NAME = {v.name: v for v in VARIABLES}
# The names a template may use as they are (artifact_metadata.KEY is a prefix); not
# ACCESS_TOKEN, a secret that only a webhook integration with an access_token offers.
NAMES = frozenset(v.name for v in VARIABLES if not v.name.endswith(".KEY")) - {ACCESS_TOKEN}


def for_kind(kind: str | None) -> list[Variable]:
    """The variables an event kind sets; every variable for None."""
    return [v for v in VARIABLES if kind is None or kind in v.kinds]


def kinds_text(kinds: frozenset[str]) -> str:
    """Kinds in words: 'all', 'artifact kinds', 'run kinds', or the names."""
    if kinds == ALL_KINDS:
        return "all"
    if kinds == ARTIFACT_KINDS:
        return "artifact kinds"
    if kinds == VERSION_KINDS:
        return "artifact kinds but *_COLLECTION_TAG"
    if kinds == RUN_KINDS:
        return "run kinds"
    if kinds == RUN_KINDS | GROUP_KINDS:
        return "run kinds, GROUP_FINISHED"
    if kinds == METRIC_KINDS:
        return "RUN_METRIC_* kinds"
    if kinds == PROJECT_KINDS:
        return "project kinds (not LINK/UNLINK)"
    if kinds == REGISTRY_KINDS:
        return "registry kinds (not CREATE_ARTIFACT)"
    if kinds == WEBHOOK_KINDS:
        return "webhooks (any kind)"
    if kinds == DIGEST_KINDS:
        return "digests (any kind)"
    return ", ".join(sorted(kinds))


def markdown_table() -> str:
    """docs/variables.md's table, generated: a test holds the page to it."""
    lines = ["| variable | set by | example | meaning |", "|---|---|---|---|"]
    for v in VARIABLES:
        lines.append(f"| `${{{v.name}}}` | {kinds_text(v.kinds)} | `{v.example}` | {v.meaning} |")
    return "\n".join(lines) + "\n"


def kinds_markdown_table() -> str:
    """docs/variables.md's table of event kinds: the scopes each may be used at
    (core.scopes) and the variables it sets beyond those every kind sets."""
    lines = ["| kind | scopes | variables beyond the common ones |", "|---|---|---|"]
    for group in (VERSION_KINDS, COLLECTION_KINDS, RUN_KINDS, GROUP_KINDS):
        for kind in sorted(group):
            scopes = ", ".join(f"`{s}:`" for s, kinds in ALLOWED_KINDS.items() if kind in kinds)
            names = ", ".join(f"`${{{v.name}}}`" for v in for_kind(kind) if v.kinds != ALL_KINDS)
            lines.append(f"| `{kind}` | {scopes} | {names} |")
    return "\n".join(lines) + "\n"
