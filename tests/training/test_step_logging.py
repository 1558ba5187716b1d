"""When the training step logs (lightning_vae.training.step_logging): device tensors, never a
wait for the GPU, and only at the steps whose values a logger, the progress bar or a monitoring
callback reads, with the same logs and callback metrics as logging every step."""

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, Timer, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from training_models import CUDA, RECIPE_CONV, small_conv, tiny_bars

from lightning_vae import VAE
from lightning_vae.data.device_loader import DeviceLoader
from lightning_vae.training.step_logging import (
    device_scalar,
    per_step_progress_bar,
    progress_bar_refreshes,
    step_values_read,
)


def test_the_training_loss_is_in_the_progress_bar_only_where_reading_it_is_free():
    assert per_step_progress_bar(torch.device("cpu"))
    assert not per_step_progress_bar(torch.device("cuda", 0))
    assert not per_step_progress_bar(torch.device("mps"))


def test_python_numbers_are_logged_as_tensors_filled_on_the_device():
    value = device_scalar(0.25, torch.device("cpu"))
    assert value.shape == () and value.dtype == torch.float32 and value.item() == 0.25
    model = small_conv(beta_schedule={"name": "capacity", "capacity_max": 5.0, "steps": 10})
    means = model._objective(model.model.elbo(torch.rand(2, 1, 16, 16)))
    assert all(isinstance(v, torch.Tensor) for v in means.values())
    assert means["beta"].item() == 1.0 and means["capacity"].item() == 0.0


def test_on_the_cpu_the_progress_bar_shows_the_training_loss():
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(32)), batch_size=16))
    assert set(trainer.progress_bar_metrics) == {"train/loss"}


def test_the_training_loss_is_logged_for_the_bar_only_when_it_redraws():
    logged = []

    class RecordsLogging(VAE):
        def log(self, name, value, *args, **kwargs):
            logged.append((self.trainer.fit_loop.epoch_loop.batch_idx, name))
            super().log(name, value, *args, **kwargs)

    model = RecordsLogging(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_steps=7, limit_train_batches=7, logger=False,
                         enable_checkpointing=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[TQDMProgressBar(refresh_rate=3)])
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(56)), batch_size=8))
    # batches 3 and 6 (refresh_rate) and 7 (the epoch's last), which is also read by loggers
    assert [batch for batch, name in logged if name == "train/loss"] == [2, 5, 6]
    assert set(trainer.progress_bar_metrics) == {"train/loss"}


def test_without_a_progress_bar_nothing_is_logged_for_it():
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(32)), batch_size=16))
    assert not any(progress_bar_refreshes(trainer, i) for i in range(3))


class LogsEveryStep(VAE):
    """The reference: every term through ``self.log`` at every training step, from the noise the
    module's own training step draws."""

    def training_step(self, batch, batch_idx):
        means = self._objective(self.model.elbo(batch[0], self._train_generator))
        self.log_dict({f"train/{name}": value for name, value in means.items()})
        return means["loss"]


def logged_training_rows(model_class: type[VAE], root: Path, **trainer_options
                         ) -> tuple[list[dict], dict]:
    """CSV rows of the training terms and the final callback metrics of 2 epochs of 5 steps
    (unless ``trainer_options`` end the run sooner), written every 3 steps."""
    pl.seed_everything(0)
    model = model_class(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(**{"max_epochs": 2, **trainer_options}, log_every_n_steps=3,
                         logger=CSVLogger(root), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(40)), batch_size=8))
    rows = list(csv.DictReader((root / "lightning_logs/version_0/metrics.csv").open()))
    return rows, {k: v.item() for k, v in trainer.callback_metrics.items()}


def test_skipping_unread_step_values_leaves_the_logs_and_callback_metrics_unchanged(tmp_path):
    rows, final = logged_training_rows(VAE, tmp_path / "skips")
    reference_rows, reference_final = logged_training_rows(LogsEveryStep, tmp_path / "every")
    assert [row["step"] for row in rows] == ["2", "5", "8"]
    assert rows == reference_rows
    assert final == reference_final
    assert {"train/loss", "train/recon", "train/kl", "train/elbo", "train/beta"} <= final.keys()


class TimesOutAtStep(Timer):
    """``max_time`` as Lightning applies it (a ``Timer`` that sets ``trainer.should_stop`` after
    a training step), with the time running out at global step ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(duration={"hours": 1})
        self.step, self.steps_done = step, 0

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        self.steps_done = trainer.global_step
        super().on_train_batch_end(trainer, *args, **kwargs)

    def time_elapsed(self, stage: str = "train") -> float:
        return 3600.0 if self.steps_done >= self.step else 0.0


@pytest.mark.parametrize("ending", ["max_steps", "max_time"])
def test_a_run_ending_mid_epoch_logs_and_keeps_the_values_of_its_last_step(tmp_path, ending):
    """``max_steps`` 7 ends the run at the second step of the second epoch, ``max_time`` at
    step 4, which makes Lightning write the loggers then; neither is a step that
    ``log_every_n_steps`` writes, nor an epoch's last."""
    def end() -> dict:  # a fresh Timer for each run
        return {"max_steps": 7} if ending == "max_steps" else {"callbacks": [TimesOutAtStep(4)]}

    rows, final = logged_training_rows(VAE, tmp_path / "skips", **end())
    reference_rows, reference_final = logged_training_rows(LogsEveryStep, tmp_path / "every",
                                                           **end())
    assert rows == reference_rows
    assert final == reference_final


def test_step_values_are_read_at_logger_writes_and_at_the_end_of_each_epoch():
    seen = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append(step_values_read(trainer, batch_idx))

    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_epochs=2, log_every_n_steps=4, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", callbacks=[Record()])
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(40)), batch_size=8))
    epoch_0 = [False, False, False, True, True]  # global step 3 (every 4th); last batch
    epoch_1 = [False, False, True, False, True]  # global step 7; last batch
    assert seen == [*epoch_0, *epoch_1]


class RecordLoss(pl.Callback):
    """The training loss each step returned, by global step."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = outputs["loss"].item()


def test_a_checkpoint_monitoring_the_training_loss_every_n_steps_reads_that_steps_loss(
        tmp_path):
    """Logging only at the steps loggers write must not hand a step-wise ModelCheckpoint the
    value of an older step: the best checkpoint's score is the lowest loss of its steps."""
    record = RecordLoss()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="train/loss", mode="min",
                                 every_n_train_steps=2, save_top_k=1)
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_steps=9, log_every_n_steps=50, logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[record, checkpoint])
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(160)), batch_size=16))
    scores = {step: loss for step, loss in record.losses.items() if step % 2 == 0}
    best_step = min(scores, key=scores.get)
    assert checkpoint.best_model_score.item() == pytest.approx(scores[best_step])
    assert checkpoint.best_model_path.endswith(f"step={best_step}.ckpt")


@pytest.mark.parametrize("monitor_class", [ModelCheckpoint, EarlyStopping])
def test_a_monitor_of_the_training_loss_at_validations_within_an_epoch_reads_that_steps_loss(
        tmp_path, monitor_class):
    """Validation every 3 steps of 10, loggers written every 50: the monitor compares the loss
    of the step before each validation (and finds one at the first)."""
    record = RecordLoss()
    options = {"dirpath": tmp_path, "save_top_k": 1} if monitor_class is ModelCheckpoint else {}
    monitor = monitor_class(monitor="train/loss", mode="min", **options)
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    data = DataLoader(TensorDataset(tiny_bars(160)), batch_size=16)
    trainer = pl.Trainer(max_epochs=1, val_check_interval=3, limit_val_batches=1,
                         num_sanity_val_steps=0, log_every_n_steps=50, logger=False,
                         enable_checkpointing=monitor_class is ModelCheckpoint,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[record, monitor])
    trainer.fit(model, data, data)
    best = min(record.losses[step] for step in (3, 6, 9))
    score = monitor.best_model_score if monitor_class is ModelCheckpoint else monitor.best_score
    assert score.item() == pytest.approx(best)


class FailOnGPUSync(pl.Callback):
    """Turn any host-device synchronisation into an error from the start of training step
    ``first`` to the end of step ``last``: the step, backward, optimizer, logging, progress bar
    and the next batch's fetch."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last, self.checked = first, last, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.first:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.first <= batch_idx <= self.last:
            self.checked.append(batch_idx)
        if batch_idx == self.last:
            torch.cuda.set_sync_debug_mode("default")


@CUDA
@pytest.mark.parametrize("compile_mode, precision, cuda_graph", [
    (None, "32-true", False), ("reduce-overhead", "bf16-mixed", False),
    (None, "bf16-mixed", True)])
def test_training_steps_on_a_gpu_never_wait_for_it(compile_mode, precision, cuda_graph,
                                                   tmp_path):
    """With a logger, a checkpoint callback and the progress bar, as a recipe runs; with
    ``cuda_graph``, steps after the capture (which waits once, at step 3), under a β warm-up
    whose weight is refilled at every step."""
    images = torch.randint(0, 256, (640, 1, 28, 28), dtype=torch.uint8)
    loader = DeviceLoader(images, torch.zeros(640, dtype=torch.long), 32, shuffle=True,
                          drop_last=True, binarize=True, device="cuda")
    model = VAE(**RECIPE_CONV, channels_last=True, compile_mode=compile_mode, iw_samples=0,
                cuda_graph=cuda_graph, beta_schedule={"name": "linear", "steps": 100})
    check = FailOnGPUSync(first=8, last=15)
    trainer = pl.Trainer(max_steps=18, accelerator="gpu", devices=1, precision=precision,
                         logger=CSVLogger(tmp_path), log_every_n_steps=1000,
                         default_root_dir=tmp_path, callbacks=[check])
    try:
        trainer.fit(model, loader)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert check.checked == list(range(8, 16))

