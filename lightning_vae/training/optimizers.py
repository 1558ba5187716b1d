"""The optimizers a recipe names: Adam or AdamW, fused (one kernel for all parameters) where
torch has a kernel for the parameters' device, and capturable (its step recordable in a CUDA
graph) where the training pass is replayed from one."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
IMPLEMENTATION_FLAGS = ("fused", "capturable", "foreach", "differentiable")
"""Param-group options that choose how a step runs, not what it computes: a checkpoint's values
are replaced by those of the optimizer loading it (:func:`keep_own_implementation`)."""


def fused_supported(params: Iterable[Tensor]) -> bool:
    """Whether this torch build has a fused Adam kernel for every parameter's device and dtype:
    CUDA since torch 2.0, the CPU since 2.4 (``torch.optim`` raises on ``fused=True`` without
    one)."""
    try:  # the list torch.optim itself checks ``fused=True`` against
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
    except ImportError:
        return False
    devices = _get_fused_kernels_supported_devices()
    return all(p.device.type in devices and p.is_floating_point() for p in params)


def capturable_supported(params: Iterable[Tensor]) -> bool:
    """Whether Adam's ``capturable=True`` works for every parameter: it keeps the step count on
    the parameters' device, which torch allows on accelerators (CUDA) and not on the CPU."""
    try:
        from torch.optim.optimizer import _get_capturable_supported_devices
    except ImportError:
        return False
    devices = _get_capturable_supported_devices()
    params = list(params)
    return bool(params) and all(p.device.type in devices for p in params)


def build_optimizer(name: str, params: Iterable[Tensor], lr: float, weight_decay: float,
                    fused: bool, capturable: bool = False) -> torch.optim.Optimizer:
    """Adam or AdamW over ``params``; with ``fused``, the single-kernel implementation
    (``fused=True``) wherever :func:`fused_supported` says it exists, else torch's default.

    With ``capturable`` (where :func:`capturable_supported`), the step keeps its count in a
    device tensor instead of a host number, so one CUDA graph can hold it (:mod:`.cuda_graph`).
    Checkpoints load whatever the flags they were written with
    (:func:`keep_own_implementation`).
    """
    check_optimizer(name)
    params = list(params)
    options: dict[str, Any] = {"fused": True} if fused and fused_supported(params) else {}
    if capturable and capturable_supported(params):
        options["capturable"] = True
    optimizer = OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **options)
    optimizer.register_load_state_dict_pre_hook(keep_own_implementation)
    return optimizer


def keep_own_implementation(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Before ``optimizer`` loads ``state``: keep its own implementation flags (fused,
    capturable, ...) and its learning rate's type (number or tensor) in every param group.

    ``load_state_dict`` otherwise takes the param groups whole from the checkpoint, so one
    written by a capturable optimizer on a GPU (step counts as device tensors, ``capturable:
    True``) would make the CPU optimizer that resumes it raise at its first step, and the other
    way round a graphed GPU run would resume an optimizer that cannot be captured. Torch then
    places the step counts from these flags: on the parameter's device for a capturable or
    fused optimizer, on the host for a plain one.
    """
    for own, saved in zip(optimizer.param_groups, state["param_groups"], strict=False):
        for flag in IMPLEMENTATION_FLAGS:
            if flag in own:
                saved[flag] = own[flag]
        lr = saved.get("lr")
        if isinstance(own.get("lr"), Tensor):
            saved["lr"] = torch.as_tensor(lr, dtype=own["lr"].dtype).to(own["lr"].device)
        elif isinstance(lr, Tensor):
            saved["lr"] = lr.item()
    for values in state["state"].values():
        if isinstance(values.get("step"), Tensor) and not any(
                group.get("capturable") or group.get("fused") for group in optimizer.param_groups):
            values["step"] = values["step"].detach().cpu()


def check_optimizer(name: str) -> None:
    """Reject an optimizer name :func:`build_optimizer` does not know, naming the choices."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
