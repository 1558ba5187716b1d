"""The β-weighted negative ELBO, loss = recon + β(step)·KL, with β constant (β = 1 is the VAE of
Kingma & Welling 2014; β > 1 the β-VAE of Higgins et al. 2017), warmed up linearly, or annealed
in cycles. Each takes ``free_bits`` (Kingma et al. 2016): a floor λ, in nats, on the batch-mean KL
of every latent dimension in the loss."""

import torch
from torch import Tensor

from lightning_vae.checks import is_int, is_real
from lightning_vae.model import StandardNormal, VAEModel, VAEOutput
from lightning_vae.objectives.base import (
    BETA_SCHEDULES,
    Objective,
    check_beta,
    check_option,
    check_steps,
    register_beta_schedule,
)


@register_beta_schedule("constant")
class BetaELBO(Objective):
    """loss = recon + β·KL with a fixed β; the schedules below vary β with the step.

    With ``free_bits`` λ > 0 the loss takes KL_fb = Σⱼ max(λ, mean over the batch of KLⱼ) in
    place of the KL (the term ``kl_free_bits``, logged beside the true ``kl``): a dimension
    whose KL is under λ costs λ and gets no gradient to close it, which keeps latents of deep
    or strongly decoded models from collapsing early. It needs the closed-form KL per dimension
    (the standard_normal prior)."""

    def __init__(self, beta: float, free_bits: float = 0.0) -> None:
        self.beta_max = check_beta(beta)
        name = next((key for key, cls in BETA_SCHEDULES.items() if cls is type(self)),
                    type(self).__name__)
        check_option(name, "free_bits", free_bits,
                     is_real(free_bits) and free_bits >= 0, ">= 0 (nats per latent dimension)")
        self.free_bits = float(free_bits)

    def terms(self, model: VAEModel, x: Tensor, generator: torch.Generator | None = None
              ) -> tuple[VAEOutput, dict[str, Tensor]]:
        out, terms = model.elbo_terms(x, generator)
        if self.free_bits:
            if not isinstance(model.prior, StandardNormal):
                raise ValueError(
                    f"free_bits needs the closed-form KL per latent dimension of the "
                    f"standard_normal prior; this model's prior is {model.config['prior']!r}: "
                    "remove free_bits or use prior standard_normal")
            terms["kl_free_bits"] = free_bits_kl(out.posterior.kl_per_dim(), self.free_bits)
        return out, terms

    def beta(self, step: int) -> float:
        return self.beta_max

    def weights(self, step: int) -> dict[str, float]:
        return {"beta": self.beta(step)}

    def loss(self, means: dict[str, Tensor], beta: Tensor | float) -> Tensor:
        return means["recon"] + beta * means["kl_free_bits" if self.free_bits else "kl"]


@register_beta_schedule("linear")
class LinearWarmup(BetaELBO):
    """KL warm-up: β grows linearly from 0 to its final value over ``steps`` optimizer steps
    (Bowman et al. 2016; Sønderby et al. 2016)."""

    def __init__(self, beta: float, steps: int, free_bits: float = 0.0) -> None:
        super().__init__(beta, free_bits)
        check_steps("linear", "steps", steps)
        self.steps = steps

    def beta(self, step: int) -> float:
        return self.beta_max * min(1.0, step / self.steps)


@register_beta_schedule("cyclical")
class CyclicalAnnealing(BetaELBO):
    """Cyclical annealing (Fu et al. 2019): training is cut into cycles of ``cycle_steps``; in each,
    β rises linearly from 0 to its final value over the first ``ratio`` of the cycle and is then
    held. After ``cycles`` cycles (if given) β stays at its final value."""

    def __init__(self, beta: float, cycle_steps: int, ratio: float = 0.5,
                 cycles: int | None = None, free_bits: float = 0.0) -> None:
        super().__init__(beta, free_bits)
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


def free_bits_kl(kl_per_dim: Tensor, floor: float) -> Tensor:
    """Per-example KL (B,) whose batch mean is Σⱼ max(floor, mean over the batch of KLⱼ):
    dimensions whose batch-mean KL is under ``floor`` count ``floor`` for every example (no
    gradient), the others their own KL. ``kl_per_dim`` is (B, D), in nats."""
    above = kl_per_dim.detach().mean(0) >= floor
    return torch.where(above, kl_per_dim, torch.full_like(kl_per_dim, floor)).sum(-1)
