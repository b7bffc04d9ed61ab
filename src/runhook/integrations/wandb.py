"""W&B: `runhook.integrations.wandb.forward()` once, and every `wandb` run of the process
also reports to runhook: its logs, name, group, tags, config and how it ended. The
script changes in no other way: `wandb.init` is wrapped to start the runhook run, and
wandb's Run class to mirror `log` and the end of the run."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from runhook.integrations.run import Run

_mirrors: dict[str, Mirror] = {}  # wandb run id -> its runhook run
_options: dict[str, Any] = {}


def _ending(exit_code: int | None) -> tuple[str, str | None]:
    """wandb's exit code as a run state: 0 (or none) finished, anything else failed."""
    return ("finished", None) if not exit_code else ("failed", f"exit code {exit_code}")


class Mirror(Run):
    """The runhook run of one wandb run; `step` follows wandb's own step counter."""

    def __init__(self, source: Any, **options: Any) -> None:
        self.source = source
        self.next_step = 0
        super().__init__(**options)

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
    return mirror


def forward(entity: str | None = None, project: str | None = None, **options: Any) -> None:
    """Mirror every wandb run from now on to runhook. `entity`/`project` default to
    $RUNHOOK_ENTITY/$RUNHOOK_PROJECT, then to the wandb run's own; other options go
    to `runhook.init` (address, token, heartbeat, ...). Calling it again only changes
    the options for runs started afterwards."""
    _options.clear()
    _options.update({key: value for key, value in
                     {"entity": entity, "project": project, **options}.items()
                     if value is not None})
    wandb: Any = importlib.import_module("wandb")
    run_class: Any = importlib.import_module("wandb.sdk.wandb_run").Run
    if getattr(run_class, "_runhook_forwarded", False):
        return
    run_class._runhook_forwarded = True
    original_init, original_log = wandb.init, run_class.log
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
        try:
            original_end(self, exit_code, *args, **kwargs)
        finally:
            mirror = _mirrors.get(str(getattr(self, "id", "")))
            if mirror is not None:
                mirror.update_config(_config(self))
                mirror.finish(*_ending(exit_code))

    wandb.init = init
    run_class.log = log
    setattr(run_class, end_name, end)
