"""What every training objective shares: the registry that builds one from a recipe's
``beta`` and ``beta_schedule``, and the checks of its options.

An objective has two parts. :meth:`Objective.terms` makes the per-example terms of a batch from
the model (the ELBO's ``recon``, ``kl`` and ``elbo`` by default; an importance-weighted or
total-correlation objective adds its own), every one of which the training module logs; and
:meth:`Objective.loss` maps their batch means and the weights at an optimizer step (β, a
capacity, ...) to the loss. The weights are a function of
the step alone, taken from the trainer's ``global_step``, so they follow a resumed run and do
not move during validation; the training module passes them as device tensors (refilled, not
rebuilt, when a CUDA graph replays the step).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lightning_vae.checks import is_real
from lightning_vae.model import VAEModel, VAEOutput


class Objective:
    """The terms of a batch, and its loss from their batch means and the weights at a step."""

    def terms(self, model: VAEModel, x: Tensor, generator: torch.Generator | None = None
              ) -> tuple[VAEOutput, dict[str, Tensor]]:
        """The model's pass on a prepared batch and its per-example terms (shape (B,) each, in
        nats), which :meth:`loss` combines: the ELBO's ``recon``, ``kl`` and ``elbo`` here."""
        return model.elbo_terms(x, generator)

    def weights(self, step: int) -> dict[str, float]:
        """The weights :meth:`loss` takes at optimizer step ``step``, by name."""
        raise NotImplementedError

    def loss(self, means: dict[str, Tensor], **weights: Tensor | float) -> Tensor:
        """The loss to minimise, from the batch means of :meth:`terms`."""
        raise NotImplementedError


BETA_SCHEDULES: dict[str, Callable[..., Objective]] = {}
"""``beta_schedule`` name → the β-weighted ELBO with that schedule, built as
``cls(beta, **options)``."""

OBJECTIVES: dict[str, Callable[..., Objective]] = {}
"""``objective`` name → objective built as ``cls(schedule, **options)`` around the β schedule (an
objective of its own, the β-weighted ELBO, whose ``weights`` it may use)."""


def register_beta_schedule(name: str) -> Callable[[type], type]:
    """Class decorator: make a β schedule buildable from a recipe's ``beta_schedule: name``."""
    def register(cls: type) -> type:
        BETA_SCHEDULES[name] = cls
        return cls
    return register


def register_objective(name: str) -> Callable[[type], type]:
    """Class decorator: make an objective buildable from a recipe's ``objective: name``; it is
    built as ``cls(schedule, **options)`` with the β schedule the recipe chose."""
    def register(cls: type) -> type:
        OBJECTIVES[name] = cls
        return cls
    return register


register_objective("elbo")(lambda schedule: schedule)  # the β-weighted ELBO is the schedule's own


def build_objective(beta: float, beta_schedule: str | dict[str, Any] = "constant",
                    objective: str | dict[str, Any] = "elbo") -> Objective:
    """The ``objective`` (a name, or a dict with ``name`` and its options, e.g.
    ``{"name": "iwae", "samples": 5}``) around the β schedule ``beta_schedule`` (likewise, e.g.
    ``{"name": "linear", "steps": 5000}``) with the KL weight ``beta``."""
    name, options = named_options("beta_schedule", beta_schedule, BETA_SCHEDULES,
                                  '{"name": "linear", "steps": 5000}')
    try:
        schedule = BETA_SCHEDULES[name](beta, **options)
    except TypeError as error:
        raise ValueError(f"bad options {options} for beta_schedule {name!r}: {error}") from None
    name, options = named_options("objective", objective, OBJECTIVES,
                                  '{"name": "iwae", "samples": 5}')
    try:
        return OBJECTIVES[name](schedule, **options)
    except TypeError as error:
        raise ValueError(f"bad options {options} for objective {name!r}: {error}") from None


def named_options(kind: str, spec: object, registry: dict[str, Any], example: str
                  ) -> tuple[str, dict[str, Any]]:
    """A recipe's ``name`` or ``{"name": ..., **options}`` for the ``kind`` registry, checked."""
    if not isinstance(spec, (str, dict)):
        raise ValueError(f"{kind} must be a name or a dict with a name, got {spec!r}, e.g. "
                         f'"{next(iter(registry))}" or {example}')
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = options.pop("name", None)
    if not isinstance(name, str) or name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(registry)}, e.g. "
                         f"{example}")
    return name, options


def check_beta(beta: object) -> float:
    """``beta`` as a float, refused unless it is a finite number >= 0."""
    if not is_real(beta) or beta < 0:
        raise ValueError(f"beta must be a number >= 0 (1: the plain VAE), got {beta!r}")
    return float(beta)


def check_option(schedule: str, option: str, value: object, valid: bool, expected: str) -> None:
    """Refuse a β schedule's option that is not ``valid``, naming the schedule, the option, its
    value and what it must be (``expected``)."""
    if not valid:
        raise ValueError(f"beta_schedule {schedule!r} needs {option} {expected}, got "
                         f"{option}={value!r}")


def check_steps(schedule: str, option: str, value: object) -> None:
    """Refuse a schedule length (optimizer steps) that is not a finite number >= 1. A float
    such as 1e3 works (schedules divide by it) and earlier versions saved such configs."""
    check_option(schedule, option, value, is_real(value) and value >= 1, ">= 1 (a number)")
