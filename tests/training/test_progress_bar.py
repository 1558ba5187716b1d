"""The progress bar redraws by the clock, and the training loss is logged for it only then."""

import pytest
import pytorch_lightning as pl
from torch.utils.data import DataLoader, TensorDataset
from training_models import tiny_bars

from lightning_vae import VAE
from lightning_vae.training.progress_bar import TimedProgressBar


class SteppedClock:
    """A clock reading 0, ``step``, 2 × ``step``, ... seconds, one step further at each read."""

    def __init__(self, step: float) -> None:
        self.step, self.reads = step, 0

    def __call__(self) -> float:
        self.reads += 1
        return (self.reads - 1) * self.step


def test_it_redraws_when_the_interval_has_passed_and_at_the_last_batch():
    times = iter([0.0, 0.05, 0.11, 0.15, 0.16])
    bar = TimedProgressBar(interval=0.1, clock=lambda: next(times))
    assert [bar.redraws_at(batch, 5) for batch in (1, 2)] == [True, False]
    assert bar.redraws_at(2, 5) is False  # asked again for a batch: the same answer, no clock
    assert [bar.redraws_at(batch, 5) for batch in (3, 4, 5)] == [True, False, True]


def test_a_negative_interval_is_refused():
    with pytest.raises(ValueError, match="interval >= 0"):
        TimedProgressBar(interval=-1)


def test_the_training_loss_is_logged_for_the_bar_only_at_its_redraws():
    logged, shown = [], []

    class RecordsLogging(VAE):
        def log(self, name, value, *args, **kwargs):
            logged.append((self.trainer.fit_loop.epoch_loop.batch_idx, name))
            super().log(name, value, *args, **kwargs)

    class RecordsBar(pl.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            shown.append(trainer.progress_bar_callback.train_progress_bar.n)

    bar = TimedProgressBar(interval=0.1, clock=SteppedClock(0.04))  # one read per batch
    model = RecordsLogging(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_steps=7, limit_train_batches=7, logger=False,
                         enable_checkpointing=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[bar, RecordsBar()])
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(56)), batch_size=8))
    # read at 0, .04, ..., .24 s: redraws at batches 1 and 4 (0.1 s on) and 7 (the last)
    assert shown == [1, 1, 1, 4, 4, 4, 7]
    assert [batch for batch, name in logged if name == "train/loss"] == [0, 3, 6]
    assert set(trainer.progress_bar_metrics) == {"train/loss"}


def test_each_loop_asks_afresh_about_its_own_batches():
    """A validation after every training batch, the clock standing still: the second epoch's
    first training batch does not redraw, and the validation after it, whose one batch is also
    its first, still redraws at its last batch (an answer kept from the training batch of the
    same number would say it does not)."""
    shown, trained = [], []

    class RecordsBars(pl.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            trained.append(trainer.progress_bar_callback.train_progress_bar.n)

        def on_validation_batch_end(self, trainer, *args) -> None:
            shown.append(trainer.progress_bar_callback.val_progress_bar.n)

    bar = TimedProgressBar(interval=0.1, clock=lambda: 0.0)
    model = VAE(image_shape=(1, 8, 8), latent_dim=2, arch="mlp", iw_samples=0)
    trainer = pl.Trainer(max_epochs=2, val_check_interval=1, num_sanity_val_steps=0,
                         logger=False, enable_checkpointing=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[bar, RecordsBars()])
    trainer.fit(model, DataLoader(TensorDataset(tiny_bars(16)), batch_size=8),
                DataLoader(TensorDataset(tiny_bars(8)), batch_size=8))
    assert trained == [1, 2, 0, 2]  # the first batch ever and each epoch's last redraw
    assert shown == [1, 1, 1, 1]  # two validations an epoch, one batch each, each redrawn
