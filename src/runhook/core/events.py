"""The events socket's event types: one Struct per `type`, as the wire carries them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

import msgspec

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(min_length=1)]


class Event(msgspec.Struct, kw_only=True, tag_field="type", forbid_unknown_fields=True,
            gc=False):
    """Fields every event carries. Unknown fields are refused so that a misspelt
    optional field (`alises`) is an error on its line, not silently ignored. Not
    tracked by the garbage collector (gc=False): an event never refers back to
    anything that refers to it, and thousands a second are decoded."""

    entity: Name
    project: Name | None = None
    registry: Name | None = None
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    time: str | float | None = None

    def __post_init__(self) -> None:
        if (self.project is None) == (self.registry is None):
            raise ValueError("give exactly one of `project` and `registry`")

    @property
    def location(self) -> str:
        """`project:E/P` or `registry:E/R`: the scope this event happened in."""
        if self.project is not None:
            return f"project:{self.entity}/{self.project}"
        return f"registry:{self.entity}/{self.registry}"


class CollectionEvent(Event, kw_only=True):
    """Something that happened to a collection (an artifact's or a registry's): the
    base of artifact events, and itself what a collection's tags are told by."""

    collection: Name
    author: str = ""
    artifact_type: str | None = None


class ArtifactEvent(CollectionEvent, kw_only=True):
    """Something that happened to one version of a collection."""

    version: NonNegative


class ArtifactCreated(ArtifactEvent, tag="artifact.created", kw_only=True):
    aliases: list[str] = []
    tags: list[str] = []
    metadata: dict[str, Any] = {}


class ArtifactLinked(ArtifactEvent, tag="artifact.linked", kw_only=True):
    source: str = ""
    aliases: list[str] = []


class ArtifactUnlinked(ArtifactEvent, tag="artifact.unlinked", kw_only=True):
    pass


class AliasAdded(ArtifactEvent, tag="artifact.alias_added", kw_only=True):
    alias: Name


class TagAdded(ArtifactEvent, tag="artifact.tag_added", kw_only=True):
    tag: Name


class TagRemoved(ArtifactEvent, tag="artifact.tag_removed", kw_only=True):
    tag: Name


class CollectionTagAdded(CollectionEvent, tag="collection.tag_added", kw_only=True):
    tag: Name


class CollectionTagRemoved(CollectionEvent, tag="collection.tag_removed", kw_only=True):
    tag: Name


# A run's config as W&B shows it: a flat map of scalars (nested tables are flattened
# by the client, e.g. "optimizer.lr"), so `${run_config.KEY}` is one lookup.
ConfigValue = str | int | float | bool | None


class RunEvent(Event, kw_only=True):
    """Any run event may carry the run's identity; the daemon remembers the latest,
    so later events may carry `run_id` alone ("" and None mean "not given")."""

    run_id: Name
    run_name: str = ""
    user: str = ""
    group: str | None = None  # a sweep id or group name
    tags: list[str] | None = None
    config: dict[str, ConfigValue] | None = None

    def __post_init__(self) -> None:
        # Event's rule and this one's in one call (it runs for every decoded line).
        if self.project is None:
            if self.registry is None:
                raise ValueError("give exactly one of `project` and `registry`")
            raise ValueError("run events belong to a `project`, not a registry")
        if self.registry is not None:
            raise ValueError("give exactly one of `project` and `registry`")


class RunMetrics(RunEvent, tag="run.metrics", kw_only=True):
    step: int | None = None
    # None stands for NaN as msgspec and JSON-without-NaN writers send it.
    values: dict[str, float | None]


class RunState(RunEvent, tag="run.state", kw_only=True):
    state: Literal["running", "finished", "failed", "crashed", "killed"]
    # Why the client says so (`SIGTERM`, `ValueError: loss is nan`): recorded with the
    # run's state and on the RUN_STATE executions it causes, as the daemon's own
    # crash reason is. Bounded: it lands in every such execution's row.
    reason: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class RunHeartbeat(RunEvent, tag="run.heartbeat", kw_only=True):
    """The process is alive: refreshes the run's last-seen time, nothing else."""


class Deadline(RunEvent, tag="timer", kw_only=True):
    """Not on the wire: what a firing records as its event when the daemon's own
    clock caused it (a heartbeat or stall deadline, a group settling). `run_id` is
    empty for a group's firing."""


ArtifactEvents = (ArtifactCreated | ArtifactLinked | ArtifactUnlinked | AliasAdded | TagAdded
                  | TagRemoved | CollectionTagAdded | CollectionTagRemoved)
RunEvents = RunMetrics | RunState | RunHeartbeat


class Occurrence(NamedTuple):
    """One automation event kind an artifact event produces, with its alias or tag."""

    kind: str
    alias: str | None = None
    tag: str | None = None
