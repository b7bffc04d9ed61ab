"""W&B: `runhook.training.wandb.forward()` once, and every `wandb` run of the process
also reports to runhook: its logs, name, group, tags, config and how it ended. The
script changes in no other way: `wandb.init` is wrapped to start the runhook run, and
wandb's Run class to mirror `log` and the end of the run."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from typing import Any

from runhook.training import wandb_events
from runhook.training.frameworks import need
from runhook.training.run import Run, _user

_mirrors: dict[str, Mirror] = {}  # wandb run id -> its runhook run
_options: dict[str, Any] = {}
# system_metrics=True: how often wandb-core's buffered samples are read (W&B samples
# every 15 s), and how many it keeps per metric between two reads.
SYSTEM_INTERVAL = 15.0
SYSTEM_BUFFER = 1000
_system: dict[str, float] = {}  # {"interval": s} when system metrics are forwarded


def _ending(exit_code: int | None) -> tuple[str, str | None]:
    """wandb's exit code as a run state: 0 (or none) finished, anything else failed."""
    return ("finished", None) if not exit_code else ("failed", f"exit code {exit_code}")


class Mirror(Run):
    """The runhook run of one wandb run; `step` follows wandb's own step counter."""

    def __init__(self, source: Any, **options: Any) -> None:
        self.source = source
        self.next_step = 0
        self.versions: dict[str, int] = {}  # collection -> versions this run logged
        self.system_seen: dict[str, float] = {}  # metric -> newest sample time forwarded
        self.system_lock = threading.Lock()  # the poller thread and the run's end both read
        super().__init__(**options)

    def poll_system(self) -> None:
        """The samples wandb-core buffered since the last read, as `system/NAME`
        metrics, oldest first (W&B shows them under system/ too)."""
        with self.system_lock:
            try:
                samples = self.source._system_metrics
            except Exception:  # noqa: BLE001 - a finished run raises; no samples then
                return
            by_time: dict[float, dict[str, float]] = {}
            for metric, records in samples.items():
                seen = self.system_seen.get(metric, float("-inf"))
                for when, value in records:
                    at = when.timestamp()
                    if at > seen:
                        by_time.setdefault(at, {})[f"system/{metric}"] = value
                        self.system_seen[metric] = max(at, self.system_seen.get(metric, at))
            for at in sorted(by_time):
                self.log(by_time[at])

    def watch_system(self, interval: float) -> None:
        pause = threading.Event()  # never set: a wait that a daemon thread may die in

        def poll() -> None:
            while self.state is None:
                self.poll_system()
                pause.wait(interval)
        threading.Thread(target=poll, name="runhook-wandb-system", daemon=True).start()

    def version(self, artifact: Any) -> int:
        """The version W&B gave the artifact; offline (or before W&B commits it) W&B
        does not say, and the run counts the versions it logged of the collection."""
        try:
            known = wandb_events.version_index(str(artifact.version))
        except Exception:  # noqa: BLE001 - wandb raises ArtifactNotLoggedError until committed
            known = None
        name = wandb_events.collection_name(str(getattr(artifact, "name", "")))
        if known is None:
            known = self.versions.get(name, -1) + 1
        self.versions[name] = max(known, self.versions.get(name, -1))
        return known

    def logged(self, artifact: Any, aliases: Any, tags: Any) -> None:
        if self.state is None:
            self.outbox.put_located(wandb_events.created(
                self.entity, self.project, str(artifact.name), self.version(artifact),
                getattr(artifact, "type", None), aliases, tags,
                getattr(artifact, "metadata", None), _user()))

    def linked(self, artifact: Any, target_path: str, aliases: Any) -> None:
        if self.state is None:
            name = wandb_events.collection_name(str(artifact.name))
            version = self.versions.get(name)
            self.outbox.put_located(wandb_events.linked(
                self.entity, self.project, target_path,
                self.version(artifact) if version is None else version,
                getattr(artifact, "type", None), aliases, f"{self.project}/{name}", _user()))

    def at_exit(self) -> None:
        # The process exits with the wandb run open; wandb ends it at exit, outside
        # _finish. Its config may have changed since init.
        self.update_config(_config(self.source))
        super().at_exit()


def _config(source: Any) -> dict[str, Any]:
    try:
        return dict(source.config)
    except Exception:  # noqa: BLE001 - a finished or odd run: its config is not worth a failure
        return {}


def _mirror(source: Any) -> Mirror | None:
    """The runhook run of a wandb run, started on first sight."""
    run_id = str(getattr(source, "id", "") or "")
    if not run_id:
        return None
    mirror = _mirrors.get(run_id)
    if mirror is None:
        options = dict(_options)
        options.setdefault("entity", os.environ.get("RUNHOOK_ENTITY") or source.entity
                           or "wandb")
        options.setdefault("project", os.environ.get("RUNHOOK_PROJECT") or source.project)
        options.setdefault("id", run_id)
        mirror = _mirrors[run_id] = Mirror(
            source, name=source.name or run_id, group=source.group or None,
            tags=list(source.tags or ()), config=_config(source), **options)
        if _system:
            mirror.watch_system(_system["interval"])
    return mirror


def forward(entity: str | None = None, project: str | None = None,
            system_metrics: bool = False, system_interval: float = SYSTEM_INTERVAL,
            **options: Any) -> None:
    """Mirror every wandb run from now on to runhook: its metrics, state and the
    artifacts it logs or links. `entity`/`project` default to
    $RUNHOOK_ENTITY/$RUNHOOK_PROJECT, then to the wandb run's own; other options go
    to `runhook.init` (address, token, heartbeat, ...). `system_metrics=True` also
    sends wandb's system samples as `system/*` metrics, read every
    `system_interval` seconds and at the run's end. Calling it again only changes
    the options for runs started afterwards."""
    _system.clear()
    if system_metrics:
        _system["interval"] = system_interval
        # wandb-core keeps samples for run._system_metrics only when asked to.
        os.environ.setdefault("WANDB_X_STATS_BUFFER_SIZE", str(SYSTEM_BUFFER))
    _options.clear()
    _options.update({key: value for key, value in
                     {"entity": entity, "project": project, **options}.items()
                     if value is not None})
    wandb: Any = need(("wandb",), "wandb", "the W&B SDK")
    run_class: Any = importlib.import_module("wandb.sdk.wandb_run").Run
    if getattr(run_class, "_runhook_forwarded", False):
        return
    run_class._runhook_forwarded = True
    original_init, original_log = wandb.init, run_class.log
    original_log_artifact, original_link = run_class.log_artifact, run_class.link_artifact
    # `_finish` is where finish(), wandb.finish() and `with wandb.init()` all end;
    # a wandb without it still has the public finish().
    end_name = "_finish" if hasattr(run_class, "_finish") else "finish"
    original_end = getattr(run_class, end_name)

    def init(*args: Any, **kwargs: Any) -> Any:
        source = original_init(*args, **kwargs)
        _mirror(source)
        return source

    def log(self: Any, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None, *args: Any, **kwargs: Any) -> None:
        original_log(self, data, step, commit, *args, **kwargs)
        mirror = _mirror(self)
        if mirror is None:
            return
        # wandb's step rules, counted here: asking wandb (`run.step`) is a round trip
        # to its service on every log.
        at = mirror.next_step if step is None else step
        mirror.log(data, step=at)
        mirror.next_step = at + 1 if commit is not False else at

    def end(self: Any, exit_code: int | None = None, *args: Any, **kwargs: Any) -> None:
        mirror = _mirrors.get(str(getattr(self, "id", "")))
        if mirror is not None and _system:
            mirror.poll_system()  # the samples since the last read: gone once it ends
        try:
            original_end(self, exit_code, *args, **kwargs)
        finally:
            mirror = _mirrors.get(str(getattr(self, "id", "")))
            if mirror is not None:
                mirror.update_config(_config(self))
                mirror.finish(*_ending(exit_code))

    def log_artifact(self: Any, artifact_or_path: Any, name: str | None = None,
                     type: str | None = None, aliases: list[str] | None = None,
                     tags: list[str] | None = None, *args: Any, **kwargs: Any) -> Any:
        artifact = original_log_artifact(self, artifact_or_path, name, type, aliases, tags,
                                         *args, **kwargs)
        mirror = _mirror(self)
        if mirror is not None:
            mirror.logged(artifact, aliases, tags)
        return artifact

    def link_artifact(self: Any, artifact: Any, target_path: str,
                      aliases: list[str] | None = None, *args: Any, **kwargs: Any) -> Any:
        # Reported once W&B linked it: offline, W&B raises NotImplementedError and
        # nothing was linked, so nothing is said.
        result = original_link(self, artifact, target_path, aliases, *args, **kwargs)
        mirror = _mirror(self)
        if mirror is not None:
            mirror.linked(artifact, target_path, aliases)
        return result

    wandb.init = init
    run_class.log = log
    run_class.log_artifact = log_artifact
    run_class.link_artifact = link_artifact
    setattr(run_class, end_name, end)
