"""Automatic optimization's training step, run by the module itself where no one could tell.

Lightning's automatic optimization runs each step through a closure, the strategy's and the
precision plugin's wrappers, the per-step hooks (``on_before_zero_grad``, ``on_before_backward``,
``on_after_backward``, ``on_before_optimizer_step``), gradient clipping and the schedulers' update:
about 3 400 Python bytecodes a step, 0.2 ms on these CPUs, for a step that, in a default run,
is ``zero_grad``, the loss, ``backward``, ``optimizer.step()`` and the scheduler's ``step()``
(``benchmarks/profile_step.py --host-only --eager``; docs/results.md, issue 26). When nothing
can observe the difference, :class:`~lightning_vae.VAE` turns automatic optimization off and
runs those calls itself, through Lightning's optimizer wrapper's step counting, so
``global_step``, checkpoints and resumption are those of automatic optimization.

"Nothing can observe it" is :func:`can_step_directly`: one device, no gradient scaler (fp16),
clipping or accumulation, no callback or module hook between the loss and the optimizer's step,
none of the module's optimization methods overridden, and one optimizer whose schedulers step
at every step; and, checked by the module, a ``training_step`` that is its own (a subclass's
would not step the optimizer).
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.plugins.precision import MixedPrecision, Precision
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.utilities.model_helpers import is_overridden

STEP_HOOKS = ("on_before_zero_grad", "on_before_backward", "on_after_backward",
              "on_before_optimizer_step")
"""The hooks automatic optimization calls inside a step: anyone implementing one needs it."""
OPTIMIZATION_METHODS = ("optimizer_step", "optimizer_zero_grad", "backward",
                        "configure_gradient_clipping", "lr_scheduler_step")
"""The module's methods automatic optimization calls, which a subclass may override."""


def can_step_directly(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """Whether ``module``'s training steps in this fit may run automatic optimization's calls
    themselves with the same results and hooks. Call it once the optimizers exist
    (``on_train_start``) and after the empty hooks were skipped
    (:mod:`~lightning_vae.training.empty_hooks`), so a hook still callable is one that acts."""
    precision = trainer.precision_plugin
    listeners = [module, *trainer.callbacks]
    conditions = (
        type(trainer.strategy) is SingleDeviceStrategy,
        type(precision) in (Precision, MixedPrecision),
        getattr(precision, "scaler", None) is None,
        not trainer.gradient_clip_val,
        trainer.accumulate_grad_batches == 1,
        len(trainer.optimizers) == 1,
        all(config.interval == "step" and config.frequency == 1 and not config.reduce_on_plateau
            for config in trainer.lr_scheduler_configs),
        not any(is_overridden(name, module, pl.LightningModule) for name in OPTIMIZATION_METHODS),
        not any(callable(getattr(listener, name, None))
                for listener in listeners for name in STEP_HOOKS),
    )
    return all(conditions)
