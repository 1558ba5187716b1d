"""The optimizers a recipe names: Adam or AdamW, fused (one kernel for all parameters) where
torch has a kernel for the parameters' device."""

from collections.abc import Iterable

import torch
from torch import Tensor

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


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


def build_optimizer(name: str, params: Iterable[Tensor], lr: float, weight_decay: float,
                    fused: bool) -> torch.optim.Optimizer:
    """Adam or AdamW over ``params``; with ``fused``, the single-kernel implementation
    (``fused=True``) wherever :func:`fused_supported` says it exists, else torch's default."""
    check_optimizer(name)
    params = list(params)
    options = {"fused": True} if fused and fused_supported(params) else {}
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **options)


def check_optimizer(name: str) -> None:
    """Reject an optimizer name :func:`build_optimizer` does not know, naming the choices."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
