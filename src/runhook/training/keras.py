"""Keras 3: `model.fit(..., callbacks=[RunhookCallback(project="vision")])`. Each
epoch's logs go to the run (step = epoch); the end of `fit` reports `finished`; an
exception out of `fit` is reported `failed` by runhook's exception hook."""

from __future__ import annotations

from typing import Any

from runhook.training.frameworks import need
from runhook.training.run import Run

# Imported as a module: mypy here has no Keras to see, so its types are Any.
_keras: Any = need(("keras",), "keras", "Keras 3")


class RunhookCallback(_keras.callbacks.Callback):  # type: ignore[misc]  # Keras's class is Any
    """`run=` reports into a run of your own, left open after `fit`; other arguments go
    to `runhook.init`."""

    def __init__(self, run: Run | None = None, **init_options: Any) -> None:
        super().__init__()
        self._run = run
        self._owned = run is None
        self._options = init_options

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._run is None:
            # Keras's params: epochs, steps, verbose: what this fit was asked to do.
            config = {**(self.params or {}), **(self._options.pop("config", None) or {})}
            self._run = Run(config=config, **self._options)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._run is not None and logs:
            self._run.log(logs, step=epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._run is not None and self._owned:
            self._run.finish()
