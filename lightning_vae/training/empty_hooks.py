"""Per-batch hooks that do nothing, left uncalled.

At every training step Lightning calls each callback's per-batch hooks and the module's, whether
they are implemented or inherited empty (from ``Callback`` or ``ModelHooks``), and each call goes
through a profiler context and, for a callback, its ``state_key`` (for ``ModelCheckpoint`` a
``repr`` of its settings). With the default recipe's callbacks, that was about 2 350 of a graphed
step's 16 800 Python bytecodes, for hooks that did nothing (``benchmarks/profile_step.py
--host-only``; docs/results.md, issue 26): on a GPU, where a graphed step is one replay, host
time that each step waits for.

Lightning calls a hook only if the attribute is callable (``callable(getattr(obj, name))`` in
``pytorch_lightning/trainer/call.py``, for callbacks and modules alike), so
:func:`skip_empty_hooks` sets each per-batch hook that is still the empty base's own to None on
the instance: the training module does it for the callbacks' per-batch hooks and for its own
training-step hooks. Subclasses keep working: a hook that any class of the instance overrides
(calling ``super()`` or not), or that is set on the instance itself (``LambdaCallback``), is
still called, and ``super()`` calls resolve on the classes, which are left as they are. The
limit: a hook given to the class after the skip (patched onto it) stays shadowed for that
instance until the instance's attribute is deleted (``del callback.on_train_batch_end``).
"""

from __future__ import annotations

TRAINING_HOOKS = (
    "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad",
)
"""The hooks Lightning calls at every training step (the batch-transfer hooks, which return
the batch, are not among them)."""
PER_BATCH_HOOKS = (*TRAINING_HOOKS, "on_validation_batch_start", "on_validation_batch_end",
                   "on_test_batch_start", "on_test_batch_end", "on_predict_batch_start",
                   "on_predict_batch_end")
"""The hooks Lightning calls at every batch. A module's evaluation batch hooks must stay: Lightning
reads their signatures before evaluating (whether they take ``dataloader_idx``)."""


def skip_empty_hooks(instance: object, base: type, hooks: tuple[str, ...] = PER_BATCH_HOOKS
                     ) -> None:
    """Set each of ``hooks`` that is ``base``'s own (``pl.Callback`` or Lightning's
    ``ModelHooks``, whose hooks are empty) to None on ``instance``, so that Lightning does not
    call it. A hook that ``instance``'s class overrides, or that is set on ``instance`` itself
    (as ``LambdaCallback`` does), is left."""
    for name in hooks:
        if getattr(getattr(instance, name, None), "__func__", None) is getattr(base, name):
            setattr(instance, name, None)
