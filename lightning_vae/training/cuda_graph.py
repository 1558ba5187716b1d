"""A training pass (forward and backward) captured once as a CUDA graph and replayed at each step.

On a GPU the default model's step is a fraction of a millisecond of kernels and several
milliseconds of Python launching them, one by one (docs/results.md, "GPU"). A CUDA graph
launches all of a pass's kernels in one call. ``torch.compile``'s ``"reduce-overhead"`` mode
does this too, but for the forward and the backward separately and behind guards and
bookkeeping that cost about as much Python again; capturing the pass by hand leaves only
the copy of the batch into the graph's input and the replay.

The method is "whole-network capture" from PyTorch's CUDA-graph notes: a few eager warm-up
steps on a side stream, then one step captured with the gradients unset, so that backward
allocates them in the graph's memory; every replay then overwrites them, and points each
parameter's ``.grad`` back at them (Lightning sets the gradients to None before each
validation, as any ``zero_grad()`` does; an eager step would otherwise find no gradients).
Given an ``optimizer``, the graph holds its step too, so one replay is a whole training step:
Adam or AdamW built ``capturable`` (:func:`~lightning_vae.training.optimizers.build_optimizer`),
whose step count lives in a device tensor the replays update. Its state is the optimizer's
own, so checkpoints hold it as usual, and load on a CPU (``keep_own_implementation``). Without
an optimizer the step stays outside, reading the gradients as after any ``backward``.

Requirements, checked by the caller (``VAE.setup``): one CUDA device, batches of one shape
(others run eagerly), no gradient scaler (fp16) and nothing that must touch the gradients
between backward and the optimizer (clipping, accumulation). Random draws in the graph come
from the device's generator at each replay, so seeding it before a replay gives the draws an
eager pass would make. Off CUDA every step runs eagerly, with the same results.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

TrainingPass = Callable[[Tensor], dict[str, Tensor]]
GRADIENT = operator.attrgetter("grad")


class GraphedTrainingPass:
    """``training_pass(x)`` (a dict of tensors holding ``"loss"``), ``loss.backward()`` and,
    given an ``optimizer``, its ``step()``, replayed from a CUDA graph after ``warmup_steps``
    eager calls (and then as many more as it takes for two calls in a row to have batches of
    one shape: that shape is captured).

    Calling it leaves the gradients of ``parameters`` in their ``.grad`` (and, with an
    ``optimizer``, the parameters stepped) and returns the pass's outputs, detached. After
    the capture those are the graph's own tensors, which the next call overwrites: clone what
    must outlive it. Batches of a shape or dtype other than the captured one (a last partial
    batch) run eagerly, into the same gradient tensors.
    """

    def __init__(self, training_pass: TrainingPass, parameters: Iterable[Tensor],
                 warmup_steps: int = 3, optimizer: torch.optim.Optimizer | None = None) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be at least 1, got {warmup_steps}")
        self.training_pass = training_pass
        self.optimizer = optimizer
        self.parameters = [p for p in parameters if p.requires_grad]
        self.warmup_left = warmup_steps
        self.warmed_shape: tuple[torch.Size, torch.dtype] | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_input: Tensor | None = None
        self.static_outputs: dict[str, Tensor] = {}
        self.static_gradients: list[Tensor | None] = []

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        if self.graph is None:
            if x.device.type != "cuda":
                return self._eager(x)
            # Capture a batch of the shape the last warm-up ran, never a lone last partial
            # batch (which would leave every full batch after it eager).
            shape = (x.shape, x.dtype)
            if self.warmup_left > 0 or shape != self.warmed_shape:
                self.warmup_left = max(self.warmup_left - 1, 0)
                self.warmed_shape = shape
                return self._warm_up(x)
            return self._capture(x)
        self._restore_gradients()
        if x.shape != self.static_input.shape or x.dtype != self.static_input.dtype:
            return self._eager(x)
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_outputs

    def _restore_gradients(self) -> None:
        """Point each ``.grad`` at the tensor the graph writes, whoever unset or replaced it.
        That is needed at few steps (after a validation), so the check runs first, in C: a
        Python loop over the parameters was a third of the hand-written loop's bytecodes."""
        if all(map(operator.is_, map(GRADIENT, self.parameters), self.static_gradients)):
            return
        for parameter, gradient in zip(self.parameters, self.static_gradients, strict=True):
            parameter.grad = gradient

    def _forward_backward(self, x: Tensor) -> dict[str, Tensor]:
        # Autocast's cache of cast weights must not outlive a capture (PyTorch's CUDA-graph
        # notes), so every pass runs with the caller's autocast settings but no cache.
        device = x.device.type
        with torch.autocast(device, dtype=torch.get_autocast_dtype(device),
                            enabled=torch.is_autocast_enabled(device), cache_enabled=False):
            outputs = self.training_pass(x)
        outputs["loss"].backward()
        if self.optimizer is not None:
            self.optimizer.step()
        return {name: value.detach() for name, value in outputs.items()}

    def _unset_gradients(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    def _warm_up(self, x: Tensor) -> dict[str, Tensor]:
        """An eager pass on a side stream, as the capture will run: lazy initialisation
        (cuDNN's algorithm choice, autograd's streams) happens here, outside the graph."""
        self._unset_gradients()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            outputs = self._forward_backward(x)
        torch.cuda.current_stream(x.device).wait_stream(side)
        return outputs

    def _capture(self, x: Tensor) -> dict[str, Tensor]:
        """Capture the pass on ``x``'s shape, then replay it once for ``x`` itself (the capture
        records the kernels without running them)."""
        self.static_input = x.clone()
        self._unset_gradients()  # backward allocates them in the graph's memory
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.static_outputs = self._forward_backward(self.static_input)
        self.static_gradients = [parameter.grad for parameter in self.parameters]
        self.graph = graph
        graph.replay()
        return self.static_outputs

    def _eager(self, x: Tensor) -> dict[str, Tensor]:
        """A pass outside any graph, into the existing gradient tensors (the graph's, once
        captured), zeroed first."""
        for parameter in self.parameters:
            if parameter.grad is not None:
                parameter.grad.zero_()
        return self._forward_backward(x)


AUTOMATIC_STEPS = "epoch_loop.automatic_optimization.optim_progress"
MANUAL_STEPS = "epoch_loop.manual_optimization.optim_step_progress"


def carry_optimizer_steps(checkpoint: dict[str, Any]) -> None:
    """Let a run resume at its step whether or not it optimizes as the checkpointed run did.

    Lightning counts ``global_step`` in the loop of the optimization in use (automatic, or the
    manual one of a graphed run or of :mod:`~lightning_vae.training.direct_step`) and restores
    only that loop's count, so a run resumed in the other kind (a graphed run on several GPUs,
    say) would restart at step 0: the β schedule and the per-step noise seeds with it. Sets both
    loops' counts to the larger of the two, in ``checkpoint`` (before Lightning restores its
    loops from it): only the loop in use advances, so the larger count is the run's.
    """
    fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
    if AUTOMATIC_STEPS not in fit_loop or MANUAL_STEPS not in fit_loop:
        return
    automatic_steps = fit_loop[AUTOMATIC_STEPS]["optimizer"]["step"]
    manual_steps = fit_loop[MANUAL_STEPS]
    if automatic_steps["total"]["completed"] > manual_steps["total"]["completed"]:
        fit_loop[MANUAL_STEPS] = copy.deepcopy(automatic_steps)
    else:
        fit_loop[AUTOMATIC_STEPS]["optimizer"]["step"] = copy.deepcopy(manual_steps)
