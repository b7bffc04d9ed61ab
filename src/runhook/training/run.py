"""`runhook.init(...)` -> a Run: `log(values, step=)`, `finish()`, a context manager.
`log` only converts the values and appends to the run's outbox; sending, resending
and heartbeats happen on the outbox's thread."""

from __future__ import annotations

import getpass
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any, Self

from runhook.client import locate
from runhook.training import process
from runhook.training.outbox import HEARTBEAT, QUEUE_SIZE, Outbox

log = logging.getLogger("runhook")

# How long the end of a run (exit, SIGTERM, finish()) waits for the daemon to take
# what is queued. Under the 30 s grace that Kubernetes and Slurm give after SIGTERM;
# a job whose daemon hangs exits this much later, not never. When nothing listens at
# the address (the connection refused) the wait ends at the first attempt.
FLUSH_TIMEOUT = 10.0

Scalar = str | int | float | bool | None


def numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric values of a log() call, nested mappings flattened as `a.b`.
    Numbers, numpy scalars and one-element tensors count (float() of them);
    strings, images, histograms and other media are not metrics and are left out."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        kind = type(value)
        if kind is float or kind is int:  # the common case, without a call
            out[name] = value
        elif isinstance(value, Mapping):
            out.update(numbers(value, name + "."))
        elif isinstance(value, str | bytes):
            continue
        else:
            try:
                out[name] = float(value)
            except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of many
                continue
    return out


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """A run's config as the wire takes it (docs/integrations.md): a flat map of scalars, nested
    tables as `optimizer.lr`; anything else (a list, a path, a dtype) as its str()."""
    out: dict[str, Scalar] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_config(value, name + "."))
        elif value is None or isinstance(value, str | int | float | bool):
            out[name] = value
        else:
            out[name] = str(value)[:1000]
    return out


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


class Run:
    """One training run reporting to runhook. Not started by hand: `runhook.init`."""

    def __init__(self, *, entity: str | None = None, project: str | None = None,
                 name: str | None = None, group: str | None = None,
                 tags: list[str] | None = None, config: Mapping[str, Any] | None = None,
                 user: str | None = None, id: str | None = None,  # W&B's name for it
                 address: str | None = None, token: str | None = None,
                 heartbeat: float | None = None, queue_size: int = QUEUE_SIZE,
                 flush_timeout: float | None = None, hooks: bool = True) -> None:
        entity = entity or os.environ.get("RUNHOOK_ENTITY")
        project = project or os.environ.get("RUNHOOK_PROJECT")
        if not entity or not project:
            raise ValueError("runhook.init needs entity= and project= "
                             "(or $RUNHOOK_ENTITY and $RUNHOOK_PROJECT)")
        self.entity, self.project = entity, project
        self.id = id or os.environ.get("RUNHOOK_RUN_ID") or uuid.uuid4().hex[:16]
        self._pid = os.getpid()  # a forked child holds a copy of the run: not its own
        self.name = name or self.id
        self.state: str | None = None  # set once finished
        self.flush_timeout = flush_timeout if flush_timeout is not None \
            else _env_float("RUNHOOK_FLUSH_TIMEOUT", FLUSH_TIMEOUT)
        beat = heartbeat if heartbeat is not None else _env_float("RUNHOOK_HEARTBEAT", HEARTBEAT)
        # Found once: the run reports to one daemon, and warnings can name it.
        address, token = locate(address, token)
        self.address = address
        self.outbox = Outbox(address, token, {"entity": entity, "project": project,
                                              "run_id": self.id},
                             queue_size=queue_size, heartbeat=beat)
        identity: dict[str, Any] = {"run_name": self.name, "user": user or _user()}
        if group:
            identity["group"] = group
        if tags:
            identity["tags"] = [str(tag) for tag in tags]
        if config:
            identity["config"] = flat_config(config)
        self.outbox.put({"type": "run.state", "state": "running", **identity})
        self._hooks = hooks
        if hooks:
            process.watch(self)

    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Queue the numeric values (see `numbers`); returns at once, whatever the
        daemon is doing. Past the queue bound the oldest metrics are dropped."""
        if self.state is not None:
            return  # a finished run takes no more values (a late callback after exit)
        found = numbers(values)
        if not found:
            return
        event: dict[str, Any] = {"type": "run.metrics", "values": found}
        if step is not None:
            event["step"] = int(step)
        self.outbox.put_metrics(event)

    def update_config(self, config: Mapping[str, Any]) -> None:
        """Send (more of) the run's config: hyperparameters known only after init."""
        if self.state is None and config:
            self.outbox.put({"type": "run.heartbeat", "config": flat_config(config)})

    def finish(self, state: str = "finished", reason: str | None = None,
               timeout: float | None = None) -> bool:
        """Report the run's end and wait (up to `timeout`, default the run's flush
        timeout) for the daemon to take everything queued. True if it did. A second
        call does nothing: the first end reported is the run's end. In a forked child
        it does nothing and returns False: the run is the parent's to end."""
        if self.state is not None:
            return True
        if os.getpid() != self._pid:
            # A forked child leaving the parent's `with` block, or calling finish():
            # the run is the parent's, and the child has no sender thread.
            return False
        self.state = state
        if self._hooks:
            process.forget(self)
        final: dict[str, Any] = {"type": "run.state", "state": state}
        if reason:
            final["reason"] = reason[:1000]
        timeout = self.flush_timeout if timeout is None else timeout
        outbox = self.outbox
        done = outbox.close(final, timeout)
        if not done:
            why = f"nothing listens there ({outbox.refusal})" if outbox.refusal is not None \
                else f"within {timeout:.0f} s"
            log.warning("runhook: run %s ended %s, but %d events (the end included) were "
                        "not taken by the daemon at %s: %s; they are lost. Point runs at "
                        "the daemon with $RUNHOOK_URL (its socket path, unix:///PATH or "
                        "https://HOST:PORT) or runhook.init(address=...)",
                        self.name, state, outbox.pending(), self.address, why)
        lost = outbox.lost()
        if lost:
            log.warning("runhook: run %s: %d metric events were dropped while the daemon "
                        "was unreachable (queue bound %d)%s", self.name, lost,
                        outbox.queue_size, "; sent as runhook_dropped" if done else "")
        return done

    def at_exit(self) -> None:
        """The process exits with the run open: `finished`, or `failed` when it
        exits through sys.exit() with a non-zero code."""
        code = process.exit_code()
        if code:
            self.finish("failed", f"exit code {code}")
        else:
            self.finish()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: object) -> None:
        if error is None:
            self.finish()
        else:
            self.finish("failed", process.describe(error))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        return str(os.getuid())


def init(*, entity: str | None = None, project: str | None = None, name: str | None = None,
         group: str | None = None, tags: list[str] | None = None,
         config: Mapping[str, Any] | None = None, **options: Any) -> Run:
    """Start a run: it is `running` at once, heartbeats while the process lives, and
    reports `finished`, `failed` (an uncaught exception, SIGTERM) when it ends.
    `options`: user, id, address (else $RUNHOOK_URL), token (else $RUNHOOK_TOKEN),
    heartbeat (s), queue_size, flush_timeout (s), hooks (False: no process hooks)."""
    return Run(entity=entity, project=project, name=name, group=group, tags=tags,
               config=config, **options)
