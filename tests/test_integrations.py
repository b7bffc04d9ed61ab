"""The framework adapters with the real libraries: each trains a tiny model built from
code for 2 epochs on the CPU in a child process, against the real daemon, and the
daemon's history holds the executions worked out by hand. The libraries come from
the `integrations-test` extra, which `make test` installs; where one is missing the
test skips saying so, except in CI, where it fails (a test that never runs passes
nothing)."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
from conftest import Daemon
from training import automations, finished, history, script, settle

FINISHED = '{ kind = "RUN_STATE", states = ["finished"] }'
FAILED = '{ kind = "RUN_STATE", states = ["failed"] }'


def needs(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        why = f"not installed: {', '.join(missing)} (pip install -e '.[integrations-test]')"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def two_values(metric: str) -> str:
    """Fires once, at a metric's 2nd value, carrying both: the window of 2 is full
    exactly then. A 3rd value would fire `three`."""
    return f'{{ kind = "RUN_METRIC_THRESHOLD", metric = "{metric}", agg = "min", window = 2, cmp = ">=", threshold = -1e9 }}'


def three_values(metric: str) -> str:
    return two_values(metric).replace("window = 2", "window = 3")


def config(metric: str) -> str:
    return automations(("two", two_values(metric)), ("three", three_values(metric)),
                       ("done", FINISHED), ("failed", FAILED))


async def trained(daemon: Daemon, code: str, *args: str,
                  env: dict[str, str] | None = None) -> tuple[int, str, str]:
    # One thread: the tiny models gain nothing from more, and the machine is shared.
    return await finished(await script(daemon, code, *args, env={
        "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}))


async def two_epochs(daemon: Daemon, values: list[float]) -> dict:
    """The run's 2 epoch values fired `two` once, nothing fired `three`, it finished
    once and never failed; returns the finished execution's context."""
    (two,) = await settle(daemon, "two", 1)
    assert two["context"]["metric_values"] == pytest.approx(values)
    (done,) = await settle(daemon, "done", 1)
    assert await history(daemon, "three") == [] and await history(daemon, "failed") == []
    return done["context"]


LIGHTNING = """
import sys, torch, lightning as L
from runhook.training.lightning import RunhookLogger

class Tiny(L.LightningModule):
    def __init__(self, lr=0.1):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)
    def training_step(self, batch, index):
        if sys.argv[1] == "fail" and self.current_epoch == 1:
            raise RuntimeError("diverged")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("loss", loss)
        return loss
    def on_train_epoch_end(self):
        self.log("marker", self.current_epoch + 0.5)  # 0.5, then 1.5: known by hand
    def test_step(self, batch, index):
        self.log("marker", 2.5)  # logged once, at the test epoch's end
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

torch.manual_seed(0)
data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
trainer = L.Trainer(max_epochs=2, logger=RunhookLogger(id="pl-" + sys.argv[1], name="prod-pl",
                                                       tags=["lightning"]),
                    accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, log_every_n_steps=1)
model, loader = Tiny(), torch.utils.data.DataLoader(data, batch_size=8)
trainer.fit(model, loader)
if sys.argv[1] == "then-test":
    trainer.test(model, loader, verbose=False)
"""


async def test_lightning_logger(start_daemon):
    needs("torch", "lightning")
    daemon = await start_daemon(config("marker"))
    code, _, err = await trained(daemon, LIGHTNING, "ok")
    assert code == 0, err
    context = await two_epochs(daemon, [0.5, 1.5])
    assert (context["run_id"], context["run_name"], context["run_tags"]) == \
        ("pl-ok", "prod-pl", ["lightning"])
    assert context["run_config"] == {"lr": 0.1}  # save_hyperparameters -> log_hyperparams


async def test_lightning_test_after_fit_reports_into_the_same_run(start_daemon):
    """Lightning calls finalize("success") after fit too: the run stays open for the
    test that follows. marker: 0.5, 1.5 (fit), 2.5 (test): `two` fires at 1.5 and
    `three` at 2.5, the run finishes once, at the process's exit."""
    needs("torch", "lightning")
    daemon = await start_daemon(config("marker"))
    code, _, err = await trained(daemon, LIGHTNING, "then-test")
    assert code == 0, err
    (two,) = await settle(daemon, "two", 1)
    (three,) = await settle(daemon, "three", 1)
    assert two["context"]["metric_values"] == pytest.approx([0.5, 1.5])
    assert three["context"]["metric_values"] == pytest.approx([0.5, 1.5, 2.5])
    (done,) = await settle(daemon, "done", 1)
    assert done["context"]["run_id"] == "pl-then-test"
    assert await history(daemon, "failed") == []


async def test_lightning_failure_is_reported_by_finalize(start_daemon):
    needs("torch", "lightning")
    daemon = await start_daemon(config("marker"))
    code, _, err = await trained(daemon, LIGHTNING, "fail")
    assert code == 1 and "RuntimeError: diverged" in err
    (row,) = await settle(daemon, "failed", 1)
    assert (row["run_id"], row["reason"]) == ("pl-fail", "RuntimeError: diverged")
    assert await history(daemon, "done") == []


TRANSFORMERS = """
import json, sys, tempfile, torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
from runhook.training.transformers import RunhookCallback

torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(
    vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
    intermediate_size=8, max_position_embeddings=16, num_labels=2))
data = [{"input_ids": torch.randint(0, 32, (6,)), "labels": torch.tensor(i % 2)}
        for i in range(8)]
args = TrainingArguments(output_dir=tempfile.mkdtemp(), num_train_epochs=2,
                         per_device_train_batch_size=4, logging_strategy="epoch",
                         save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                         run_name="prod-hf")
trainer = Trainer(model=model, args=args, train_dataset=data,
                  callbacks=[RunhookCallback(id="hf-1", group="sweep-hf")])
trainer.train()
print(json.dumps([entry["loss"] for entry in trainer.state.log_history if "loss" in entry]))
"""


async def test_transformers_callback(start_daemon):
    needs("torch", "transformers", "accelerate")
    daemon = await start_daemon(config("loss"))
    code, out, err = await trained(daemon, TRANSFORMERS)
    assert code == 0, err
    context = await two_epochs(daemon, json.loads(out.splitlines()[-1]))
    assert (context["run_id"], context["run_name"], context["run_group"]) == \
        ("hf-1", "prod-hf", "sweep-hf")
    assert context["run_config"]["num_train_epochs"] == 2
    assert context["run_config"]["model_type"] == "bert"


KERAS = """
import json, keras, numpy
from runhook.training.keras import RunhookCallback

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
fit = model.fit(numpy.random.rand(16, 4), numpy.random.rand(16, 1), epochs=2, batch_size=8,
                verbose=0, callbacks=[RunhookCallback(id="keras-1", name="prod-keras")])
print(json.dumps(fit.history["loss"]))
"""


async def test_keras_callback(start_daemon):
    needs("torch", "keras")
    daemon = await start_daemon(config("loss"))
    code, out, err = await trained(daemon, KERAS, env={"KERAS_BACKEND": "torch"})
    assert code == 0, err
    context = await two_epochs(daemon, json.loads(out.splitlines()[-1]))
    assert (context["run_id"], context["run_name"]) == ("keras-1", "prod-keras")
    assert context["run_config"]["epochs"] == 2


WANDB = """
import sys, wandb
from runhook.training.wandb import forward

forward()
run = wandb.init(mode="offline", project="vision", id="wb-" + sys.argv[1], name="prod-wb",
                 group="sweep-wb", tags=["w"], config={"lr": 0.1})
for epoch in range(2):
    wandb.log({"loss": 1.0 / (epoch + 1), "note": "not a metric"})
if sys.argv[1] == "exit":
    sys.exit(3)  # never finished by hand: wandb ends it at exit with code 3
run.finish()
"""


async def test_wandb_forward(start_daemon, short_dir):
    needs("wandb")
    daemon = await start_daemon(config("loss"))
    env = {"WANDB_DIR": str(short_dir), "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    code, _, err = await trained(daemon, WANDB, "ok", env=env)
    assert code == 0, err
    context = await two_epochs(daemon, [1.0, 0.5])
    assert (context["run_id"], context["run_name"], context["run_group"],
            context["run_tags"]) == ("wb-ok", "prod-wb", "sweep-wb", ["w"])
    assert context["run_config"] == {"lr": 0.1}
    code, _, err = await trained(daemon, WANDB, "exit", env=env)
    assert code == 3, err
    (row,) = await settle(daemon, "failed", 1)
    assert (row["run_id"], row["reason"]) == ("wb-exit", "exit code 3")
