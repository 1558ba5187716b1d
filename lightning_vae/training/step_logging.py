"""When the training step logs, so that logging costs neither host synchronisation nor Python
time at steps whose values nobody reads.

Host synchronisation: on a GPU, the CPU queues kernels ahead of the device, and any call that
needs a value back (``.item()``, ``float(tensor)``, or a Python number copied *to* the device
with ``torch.tensor(x, device=...)``) waits until the queue has drained. One such call per step
makes every step pay the launch latency of the next. Lightning converts progress-bar values to
Python numbers at every step, and logger values only every ``log_every_n_steps``; so the
training step logs its terms as device tensors, made with :func:`device_scalar` where they
start as Python numbers, and shows them in the progress bar only where that is free
(:func:`per_step_progress_bar`).

Python overhead: each ``self.log`` call costs Lightning 0.6–0.9 ms on the CPU, so the step
logs its terms only at the steps whose values anyone reads (:func:`step_values_read`); what
the loggers and ``trainer.callback_metrics`` at the end of an epoch receive is unchanged.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from torch import Tensor

from lightning_vae.training.progress_bar import TimedProgressBar


def device_scalar(value: float, device: torch.device) -> Tensor:
    """``value`` as a 0-d float32 tensor on ``device``, written by a fill kernel.

    ``self.log`` turns a Python number into ``torch.tensor(value, device=...)``, a copy from
    the host that on CUDA waits for every queued kernel; a fill takes the number as a kernel
    argument and waits for nothing.
    """
    return torch.full((), value, dtype=torch.float32, device=device)


def per_step_progress_bar(device: torch.device) -> bool:
    """Whether a value may be shown in the progress bar at every step on ``device``.

    Lightning converts progress-bar values with ``.item()`` at every step. On the CPU that is
    free; on an accelerator it waits for the step to finish, so the training loss is not shown
    there (the loggers still receive it, converted in one go, every ``log_every_n_steps``).
    """
    return torch.device(device).type == "cpu"


def progress_bar_refreshes(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether the progress bar redraws after training step ``batch_idx``, reading the values
    logged for it: a :class:`~lightning_vae.training.progress_bar.TimedProgressBar` when its
    interval has passed; Lightning's bars (TQDM and Rich) every ``refresh_rate`` batches; both
    at the epoch's last one. False without an enabled bar."""
    bar = trainer.progress_bar_callback
    if bar is None or not bar.is_enabled:
        return False
    batch = batch_idx + 1
    if isinstance(bar, TimedProgressBar):
        return bar.redraws_at(batch, trainer.num_training_batches)
    return batch % getattr(bar, "refresh_rate", 1) == 0 or batch == trainer.num_training_batches


def step_values_read(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether values logged by this training step reach anyone: the loggers, which Lightning
    writes every ``log_every_n_steps``, or ``trainer.callback_metrics`` at the epoch's end.

    Step-level values logged at other steps are overwritten unread, yet each ``self.log`` call
    costs 0.6–0.9 ms of Python on the CPU (Lightning moves its whole result record to the
    value's device at every call): six terms at every step were some 6 % of a CPU training
    step of the default model. Between those steps, ``callback_metrics`` keeps the last values
    read, so the run's last step (``max_steps``, which can end it mid-epoch) counts as read, and
    every step does where a callback reads those values at other steps:
    :func:`monitors_read_mid_epoch`, and a ``max_time`` Timer, which stops the run (and makes
    Lightning write the loggers) after whichever step runs out of time. Where Lightning's
    internals differ from the ones read here, every step counts as read.

    A training loop asks at every step: :class:`StepsRead` gives the same answers with the
    epoch's settings read once.
    """
    return StepsRead(trainer)(batch_idx)


class StepsRead:
    """:func:`step_values_read` for the steps of one epoch, with what stays the same during it
    (the callbacks that read every step, the number of batches, ``max_steps``) read when it is
    made, at the epoch's start: they were most of the function's cost (about 300 of 480 Python
    bytecodes a step)."""

    def __init__(self, trainer: pl.Trainer) -> None:
        self.trainer = trainer
        self.every_step = bool(trainer.fast_dev_run or monitors_read_mid_epoch(trainer)
                               or stops_on_time(trainer))
        self.last_batch = trainer.num_training_batches - 1
        self.max_steps = trainer.max_steps

    def __call__(self, batch_idx: int) -> bool:
        """Whether the values logged by training step ``batch_idx`` of the epoch are read."""
        if self.every_step or batch_idx >= self.last_batch:
            return True
        if 0 <= self.max_steps <= self.trainer.global_step + 1:  # asked before the step
            return True
        connector = getattr(self.trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))


def monitors_read_mid_epoch(trainer: pl.Trainer) -> bool:
    """Whether a ``ModelCheckpoint`` or ``EarlyStopping`` compares a monitored value in
    ``callback_metrics`` at steps the loggers may not write: a checkpoint after training steps
    (``every_n_train_steps`` or ``train_time_interval``), either of them after a validation
    that runs within an epoch (``val_check_interval`` shorter than an epoch, or time-based)."""
    validates_mid_epoch = (trainer.check_val_every_n_epoch is None
                           or trainer.val_check_batch is None  # time-based
                           or trainer.val_check_batch < trainer.num_training_batches)
    checkpoints = any(
        getattr(checkpoint, "monitor", None) is not None
        and (validates_mid_epoch
             or getattr(checkpoint, "_every_n_train_steps", 1)
             or getattr(checkpoint, "_train_time_interval", None) is not None)
        for checkpoint in trainer.checkpoint_callbacks
    )
    return checkpoints or (validates_mid_epoch and bool(trainer.early_stopping_callbacks))


def stops_on_time(trainer: pl.Trainer) -> bool:
    """Whether a ``Timer`` (``trainer.max_time``) may stop the run after any training step."""
    return any(isinstance(callback, Timer) and callback._duration is not None
               and callback._interval != "epoch" for callback in trainer.callbacks)
