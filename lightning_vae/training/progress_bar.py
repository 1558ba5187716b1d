"""A progress bar that redraws by the clock, not by the step.

Lightning's ``TQDMProgressBar`` redraws every ``refresh_rate`` batches. A redraw costs a few
thousand Python bytecodes (tqdm's formatting, Lightning's metrics dictionary), and the training
step logs the loss for the bar whenever it redraws, at 0.6–0.9 ms of Python per ``self.log`` on
a CPU (:mod:`.step_logging`). At 1 000 steps a second, a GPU's pace with ``cuda_graph``, a bar
redrawn every 10 steps redraws 100 times a second, far more often than anyone reads it.
:class:`TimedProgressBar` redraws at most every ``interval`` seconds (0.1 s, tqdm's own
``mininterval``) and at the last batch of each loop; the command line adds it unless the
configuration names a bar or turns it off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pytorch_lightning.callbacks import TQDMProgressBar


class TimedProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` redrawn at most every ``interval`` seconds, and at the last batch of
    each training, validation, test or prediction loop. ``clock`` (seconds) is for tests and
    benchmarks that need a clock of their own."""

    def __init__(self, interval: float = 0.1, process_position: int = 0, leave: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not interval >= 0:
            raise ValueError(f"TimedProgressBar needs interval >= 0 seconds, got {interval!r}")
        super().__init__(refresh_rate=1, process_position=process_position, leave=leave)
        self.interval = interval
        self.clock = clock
        self._next_redraw = float("-inf")
        self._asked: int | None = None
        self._redraws = False

    def redraws_at(self, current: int, total: float | None) -> bool:
        """Whether the bar redraws at batch ``current`` (counted from 1) of ``total``: at the
        last batch, else when ``interval`` seconds have passed since the last redraw.

        Asked again for the same batch number, it gives the same answer, so the training step,
        which asks to log the loss only when the bar will show it
        (:func:`~lightning_vae.training.step_logging.progress_bar_refreshes`), and the bar's own
        hook after it, agree. Each loop (a training epoch, a validation, a test, a prediction)
        starts afresh."""
        if current != self._asked:
            now = self.clock()
            self._asked = current
            self._redraws = current == total or now >= self._next_redraw
            if self._redraws:
                self._next_redraw = now + self.interval
        return self._redraws

    def _new_loop(self) -> None:
        """Forget the last answer: a loop starting counts its batches from 1 again, and an
        answer kept from another loop's batch of the same number would be reused."""
        self._asked = None

    def on_train_epoch_start(self, *args: Any) -> None:
        super().on_train_epoch_start(*args)
        self._new_loop()

    def on_validation_start(self, *args: Any) -> None:
        super().on_validation_start(*args)
        self._new_loop()

    def on_test_start(self, *args: Any) -> None:
        super().on_test_start(*args)
        self._new_loop()

    def on_predict_start(self, *args: Any) -> None:
        super().on_predict_start(*args)
        self._new_loop()

    def _should_update(self, current: int, total: float | None) -> bool:
        # What every one of Lightning's batch-end hooks of the bar asks before redrawing.
        return self.is_enabled and self.redraws_at(current, total)
