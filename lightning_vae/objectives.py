"""Training objectives: the β-weighted negative ELBO and the schedules that move β with training.

Every schedule reads the position in training from the trainer's ``global_step`` passed in by
the module (never from a counter of its own), so β follows a resumed run and does not move
during validation. Inputs are batch means in nats per example.

A schedule gives its weights at a step as Python numbers (:meth:`ConstantBeta.weights`) and
combines them with the ELBO terms in :meth:`ConstantBeta.loss`, which takes the weights as
numbers or as device tensors: a training pass replayed as a CUDA graph reads them from tensors
refilled before each replay (see :mod:`lightning_vae.cuda_graph`).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lightning_vae.checks import is_int, is_real
from lightning_vae.distributions import DiagonalGaussian, standard_normal_log_prob


@dataclass(frozen=True)
class ObjectiveValue:
    """The optimised loss and the weights that produced it, for logging."""

    loss: Tensor
    beta: float
    capacity: float | None = None


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


class ConstantBeta:
    """loss = recon + β·KL with a fixed β (β = 1 is the VAE of Kingma & Welling 2014;
    β > 1 the β-VAE of Higgins et al. 2017)."""

    def __init__(self, beta: float) -> None:
        if not is_real(beta) or beta < 0:
            raise ValueError(f"beta must be a number >= 0 (1: the plain VAE), got {beta!r}")
        self.beta_max = float(beta)

    def beta(self, step: int) -> float:
        return self.beta_max

    def weights(self, step: int) -> dict[str, float]:
        """The weights :meth:`loss` takes at ``step``, by name."""
        return {"beta": self.beta(step)}

    def loss(self, recon: Tensor, kl: Tensor, beta: Tensor | float) -> Tensor:
        return recon + beta * kl

    def __call__(self, recon: Tensor, kl: Tensor, step: int) -> ObjectiveValue:
        weights = self.weights(step)
        return ObjectiveValue(self.loss(recon, kl, **weights), **weights)


class LinearWarmup(ConstantBeta):
    """KL warm-up: β grows linearly from 0 to its final value over ``steps`` optimizer steps
    (Bowman et al. 2016; Sønderby et al. 2016)."""

    def __init__(self, beta: float, steps: int) -> None:
        super().__init__(beta)
        check_steps("linear", "steps", steps)
        self.steps = steps

    def beta(self, step: int) -> float:
        return self.beta_max * min(1.0, step / self.steps)


class CyclicalAnnealing(ConstantBeta):
    """Cyclical annealing (Fu et al. 2019): training is cut into cycles of ``cycle_steps``; in each,
    β rises linearly from 0 to its final value over the first ``ratio`` of the cycle and is then
    held. After ``cycles`` cycles (if given) β stays at its final value."""

    def __init__(self, beta: float, cycle_steps: int, ratio: float = 0.5,
                 cycles: int | None = None) -> None:
        super().__init__(beta)
        check_steps("cyclical", "cycle_steps", cycle_steps)
        check_option("cyclical", "ratio", ratio, is_real(ratio) and 0 < ratio <= 1,
                     "in (0, 1] (a number)")
        check_option("cyclical", "cycles", cycles,
                     cycles is None or (is_int(cycles) and cycles >= 1),
                     ">= 1 (an int), or null to cycle until training ends")
        self.cycle_steps, self.ratio, self.cycles = cycle_steps, ratio, cycles

    def beta(self, step: int) -> float:
        if self.cycles is not None and step >= self.cycles * self.cycle_steps:
            return self.beta_max
        position = (step % self.cycle_steps) / self.cycle_steps
        return self.beta_max * min(1.0, position / self.ratio)


class CapacityObjective(ConstantBeta):
    """Controlled capacity increase (Burgess et al. 2018): loss = recon + γ·|KL − C(t)|, with the
    target capacity C(t) growing linearly from 0 to ``capacity_max`` nats over ``steps``.
    Here γ is the module's ``beta``."""

    def __init__(self, beta: float, capacity_max: float, steps: int) -> None:
        super().__init__(beta)
        check_option("capacity", "capacity_max", capacity_max,
                     is_real(capacity_max) and capacity_max >= 0, ">= 0 (a finite number of nats)")
        check_steps("capacity", "steps", steps)
        self.capacity_max, self.steps = capacity_max, steps

    def capacity(self, step: int) -> float:
        return self.capacity_max * min(1.0, step / self.steps)

    def weights(self, step: int) -> dict[str, float]:
        return {"beta": self.beta_max, "capacity": self.capacity(step)}

    def loss(self, recon: Tensor, kl: Tensor, beta: Tensor | float,
             capacity: Tensor | float) -> Tensor:
        return recon + beta * (kl - capacity).abs()


SCHEDULES: dict[str, Callable[..., ConstantBeta]] = {
    "constant": ConstantBeta,
    "linear": LinearWarmup,
    "cyclical": CyclicalAnnealing,
    "capacity": CapacityObjective,
}


def build_schedule(beta: float, spec: str | dict[str, Any]) -> ConstantBeta:
    """The schedule named by ``spec``: a name, or a dict with ``name`` and the schedule's options,
    e.g. ``{"name": "linear", "steps": 5000}``."""
    if not isinstance(spec, (str, dict)):
        raise ValueError(f"beta_schedule must be a name or a dict with a name, got {spec!r}, "
                         'e.g. "constant" or {"name": "linear", "steps": 5000}')
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = options.pop("name", None)
    if not isinstance(name, str) or name not in SCHEDULES:
        raise ValueError(
            f"unknown beta_schedule {name!r}; choose one of {sorted(SCHEDULES)}, e.g. "
            '{"name": "linear", "steps": 5000}'
        )
    try:
        return SCHEDULES[name](beta, **options)
    except TypeError as error:
        raise ValueError(f"bad options {options} for beta_schedule {name!r}: {error}") from None


def importance_weighted_bound(x: Tensor, posterior: DiagonalGaussian,
                              likelihood: Callable[[Tensor], Any], num_samples: int,
                              chunk_size: int | None = None,
                              generator: torch.Generator | None = None) -> Tensor:
    """The importance-weighted bound of Burda et al. 2016, log p̂_k(x) per example, shape (B,).

    log p̂_k(x) = log (1/k) Σᵢ p(x|zᵢ) p(zᵢ) / q(zᵢ|x) with zᵢ ~ q(z|x) independently, in
    nats. It is the ELBO at k = 1 and rises towards log p(x) as k grows (in expectation), so
    at large k it estimates the test log-likelihood. ``likelihood`` maps latents (N, D) to
    p(x|z) with ``log_prob(x)`` of shape (N,), as ``VAE.likelihood`` does.

    The k samples are decoded ``chunk_size`` at a time (all at once if None) and combined with
    a running logsumexp, so memory holds chunk_size × B decoded images whatever k is. The
    noise is drawn one sample (B, D) at a time from ``generator`` (the global generator if
    None), so the chunk size does not change the draws nor the result.
    """
    if num_samples < 1:
        raise ValueError(f"the importance-weighted bound needs num_samples >= 1, got {num_samples}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1 (or None for one chunk), got {chunk_size}")
    chunk_size = chunk_size or num_samples
    mean, std = posterior.mean, posterior.std
    log_total_weight = mean.new_full(mean.shape[:1], -math.inf)
    for start in range(0, num_samples, chunk_size):
        eps = torch.stack([
            torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            for _ in range(min(chunk_size, num_samples - start))
        ])
        z = mean + std * eps  # (c, B, D)
        x_repeated = x.expand(len(z), *x.shape).flatten(0, 1)
        log_px_z = likelihood(z.flatten(0, 1)).log_prob(x_repeated).view(z.shape[:2])
        log_weight = log_px_z + standard_normal_log_prob(z) - posterior.log_prob(z)
        log_total_weight = torch.logaddexp(log_total_weight, log_weight.logsumexp(0))
    return log_total_weight - math.log(num_samples)
