"""β-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"): the KL term of the
ELBO split into index-code mutual information, total correlation and dimension-wise KL, each
with its own weight::

    loss = recon + α·MI + β·TC + γ·dim-KL
    MI = log q(z|x) − log q(z),  TC = log q(z) − Σ_d log q(z_d),  dim-KL = Σ_d log q(z_d) − log p(z)

per example at the training draw z ~ q(z|x). The aggregate posterior q(z) = (1/N) Σₙ q(z|xₙ) and
its marginals q(z_d) are estimated from the minibatch (:func:`aggregate_log_densities`). β is the
β schedule's weight (``constant``, ``linear``, ``cyclical``), so warm-ups work as for the β-VAE.

The three terms add up to log q(z|x) − log p(z), the single-draw estimate of the KL; so with
α = β = γ = 1 the loss is the negative ELBO estimated with that draw instead of the closed-form
KL (equal in expectation). dim-KL is the sum of the marginal KLs only for a factorised prior
(the standard normal).

In a recipe::

    model:
      beta: 6
      objective: {name: tcvae, sampling: mss, dataset_size: 722280}

``dataset_size`` is the number of training images N (dSprites: 737 280 less ``val_size`` and
``test_size``; 722 280 with the defaults); minibatch-stratified sampling (``mss``) needs it.
"""

import math
from typing import Literal

import torch
from torch import Tensor

from lightning_vae.checks import is_int, is_real
from lightning_vae.model import VAEModel, VAEOutput
from lightning_vae.model.posterior import gaussian_log_density
from lightning_vae.objectives.base import Objective, register_objective
from lightning_vae.objectives.beta import BetaELBO

Sampling = Literal["mws", "mss"]


@register_objective("tcvae")
class TCVAE(Objective):
    """β-TCVAE around a β schedule: ``alpha`` weighs the index-code MI, the schedule's β the
    total correlation, ``gamma`` the dimension-wise KL (1, β, 1 in Chen et al.). ``sampling``
    estimates q(z) by minibatch-weighted (``"mws"``) or minibatch-stratified (``"mss"``,
    needs ``dataset_size``) sampling. Terms: ``recon``, ``kl`` (closed form), ``elbo``, ``mi``,
    ``tc``, ``dim_kl``."""

    def __init__(self, schedule: Objective, alpha: float = 1.0, gamma: float = 1.0,
                 sampling: Sampling = "mws", dataset_size: int | None = None) -> None:
        if not isinstance(schedule, BetaELBO):
            raise ValueError("objective 'tcvae' weighs the total correlation with the β of a "
                             "constant, linear or cyclical beta_schedule, got "
                             f"{type(schedule).__name__}; choose one of those schedules")
        for name, value in (("alpha", alpha), ("gamma", gamma)):
            if not is_real(value) or value < 0:
                raise ValueError(f"objective 'tcvae' needs {name} >= 0 (a number), got "
                                 f"{name}={value!r}")
        if sampling not in ("mws", "mss"):
            raise ValueError(f"objective 'tcvae' needs sampling 'mws' or 'mss', got {sampling!r}")
        if dataset_size is not None and not (is_int(dataset_size) and dataset_size >= 2):
            raise ValueError("objective 'tcvae' needs dataset_size >= 2 (the number of training "
                             f"images, an int), got dataset_size={dataset_size!r}")
        if sampling == "mss" and dataset_size is None:
            raise ValueError("objective 'tcvae' with sampling 'mss' needs dataset_size, the "
                             "number of training images: add dataset_size: N to its options")
        self.schedule, self.alpha, self.gamma = schedule, float(alpha), float(gamma)
        self.sampling, self.dataset_size = sampling, dataset_size

    def terms(self, model: VAEModel, x: Tensor, generator: torch.Generator | None = None
              ) -> tuple[VAEOutput, dict[str, Tensor]]:
        out, terms = model.elbo_terms(x, generator)
        log_qz, log_prod_qzd = aggregate_log_densities(out.z, out.posterior.mean,
                                                       out.posterior.logvar, self.sampling,
                                                       self.dataset_size)
        terms["mi"] = out.posterior.log_prob(out.z) - log_qz
        terms["tc"] = log_qz - log_prod_qzd
        terms["dim_kl"] = log_prod_qzd - model.prior.log_prob(out.z)
        return out, terms

    def weights(self, step: int) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.schedule.beta(step), "gamma": self.gamma}

    def loss(self, means: dict[str, Tensor], alpha: Tensor | float, beta: Tensor | float,
             gamma: Tensor | float) -> Tensor:
        return (means["recon"] + alpha * means["mi"] + beta * means["tc"]
                + gamma * means["dim_kl"])


def aggregate_log_densities(z: Tensor, mean: Tensor, logvar: Tensor, sampling: Sampling,
                            dataset_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Minibatch estimates of log q(zᵢ) and Σ_d log q(zᵢ_d), shape (B,) each, for the draws
    z (B, D) of the posteriors N(mean, exp(logvar)) of the batch's examples.

    q(z) = (1/N) Σₙ q(z|xₙ) is a mixture over the N training examples; its density at zᵢ is
    estimated as Σⱼ wᵢⱼ q(zᵢ|xⱼ) over the batch, and each marginal likewise:

    - ``"mws"`` (minibatch-weighted): wᵢⱼ = 1/B, the batch's average. Chen et al. write
      1/(N·B), which shifts every log density by −log N: the same gradients, but logged
      MI, TC and dim-KL off by constants (TC by (D − 1)·log N); the batch average estimates the
      quantities themselves.
    - ``"mss"`` (minibatch-stratified, Chen et al.'s appendix): the example's own posterior
      weighs 1/N (it is one of the N), the other B − 1 share the remaining (N − 1)/N equally,
      which is unbiased when they are drawn uniformly from the rest of the data.
      (disentanglement implementations copying Chen et al.'s ``_log_importance_weight_matrix``
      place these weights by column instead of on each row's own example.)
    """
    batch = len(z)
    log_q = gaussian_log_density(z[:, None], mean[None], logvar[None])  # (B, B, D): zᵢ, xⱼ
    if sampling == "mws":
        log_w = torch.full((batch, batch), -math.log(batch), dtype=z.dtype, device=z.device)
    else:
        if batch < 2 or dataset_size is None:
            raise ValueError("minibatch-stratified sampling needs dataset_size and batches of "
                             f"at least 2 examples, got dataset_size={dataset_size} and a batch "
                             f"of {batch}: use sampling 'mws' or a larger batch")
        log_w = stratified_log_weights(batch, dataset_size).to(z)
    log_qz = (log_w + log_q.sum(-1)).logsumexp(1)
    log_prod_qzd = (log_w[..., None] + log_q).logsumexp(1).sum(-1)
    return log_qz, log_prod_qzd


def stratified_log_weights(batch: int, dataset_size: int) -> Tensor:
    """The (B, B) log weights of minibatch-stratified sampling: row i weighs q(zᵢ|xⱼ), 1/N for
    j = i and (N − 1)/(N·(B − 1)) for each other j."""
    n = dataset_size
    weights = torch.full((batch, batch), (n - 1) / (n * (batch - 1)), dtype=torch.float64)
    weights.fill_diagonal_(1 / n)
    return weights.log()
