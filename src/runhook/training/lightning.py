"""PyTorch Lightning: `Trainer(logger=RunhookLogger(project="vision"))`. Metrics go
to the run as logged, hyperparameters become its config. `finalize("failed")`
reports `failed` when the Trainer caught an exception; a successful `finalize` only
flushes, because Lightning calls it after every fit, validate and test: the run
stays open for a `trainer.test()` after `fit()`, and finishes when the process
exits (or at `logger.experiment.finish()`), as W&B's logger leaves its run."""

from __future__ import annotations

import importlib
import sys
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from runhook.training import process
from runhook.training.frameworks import need
from runhook.training.run import Run

# Lightning ships as `lightning` (2.x) and as the older `pytorch_lightning`; either
# works, `lightning` first. Imported as modules, so the types are Any: mypy here has
# no Lightning to see.
_pl: Any = need(("lightning.pytorch", "pytorch_lightning"), "lightning", "PyTorch Lightning")
_loggers: Any = importlib.import_module(_pl.__name__ + ".loggers.logger")
_rank_zero: Any = importlib.import_module(_pl.__name__ + ".utilities.rank_zero")

rank_zero_only = _rank_zero.rank_zero_only


class RunhookLogger(_loggers.Logger):  # type: ignore[misc]  # Lightning's class is Any here
    """A Lightning logger reporting to runhook. Starts its run on first use (in the
    process of global rank 0 only); `run=` reports into a run of your own instead,
    which the logger then leaves open. Other arguments go to `runhook.init`."""

    def __init__(self, run: Run | None = None, **init_options: Any) -> None:
        super().__init__()
        self._run = run
        self._owned = run is None
        self._options = init_options
        self._config: dict[str, Any] = dict(init_options.pop("config", None) or {})

    @property
    def name(self) -> str:
        return "runhook"

    @property
    def version(self) -> str:
        # Ranks other than 0 get Lightning's dummy experiment, which has no id.
        return str(getattr(self.experiment, "id", ""))

    @property
    @_loggers.rank_zero_experiment  # type: ignore[untyped-decorator]
    def experiment(self) -> Run:
        if self._run is None:
            self._run = Run(config=self._config, **self._options)
        return self._run

    @rank_zero_only  # type: ignore[untyped-decorator]
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, *args: Any,
                        **kwargs: Any) -> None:
        values = vars(params) if isinstance(params, Namespace) else dict(params)
        if self._run is None:  # before the first metric: part of the run's identity
            self._config.update(values)
        else:
            self._run.update_config(values)

    @rank_zero_only  # type: ignore[untyped-decorator]
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.experiment.log(metrics, step=step)

    @rank_zero_only  # type: ignore[untyped-decorator]
    def finalize(self, status: str) -> None:
        """"failed" -> failed, with the exception the Trainer is handling as the reason
        (it calls this from its `except` block); anything else: nothing, the run goes
        on (see the module's docstring) and its sender thread keeps sending."""
        if not self._owned or self._run is None:
            return
        if status == "failed":
            error = sys.exc_info()[1]
            self._run.finish("failed", process.describe(error) if error else "failed")
