"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising"): the β-weighted ELBO plus γ times
the total correlation of q(z), estimated by a discriminator that tells draws of q(z) from draws
of the product of its marginals::

    loss = recon + β·KL + γ·TC,   TC ≈ log D(z) / (1 − D(z)) = the discriminator's logit at z

The discriminator, an MLP on z, is trained at the same step by its own optimizer, on the batch's
draws z (label 1) against the same draws with each dimension shuffled across the batch (label 0;
the "permute-dims" of the paper), each detached from the VAE. The VAE's loss reaches the
discriminator's input but not its parameters, and the discriminator's loss does not reach the
VAE, so one backward pass gives both their gradients (and, under DDP, one all-reduce of each).
The training module (:class:`~lightning_vae.training.module.VAE`) holds this objective as a
submodule, so its parameters are checkpointed, moved and synchronised with the model's; it
steps them with a second optimizer (:attr:`FactorVAE.lr`) in manual optimization.

In a recipe::

    model:
      beta: 1
      objective: {name: factorvae, gamma: 35, hidden_dim: 1000, layers: 6, lr: 1e-4}

(the paper's dSprites settings: γ = 35, an MLP of 6 layers of 1000 units, Adam at 1e-4 with
β₁ = 0.5, β₂ = 0.9).
"""

from itertools import pairwise

import torch
from torch import Tensor, nn
from torch.func import functional_call

from lightning_vae.checks import check_number, is_real
from lightning_vae.model import VAEModel, VAEOutput
from lightning_vae.objectives.base import Objective, register_objective
from lightning_vae.objectives.beta import BetaELBO


@register_objective("factorvae")
class FactorVAE(nn.Module, Objective):
    """FactorVAE around a β schedule: γ (``gamma``) weighs the discriminator's estimate of the
    total correlation; the discriminator is an MLP of ``layers`` layers of ``hidden_dim``
    units (LeakyReLU 0.2) trained by Adam at ``lr`` with betas ``adam_betas``. Terms: ``recon``,
    ``kl``, ``elbo``, ``tc`` (the estimate), ``disc_loss`` (its cross-entropy, nats per example,
    on the draw and its permuted counterpart) and ``disc_accuracy`` (of the two, the share it
    classifies right)."""

    adversarial = True
    """Tells the training module to build :meth:`discriminator_optimizer` and step it."""

    def __init__(self, schedule: Objective, gamma: float = 35.0, hidden_dim: int = 1000,
                 layers: int = 6, lr: float = 1e-4,
                 adam_betas: tuple[float, float] = (0.5, 0.9)) -> None:
        super().__init__()
        if not isinstance(schedule, BetaELBO):
            raise ValueError("objective 'factorvae' weighs the KL with the β of a constant, "
                             f"linear or cyclical beta_schedule, got {type(schedule).__name__}; "
                             "choose one of those schedules")
        if not is_real(gamma) or gamma < 0:
            raise ValueError(f"objective 'factorvae' needs gamma >= 0 (a number), got "
                             f"gamma={gamma!r}")
        check_number("factorvae hidden_dim", hidden_dim, minimum=1)
        check_number("factorvae layers", layers, minimum=1)
        if not is_real(lr) or lr <= 0:
            raise ValueError(f"objective 'factorvae' needs lr > 0 (a number), got lr={lr!r}")
        if (not isinstance(adam_betas, (list, tuple)) or len(adam_betas) != 2
                or not all(is_real(b) and 0 <= b < 1 for b in adam_betas)):
            raise ValueError("objective 'factorvae' needs adam_betas of two numbers in [0, 1), "
                             f"got {adam_betas!r}")
        self.schedule, self.gamma, self.lr = schedule, float(gamma), float(lr)
        self.adam_betas = tuple(float(b) for b in adam_betas)
        self.hidden_dim, self.layers = hidden_dim, layers
        self.discriminator: nn.Module | None = None  # built lazily: the latent size comes later

    def build(self, latent_dim: int) -> None:
        """Build the discriminator for latents of ``latent_dim`` dimensions (the training module
        calls it before the optimizers and the checkpoint need its parameters)."""
        sizes = [latent_dim] + [self.hidden_dim] * (self.layers - 1)
        blocks: list[nn.Module] = []
        for width_in, width_out in pairwise(sizes):
            blocks += [nn.Linear(width_in, width_out), nn.LeakyReLU(0.2)]
        self.discriminator = nn.Sequential(*blocks, nn.Linear(sizes[-1], 1))

    def discriminator_optimizer(self) -> torch.optim.Optimizer:
        """Adam over the discriminator's parameters, with its own ``lr`` and ``adam_betas``."""
        return torch.optim.Adam(self.parameters(), lr=self.lr, betas=self.adam_betas)

    def logits(self, z: Tensor, detach_weights: bool = False) -> Tensor:
        """The discriminator's logit log D/(1 − D) that z is a joint draw, shape (B,); with
        ``detach_weights`` gradients reach z but not the discriminator's parameters."""
        if self.discriminator is None:
            raise RuntimeError("FactorVAE.build(latent_dim) must run before the discriminator "
                               "is used; the training module VAE calls it")
        if not detach_weights:
            return self.discriminator(z).squeeze(-1)
        weights = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, weights, (z,)).squeeze(-1)

    def terms(self, model: VAEModel, x: Tensor, generator: torch.Generator | None = None
              ) -> tuple[VAEOutput, dict[str, Tensor]]:
        out, terms = model.elbo_terms(x, generator)
        return out, {**terms, **self.discriminate(out.z, generator)}

    def discriminate(self, z: Tensor, generator: torch.Generator | None = None
                     ) -> dict[str, Tensor]:
        """The discriminator's terms at the draws z (B, D), each (B,): ``tc`` (differentiable in
        z only), ``disc_loss`` and ``disc_accuracy`` (differentiable in the discriminator
        only), against z with its dimensions permuted across the batch (``generator``)."""
        z = z.to(self.discriminator[0].weight.dtype) if self.discriminator is not None else z
        joint = self.logits(z.detach())
        product = self.logits(permute_dims(z.detach(), generator))
        # cross-entropies: −log D(z) for the joint draw, −log(1 − D) for the permuted one
        softplus = nn.functional.softplus
        return {"tc": self.logits(z, detach_weights=True),
                "disc_loss": softplus(-joint) + softplus(product),
                "disc_accuracy": ((joint > 0).to(z.dtype) + (product < 0).to(z.dtype)) / 2}

    def weights(self, step: int) -> dict[str, float]:
        return {"beta": self.schedule.beta(step), "gamma": self.gamma}

    def loss(self, means: dict[str, Tensor], beta: Tensor | float,
             gamma: Tensor | float) -> Tensor:
        """The VAE's loss (the discriminator's is ``means["disc_loss"]``)."""
        return means["recon"] + beta * means["kl"] + gamma * means["tc"]


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z (B, D) with each dimension shuffled across the batch independently: draws of the
    product of the batch's marginals (Kim & Mnih 2018, algorithm 1)."""
    order = torch.rand(z.shape, device=z.device, generator=generator).argsort(0)
    return z.gather(0, order)
