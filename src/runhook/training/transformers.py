"""Hugging Face Transformers: `Trainer(..., callbacks=[RunhookCallback(project="nlp")])`.
The run starts with training (the TrainingArguments as its config), takes every
`on_log`, and ends `finished` at `on_train_end`. The Trainer has no failure callback:
an exception out of `train()` is reported `failed` by runhook's exception hook."""

from __future__ import annotations

from typing import Any

from runhook.training.frameworks import need
from runhook.training.run import Run

# Imported as a module: mypy here has no Transformers to see, so its types are Any.
_transformers: Any = need(("transformers",), "transformers", "Hugging Face Transformers")


class RunhookCallback(_transformers.TrainerCallback):  # type: ignore[misc]  # Any base
    """Reports the Trainer's logs to runhook, from the world's main process only.
    `run=` reports into a run of your own, left open at the end; other arguments go
    to `runhook.init` (name defaults to the TrainingArguments' run_name)."""

    def __init__(self, run: Run | None = None, **init_options: Any) -> None:
        self._run = run
        self._owned = run is None
        self._options = init_options

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self._run is not None:
            return
        config = {**args.to_sanitized_dict(), **(self._options.pop("config", None) or {})}
        model = kwargs.get("model")
        if model is not None and hasattr(model, "config"):
            config["model_type"] = getattr(model.config, "model_type", "")
        self._options.setdefault("name", args.run_name)
        self._run = Run(config=config, **self._options)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if self._run is not None and logs and state.is_world_process_zero:
            self._run.log(logs, step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._run is not None and self._owned:
            self._run.finish()
