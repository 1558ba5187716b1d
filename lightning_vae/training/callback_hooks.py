"""Per-batch callback hooks that do nothing, left uncalled.

At every training step Lightning calls each callback's per-batch hooks, whether the callback
implements them or inherits ``Callback``'s empty ones, and each call goes through a profiler
context and the callback's ``state_key`` (for ``ModelCheckpoint`` a ``repr`` of its settings).
With the default recipe's callbacks, that was about 2 350 of a graphed step's 16 800 Python
bytecodes, for hooks that did nothing (``benchmarks/profile_step.py --host-only``;
docs/results.md, issue 26): on a GPU, where a graphed step is one replay, host time that each
step waits for.

Lightning calls a hook only if the attribute is callable (``callable(getattr(callback, name))``
in ``pytorch_lightning/trainer/call.py``), so :func:`skip_inherited_hooks` sets, on the
instance, each per-batch hook its class inherits unchanged from ``Callback`` to None. Subclasses
keep working: the choice is made from the instance's own class, so a hook that any class of a
callback overrides (calling ``super()`` or not) is still called, and ``super()`` calls resolve on
the classes, which are left as they are. The limit: a hook given to a callback's class after
the skip (patched onto the class) stays shadowed for that instance until the instance's
attribute is deleted (``del callback.on_train_batch_end``).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl

PER_BATCH_HOOKS = (
    "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad", "on_validation_batch_start",
    "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end",
    "on_predict_batch_start", "on_predict_batch_end",
)
"""The hooks Lightning calls at every batch: those whose cost per call counts."""


def skip_inherited_hooks(callbacks: Iterable[pl.Callback]) -> None:
    """Set each of :data:`PER_BATCH_HOOKS` that a callback's class inherits from ``Callback``
    (an empty method) to None on the callback, so that Lightning does not call it."""
    for callback in callbacks:
        for name in PER_BATCH_HOOKS:
            if getattr(type(callback), name, None) is getattr(pl.Callback, name):
                setattr(callback, name, None)
