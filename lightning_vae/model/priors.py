"""Priors p(z), each a small registered ``nn.Module`` (a learned prior owns parameters), named in
a model's config by its registry key, or by a dict of the key and its options
(``{"name": "vamp", "components": 500}``). A prior gives the density of latents, draws from
itself, and the KL of a posterior to itself (in closed form where one exists, else by Monte
Carlo from the posterior's draw)."""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lightning_vae.checks import is_int
from lightning_vae.model.posterior import DiagonalGaussian, standard_normal_log_prob

_CHUNK_VALUES = 1 << 24
"""Points × components × latents held at once by :meth:`VampPrior.log_prob` (64 MiB)."""

PRIORS: dict[str, Callable[..., nn.Module]] = {}
"""Prior name → constructor taking the latent size and the prior's options (and, for a class
with ``uses_encoder = True``, the model's ``posterior`` and ``image_shape``)."""


def register_prior(name: str) -> Callable[[type], type]:
    """Class decorator: make a prior buildable by ``name`` from a model's config."""
    def register(cls: type) -> type:
        PRIORS[name] = cls
        return cls
    return register


@register_prior("standard_normal")
class StandardNormal(nn.Module):
    """p(z) = N(0, I), the prior of Kingma & Welling 2014; the KL to it has a closed form."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) summed over latent dimensions; z may carry leading sample dimensions."""
        return standard_normal_log_prob(z)

    def sample(self, n: int, *, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents (n, latent_dim) drawn from ``generator``."""
        return torch.randn(n, self.latent_dim, device=device, dtype=dtype, generator=generator)

    def kl(self, posterior: DiagonalGaussian, z: Tensor | None = None) -> Tensor:
        """KL(q(z|x) ‖ p(z)) per example, in closed form (``z``, a posterior draw, is unused:
        priors without a closed form estimate the KL from it)."""
        return posterior.kl()


@register_prior("vamp")
class VampPrior(nn.Module):
    """The VampPrior (Tomczak & Welling 2018): p(z) = 1/K Σₖ q(z|uₖ), the mixture of the
    model's own posteriors at K learned pseudo-inputs uₖ (``components``), images of the model's
    ``image_shape``. As in the paper, the encoder sees the pseudo-inputs through a hardtanh onto
    [0, 1], the data's range (the paper's code maps a one-hot input through a linear layer and
    that hardtanh, the same thing as a free parameter clamped), so no component comes from an
    image unlike any the encoder is trained on. ``pseudo_inputs`` is that free parameter,
    initialised uniformly in [0, 1], or from N(``init_mean``, ``init_std``²) when ``init_mean``
    is given (the paper's MNIST setting is 0.05 and 0.01: near-blank images, whose posteriors
    start close together, so no component starts far out where no data lies).

    The posterior is the model's ``posterior`` method, held as a plain attribute, not a
    submodule: the encoder's weights are saved once, under the model's ``encoder.``, and the
    prior's state is only ``pseudo_inputs``. The KL has no closed form: :meth:`kl` estimates it
    from the posterior's draw z as log q(z|x) − log p(z). The density is computed in float32
    whatever the autocast setting, so training under bf16 and testing in float32 see one prior.
    """

    uses_encoder = True

    def __init__(self, latent_dim: int, *, posterior: Callable[[Tensor], DiagonalGaussian],
                 image_shape: tuple[int, int, int], components: int = 500,
                 init_mean: float | None = None, init_std: float = 0.01) -> None:
        super().__init__()
        if not is_int(components) or components < 1:
            raise ValueError(f"prior 'vamp' needs components >= 1 (an int, the number of "
                             f"pseudo-inputs), got components={components!r}")
        if not (isinstance(init_std, (int, float)) and init_std > 0):
            raise ValueError(f"prior 'vamp' needs init_std > 0 (the spread of the pseudo-inputs' "
                             f"initial pixels), got init_std={init_std!r}")
        self.latent_dim = latent_dim
        shape = (components, *image_shape)
        self.pseudo_inputs = nn.Parameter(
            torch.rand(shape) if init_mean is None
            else torch.normal(float(init_mean), float(init_std), shape))
        self.posterior_of = posterior

    def pseudo_images(self) -> Tensor:
        """The pseudo-inputs the encoder sees, (K, *image_shape): ``pseudo_inputs`` clamped to
        [0, 1] by a hardtanh (whose gradient stops a pixel that leaves the range)."""
        return nn.functional.hardtanh(self.pseudo_inputs, 0.0, 1.0)

    def mixture(self) -> DiagonalGaussian:
        """The K components q(z|uₖ): mean and log-variance (K, latent_dim), float32. The encoder
        runs with autocast off: under bf16 its rounding would move every component."""
        with torch.autocast(self.pseudo_inputs.device.type, enabled=False):
            return self.posterior_of(self.pseudo_images())

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) = logsumexp over k of log q(z|uₖ), minus log K, in float32; z may carry
        leading sample dimensions. The squared distances are taken from the differences z − μₖ,
        never expanded into z² − 2zμₖ + μₖ² by matrix products: with precisions up to e³⁰ that
        form cancels catastrophically (and bf16 autocast rounds its products), giving densities
        far above any true one, which training then exploits. Points go in chunks, so memory
        without gradients holds at most about 2²⁴ values whatever the number of points (with
        gradients the backward pass keeps points × K × latent_dim of them)."""
        q = self.mixture()
        mean, precision = q.mean, torch.exp(-q.logvar)
        normaliser = z.shape[-1] * math.log(2 * math.pi) + q.logvar.sum(-1)  # (K,)
        points = z.reshape(-1, z.shape[-1]).float()
        chunk = max(1, _CHUNK_VALUES // mean.numel())
        log_p = torch.cat([
            (-0.5 * (normaliser + ((part[:, None] - mean).pow(2) * precision).sum(-1)))
            .logsumexp(-1) for part in points.split(chunk)])
        return (log_p - math.log(len(mean))).view(z.shape[:-1])

    def sample(self, n: int, *, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents (n, latent_dim): a component drawn uniformly, then z ~ q(z|uₖ), all
        from ``generator``."""
        q = self.mixture()
        which = torch.randint(len(q.mean), (n,), device=device, generator=generator)
        eps = torch.randn(n, self.latent_dim, device=device, dtype=q.mean.dtype,
                          generator=generator)
        return (q.mean[which] + q.std[which] * eps).to(dtype or q.mean.dtype)

    def kl(self, posterior: DiagonalGaussian, z: Tensor | None = None) -> Tensor:
        """KL(q(z|x) ‖ p(z)) per example, estimated from the posterior draw ``z`` as
        log q(z|x) − log p(z) (unbiased; one draw)."""
        if z is None:
            raise ValueError("the VampPrior's KL has no closed form: pass the posterior draw z "
                             "to estimate it from (prior.kl(posterior, z))")
        return posterior.log_prob(z) - self.log_prob(z)


def build_prior(spec: str | dict[str, Any], latent_dim: int,
                posterior: Callable[[Tensor], DiagonalGaussian] | None = None,
                image_shape: tuple[int, int, int] | None = None) -> nn.Module:
    """The prior a model's config names: a registered name, or a dict of ``name`` and the
    prior's options. ``posterior`` and ``image_shape`` are the model's, for a prior built from
    its encoder (``uses_encoder``)."""
    options = dict(spec) if isinstance(spec, dict) else {"name": spec}
    name = options.pop("name", None)
    if not isinstance(name, str) or name not in PRIORS:  # a list or dict is not hashable
        raise ValueError(f"unknown prior {spec if isinstance(spec, str) else name!r}; choose one "
                         f"of {sorted(PRIORS)} (a name, or a dict such as "
                         '{"name": "vamp", "components": 500})')
    cls = PRIORS[name]
    if getattr(cls, "uses_encoder", False):
        options |= {"posterior": posterior, "image_shape": image_shape}
    try:
        return cls(latent_dim, **options)
    except TypeError as error:
        raise ValueError(f"bad options {spec} for prior {name!r}: {error}") from None
