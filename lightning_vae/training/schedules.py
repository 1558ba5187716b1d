"""Learning-rate schedules a recipe names in ``lr_schedule``, stepped after every optimizer step.

``{"name": "cosine", "warmup_steps": N}``: the learning rate rises linearly over the first N
steps (from lr/N at the first), then follows half a cosine down to ``min_lr_ratio`` × lr at the
last step of training (Loshchilov & Hutter 2017 without restarts; the warm-up of Goyal et al.
2017). The number of steps is the trainer's ``estimated_stepping_batches`` unless
``total_steps`` is given.
"""

import math
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from lightning_vae.checks import is_int, is_real

LR_SCHEDULES = ("cosine",)
EXAMPLE = '{"name": "cosine", "warmup_steps": 500}'


def check_lr_schedule(spec: object) -> dict[str, Any] | None:
    """``spec`` (null, "cosine" or a dict of the name and options) as checked options, or None;
    a bad name or option is refused naming it."""
    if spec is None:
        return None
    options = {"name": spec} if isinstance(spec, str) else spec
    if not isinstance(options, dict) or options.get("name") not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {spec!r}; choose null or one of {LR_SCHEDULES}, "
                         f"e.g. {EXAMPLE}")
    options = {"warmup_steps": 0, "min_lr_ratio": 0.0, "total_steps": None, **options}
    unknown = set(options) - {"name", "warmup_steps", "min_lr_ratio", "total_steps"}
    if unknown:
        raise ValueError(f"lr_schedule 'cosine' has no option {sorted(unknown)}; its options are "
                         "warmup_steps, min_lr_ratio and total_steps")
    checks = {
        "warmup_steps": (is_int(options["warmup_steps"]) and options["warmup_steps"] >= 0,
                         ">= 0 (an int)"),
        "min_lr_ratio": (is_real(options["min_lr_ratio"]) and 0 <= options["min_lr_ratio"] <= 1,
                         "in [0, 1]"),
        "total_steps": (options["total_steps"] is None
                        or (is_int(options["total_steps"]) and options["total_steps"] >= 1),
                        ">= 1 (an int), or null for the trainer's estimate"),
    }
    for option, (valid, expected) in checks.items():
        if not valid:
            raise ValueError(f"lr_schedule 'cosine' needs {option} {expected}, got "
                             f"{option}={options[option]!r}")
    return options


def cosine_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """The multiple of the base learning rate at optimizer step ``step`` (0 = the first)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_lr_schedule(spec: object, optimizer: torch.optim.Optimizer,
                      estimated_steps: float) -> LambdaLR:
    """The scheduler of ``spec`` over ``optimizer``, for a run of ``estimated_steps`` optimizer
    steps (the trainer's ``estimated_stepping_batches``) unless the spec gives ``total_steps``."""
    options = check_lr_schedule(spec)
    total = options["total_steps"]
    if total is None:
        if not math.isfinite(estimated_steps):
            raise ValueError("lr_schedule 'cosine' needs the length of training: set "
                             "trainer.max_steps or trainer.max_epochs, or the schedule's "
                             "total_steps")
        total = int(estimated_steps)
    warmup, floor = options["warmup_steps"], options["min_lr_ratio"]
    return LambdaLR(optimizer, lambda step: cosine_factor(step, warmup, total, floor))
