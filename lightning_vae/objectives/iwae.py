"""The importance-weighted autoencoder (IWAE, Burda et al. 2016): train on the k-sample bound
log p̂_k(x) = log (1/k) Σᵢ wᵢ, wᵢ = p(x, zᵢ) / q(zᵢ|x), zᵢ ~ q(z|x), which is the ELBO at k = 1
and tightens towards log p(x) as k grows; optionally with the doubly-reparameterized encoder
gradient (DReG, Tucker et al. 2019).

DReG, as implemented here. With normalised weights w̃ᵢ = wᵢ / Σⱼ wⱼ, the IWAE gradient is
Σᵢ w̃ᵢ ∇ log wᵢ. For the decoder and prior (θ) that is kept. For the encoder (φ), whose
gradient also carries the score term −∇φ log q (high variance, and vanishing signal as k grows),
Tucker et al. show the same expectation is Σᵢ w̃ᵢ² ∂log wᵢ/∂zᵢ · ∂zᵢ/∂φ with log q's parameters
held fixed. One surrogate gives both: S = Σᵢ sg(w̃ᵢ) log wᵢ, with log q evaluated on detached
parameters (``stop_posterior_gradient``), has θ-gradient Σᵢ w̃ᵢ ∇θ log wᵢ and sends
w̃ᵢ ∂log wᵢ/∂zᵢ back into each draw zᵢ, the only path to φ; a gradient hook on the draws
multiplies that by w̃ᵢ once more, giving w̃ᵢ². The term ``bound`` is
sg(log p̂_k) + S − sg(S): its value is the bound, its gradient the DReG estimator. (A learned
prior that reads the encoder, the VampPrior, gets its direct gradient with weight w̃ᵢ, like θ.)
The hook sits on the pass's ``z``: it covers models with one stochastic layer.
"""

import math

import torch
from torch import Tensor

from lightning_vae.checks import check_bool, is_int
from lightning_vae.model import VAEModel, VAEOutput
from lightning_vae.objectives.base import Objective, register_objective
from lightning_vae.objectives.beta import BetaELBO


@register_objective("iwae")
class IWAE(Objective):
    """loss = −log p̂_k(x), batch mean, from ``samples`` (k) draws per example; ``dreg`` uses
    the doubly-reparameterized encoder gradient (with k = 1: the "sticking the landing"
    gradient of Roeder et al. 2017).

    Terms (per example, nats): ``bound`` (log p̂_k(x)), and from the same k draws ``elbo``
    (the mean of the log weights), ``recon`` (−log p(x|zᵢ)) and ``kl`` (log q(zᵢ|x) − log p(zᵢ)),
    both averaged over the draws, so elbo = −recon − kl. At k = 1 without DReG the objective
    is the ELBO itself (closed-form KL where the prior has one: the same expectation with less
    variance) and ``bound`` equals ``elbo``.

    The bound has no KL weight: it needs the recipe's ``beta`` 1 and ``beta_schedule``
    constant.
    """

    def __init__(self, schedule: Objective, samples: int = 5, dreg: bool = False) -> None:
        if type(schedule) is not BetaELBO or schedule.beta_max != 1.0 or schedule.free_bits:
            raise ValueError(
                "objective 'iwae' optimises the importance-weighted bound on log p(x), which has "
                "no KL weight: set beta 1 and beta_schedule constant without free_bits (got "
                f"beta={getattr(schedule, 'beta_max', getattr(schedule, 'gamma', None))!r}, "
                f"beta_schedule {type(schedule).__name__})")
        if not is_int(samples) or samples < 1:
            raise ValueError(f"objective 'iwae' needs samples >= 1 (an int, k of the bound), "
                             f"got samples={samples!r}")
        check_bool("dreg", dreg)
        self.samples, self.dreg = samples, dreg

    def terms(self, model: VAEModel, x: Tensor, generator: torch.Generator | None = None
              ) -> tuple[VAEOutput, dict[str, Tensor]]:
        if self.samples == 1 and not self.dreg:
            out, terms = model.elbo_terms(x, generator)
            return out, {**terms, "bound": terms["elbo"]}
        out, parts = model.log_weight_terms(x, self.samples, generator,
                                            stop_posterior_gradient=self.dreg)
        if self.dreg and len(out.layer_posteriors) > 1:
            raise ValueError(f"objective 'iwae' with dreg true covers models with one stochastic "
                             f"layer (its gradient hook sits on the top draws); this one has "
                             f"{len(out.layer_posteriors)}: set dreg false")
        log_w = -(parts["recon"] + parts["kl"])  # (k, B)
        if self.dreg:
            bound = dreg_bound(log_w, out.z)
        else:
            bound = log_w.logsumexp(0) - math.log(self.samples)
        return out, {"recon": parts["recon"].mean(0), "kl": parts["kl"].mean(0),
                     "elbo": log_w.mean(0), "bound": bound}

    def weights(self, step: int) -> dict[str, float]:
        return {}

    def loss(self, means: dict[str, Tensor]) -> Tensor:
        return -means["bound"]


def dreg_bound(log_w: Tensor, draws: Tensor) -> Tensor:
    """log p̂_k(x) per example whose gradient is the DReG estimator (see the module's
    docstring): ``log_w`` (k, B) computed with q's parameters detached, ``draws`` (k, B, D) the
    zᵢ it was computed from."""
    normalised = log_w.detach().softmax(0)  # w̃ᵢ
    if draws.requires_grad:
        draws.register_hook(lambda grad: grad * normalised.unsqueeze(-1))
    surrogate = (normalised * log_w).sum(0)
    bound = log_w.detach().logsumexp(0) - math.log(log_w.shape[0])
    return bound + (surrogate - surrogate.detach())
