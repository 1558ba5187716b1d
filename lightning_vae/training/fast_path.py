"""The speed path of training, apart from the model: ``torch.compile`` of the training pass,
or its replay from one CUDA graph (:mod:`lightning_vae.training.cuda_graph`).

The switches are training options of :class:`~lightning_vae.VAE` (``compile_mode``,
``cuda_graph``; with ``fused_optimizer`` in :mod:`.optimizers` and ``channels_last``), never
part of a saved model. What each one buys, and what limits the speed, is measured by
``benchmarks/train_throughput.py`` and recorded in docs/results.md ("Training throughput").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import torch

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_mode(mode: str | None) -> None:
    """Reject a ``compile_mode`` that ``torch.compile`` does not know, naming the choices."""
    if mode is not None and (not isinstance(mode, str) or mode not in COMPILE_MODES):
        raise ValueError(
            f"compile_mode={mode!r} is not a torch.compile mode; choose one of {COMPILE_MODES} "
            "or null (no compilation)"
        )


def uses_cudagraphs(mode: str | None) -> bool:
    """Whether ``torch.compile`` replays CUDA graphs in ``mode`` (on CUDA devices)."""
    return mode in ("reduce-overhead", "max-autotune")


@functools.cache
def compiled(fn: Callable, mode: str) -> Callable:
    """``torch.compile(fn, mode=mode)``, built once per process for each (function, mode).

    Pass plain functions (``VAE.elbo``, called as ``compiled(VAE.elbo, mode)(model, x)``), not
    bound methods nor modules: nothing is stored on the model, so its ``state_dict`` keys and
    copies are unchanged, and the compiled code is traced from this package's own code (torch
    2.13 does not trace an ``nn.Sequential`` compiled on its own: ``Module.compile`` on one
    runs it eagerly).
    """
    return torch.compile(fn, mode=mode)
