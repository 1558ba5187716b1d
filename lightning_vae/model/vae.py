"""The VAE as a model: encoder → diagonal-Gaussian posterior → decoder → likelihood, with a prior.

Its constructor arguments describe the architecture and nothing else (no optimizer, objective,
compile or evaluation setting), so they are what a saved model's config.json holds
(:mod:`lightning_vae.hub.format`). Training lives in :mod:`lightning_vae.training`.
"""

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_vae.checks import check_number
from lightning_vae.hub.format import ModelFolderMixin
from lightning_vae.model.likelihoods import build_likelihood
from lightning_vae.model.nets import available_architectures, build_architecture
from lightning_vae.model.posterior import DiagonalGaussian
from lightning_vae.model.preprocess import (
    ImageInput,
    OutputType,
    Preprocessing,
    postprocess_images,
    preprocess_images,
)
from lightning_vae.model.priors import build_prior
from lightning_vae.model.validation import check_batch, check_parameter_count, check_sizes


@dataclass
class VAEOutput:
    """One pass through the model: the posterior, the latent drawn from it and p(x|z)."""

    posterior: DiagonalGaussian
    z: Tensor
    likelihood: Any

    @property
    def layer_posteriors(self) -> list[DiagonalGaussian]:
        """q of each stochastic layer, top first: the one posterior of this single-layer VAE."""
        return [self.posterior]


MODEL_CLASSES: dict[str, type["VAEModel"]] = {}
"""Architecture name → the VAEModel subclass that ``VAEModel(arch=name)`` builds (architectures
not named here build VAEModel itself)."""


def register_model_class(arch: str) -> Callable[[type["VAEModel"]], type["VAEModel"]]:
    """Class decorator: ``VAEModel(arch=arch, ...)`` (and so ``VAE`` and ``from_pretrained``)
    builds this subclass, for an architecture whose nets it drives in its own way."""
    def register(cls: type["VAEModel"]) -> type["VAEModel"]:
        MODEL_CLASSES[arch] = cls
        return cls
    return register


class VAEModel(nn.Module, ModelFolderMixin):
    """A variational autoencoder (Kingma & Welling 2014): ``encode``, ``decode``, ``sample``,
    ``reconstruct`` and ``elbo``; saved and loaded with ``save_pretrained`` /
    ``from_pretrained``.

    Losses are in nats per example: summed over pixels and latent dimensions. Random draws come
    from the ``generator`` passed (the device's default generator when None).

    Args:
        arch: a registered architecture name ("mlp", "conv", "ladder" (hierarchical:
            :mod:`lightning_vae.model.hierarchical`), or one you registered).
        image_shape: (channels, height, width) of the input images, pixel values in [0, 1].
        latent_dim: number of latent dimensions.
        arch_options: keyword options of the architecture (widths, activation, ...).
        likelihood: "bernoulli" (binary or [0, 1] images, from logits) or "gaussian".
        likelihood_options: e.g. ``{"sigma": 0.1, "learn_sigma": True}`` for "gaussian".
        prior: a registered prior name ("standard_normal", N(0, I)), or a dict of the name and
            its options, e.g. ``{"name": "vamp", "components": 500}`` (the VampPrior).
        preprocessing: how the training images were prepared beyond ``image_shape``: the
            datamodule's ``preprocessing`` property (``binarize``, ``crop_size``,
            ``input_size``; see :mod:`lightning_vae.model.preprocess`). :meth:`preprocess`
            applies it to new images; None means whole images, grey levels.

    ``VAEModel(arch=...)`` builds the subclass registered for the architecture, if any
    (:func:`register_model_class`: "ladder" builds
    :class:`~lightning_vae.model.hierarchical.HierarchicalVAE`).
    """

    validate_inputs: bool = True
    """Whether ``elbo`` checks its batch (:func:`~lightning_vae.model.validation.check_batch`):
    a runtime switch, not config; set it False to skip the one reduction it costs a batch."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "VAEModel":
        arch = kwargs.get("arch", args[0] if args else None)
        if cls is VAEModel and isinstance(arch, str) and arch in MODEL_CLASSES:
            cls = MODEL_CLASSES[arch]
        return super().__new__(cls, *args, **kwargs)

    def __init__(
        self,
        arch: str = "conv",
        image_shape: tuple[int, int, int] = (1, 28, 28),
        latent_dim: int = 32,
        arch_options: dict[str, Any] | None = None,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        likelihood_options: dict[str, Any] | None = None,
        prior: str | dict[str, Any] = "standard_normal",
        preprocessing: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(image_shape, (list, tuple)) or len(image_shape) != 3:
            raise ValueError(f"image_shape must be (channels, height, width), got {image_shape!r}")
        image_shape = tuple(image_shape)
        for axis, size in zip(("channels", "height", "width"), image_shape, strict=True):
            check_number(f"image_shape {axis}", size, minimum=1)
        check_number("latent_dim", latent_dim, minimum=1)
        check_sizes(image_shape, latent_dim)
        for name, value in (("arch_options", arch_options),
                            ("likelihood_options", likelihood_options),
                            ("preprocessing", preprocessing)):
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{name}={value!r}: expected a dict of options or null, got a "
                                f"{type(value).__name__}")
        builder = MODEL_CLASSES.get(arch, VAEModel) if isinstance(arch, str) else VAEModel
        owner = next((c for c in type(self).__mro__ if c in MODEL_CLASSES.values()), VAEModel)
        if owner is not builder:
            raise ValueError(f"{type(self).__name__} cannot build arch={arch!r}, which "
                             f"{builder.__name__} builds; construct VAEModel(arch={arch!r}, "
                             "...), which picks the class")
        self.config = json_config(
            arch=arch, image_shape=image_shape, latent_dim=latent_dim, arch_options=arch_options,
            likelihood=likelihood, likelihood_options=likelihood_options, prior=prior,
            preprocessing=preprocessing)
        self.image_shape = image_shape
        self.latent_dim = latent_dim
        self.preprocessing = Preprocessing.from_dict(preprocessing)
        self.encoder, self.decoder = build_architecture(
            arch, image_shape, latent_dim, out_channels=image_shape[0], options=arch_options)
        self.likelihood_head = build_likelihood(
            likelihood, image_shape[0], **(likelihood_options or {}))
        self.prior = build_prior(prior, latent_dim, self.posterior, image_shape)

    @classmethod
    def check_config(cls, config: dict[str, Any], path: Path) -> None:
        arch = config.get("arch", cls._hub_mixin_init_parameters["arch"].default)
        if arch not in available_architectures():
            raise ValueError(
                f"{path} names architecture {arch!r}, which is not registered here "
                f"(registered: {available_architectures()}); import the module that registers "
                "it (lightning_vae.register_architecture) before loading"
            )
        check_parameter_count(cls, config, path)

    @property
    def latent_sizes(self) -> list[int]:
        """Dimensions of each stochastic layer, top first (``[latent_dim]`` here)."""
        return [self.latent_dim]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def preprocess(self, images: ImageInput) -> Tensor:
        """Images of any size and kind (uint8 or float tensors and arrays, PIL images; one, a
        batch or a list) → the batch (B, *image_shape) this model was trained on, on its device
        (see :mod:`lightning_vae.model.preprocess`). A batch from its datamodule passes
        unchanged."""
        batch = preprocess_images(images, self.image_shape, self.preprocessing)
        return batch.to(device=self.device, dtype=self.dtype)

    def postprocess(self, images: Tensor, output_type: OutputType = "uint8") -> Tensor | list:
        """Decoder output in [0, 1] → uint8 (B, C, H, W) (``"uint8"``) or PIL images (``"pil"``)."""
        return postprocess_images(images, output_type)

    def posterior(self, x: Tensor) -> DiagonalGaussian:
        """q(z|x) for a prepared batch (B, *image_shape)."""
        params = self.encoder(x)
        if params.dtype in (torch.float16, torch.bfloat16):  # under autocast: KL sums in float32
            params = params.float()
        return DiagonalGaussian.from_params(params)

    def encode(self, images: ImageInput) -> DiagonalGaussian:
        """q(z|x) for images of any kind :meth:`preprocess` takes."""
        return self.posterior(self.preprocess(images))

    def likelihood(self, z: Tensor) -> Any:
        """p(x|z): a distribution over images with ``log_prob`` and ``mean``."""
        # The posterior is float32 even for float16/bfloat16 weights: feed the decoder its dtype.
        return self.likelihood_head(self.decoder(z.to(self.dtype)))

    def decode(self, z: Tensor) -> Tensor:
        """The expected image under p(x|z), in [0, 1]."""
        return self.likelihood(z).mean

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        """One pass on a prepared batch (B, *image_shape), as training sees it."""
        posterior = self.posterior(x)
        z = posterior.sample(generator=generator)
        return VAEOutput(posterior, z, self.likelihood(z))

    def elbo(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Per-example ``recon`` (−log p(x|z)), ``kl`` (KL(q(z|x) ‖ p(z))) and ``elbo``
        (= −recon − kl), in nats, from one posterior sample, for a prepared batch: finite, and
        in [0, 1] for a Bernoulli likelihood (refused otherwise, see ``validate_inputs``)."""
        return self.elbo_terms(x, generator)[1]

    def elbo_terms(self, x: Tensor, generator: torch.Generator | None = None
                   ) -> tuple[VAEOutput, dict[str, Tensor]]:
        """:meth:`elbo` and the pass behind it (for metrics of the posterior)."""
        if self.validate_inputs:
            check_batch(x, self.image_shape, self.likelihood_head)
        out = self(x, generator)
        recon = -out.likelihood.log_prob(x)
        kl = self.prior.kl(out.posterior, out.z)
        return out, {"recon": recon, "kl": kl, "elbo": -(recon + kl)}

    def log_weights(self, x: Tensor, num_samples: int, generator: torch.Generator | None = None,
                    posterior: DiagonalGaussian | None = None,
                    stop_posterior_gradient: bool = False) -> Tensor:
        """log p(x, zᵢ) − log q(zᵢ|x) for ``num_samples`` draws zᵢ ~ q(z|x) per example, shape
        (num_samples, B), in nats: the importance weights of Burda et al. 2016, whose mean is the
        ELBO and whose log-mean-exp is the importance-weighted bound. ``posterior`` is q(z|x) when
        already computed; ``stop_posterior_gradient`` evaluates log q with its parameters detached
        (the draws keep their reparameterised gradient), as the DReG estimator needs."""
        terms = self.log_weight_terms(x, num_samples, generator, posterior,
                                      stop_posterior_gradient)[1]
        return -(terms["recon"] + terms["kl"])

    def log_weight_terms(self, x: Tensor, num_samples: int,
                         generator: torch.Generator | None = None,
                         posterior: DiagonalGaussian | None = None,
                         stop_posterior_gradient: bool = False
                         ) -> tuple[VAEOutput, dict[str, Tensor]]:
        """The two parts of :meth:`log_weights` and the pass behind them: ``recon``
        (−log p(x|zᵢ)) and ``kl`` (log q(zᵢ|x) − log p(zᵢ), the one-draw KL estimate), shape
        (num_samples, B) each, in nats; the pass's ``z`` are the draws (num_samples, B, D), drawn
        one (B, D) at a time, so k draws taken in chunks are the same as k taken at once."""
        posterior = self.posterior(x) if posterior is None else posterior
        z = posterior.samples(num_samples, generator)  # (k, B, D)
        x_repeated = x.expand(num_samples, *x.shape).flatten(0, 1)
        likelihood = self.likelihood(z.flatten(0, 1))
        recon = -likelihood.log_prob(x_repeated).view(z.shape[:2])
        density = posterior.detached() if stop_posterior_gradient else posterior
        kl = density.log_prob(z) - self.prior.log_prob(z)
        return VAEOutput(posterior, z, likelihood), {"recon": recon, "kl": kl}

    def reconstruction(self, x: Tensor, posterior: DiagonalGaussian | None = None) -> Tensor:
        """The decoded posterior mode of a prepared batch, in [0, 1] (``posterior``: q(z|x)
        when already computed)."""
        return self.decode((self.posterior(x) if posterior is None else posterior).mode())

    @torch.no_grad()
    def reconstruct(self, images: ImageInput) -> Tensor:
        """Decode the posterior mode of each image: the deterministic reconstruction, in [0, 1]
        (images of any kind :meth:`preprocess` takes; :meth:`postprocess` makes it displayable).
        """
        return self.reconstruction(self.preprocess(images))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images decoded from prior draws z ~ p(z), shape (n, *image_shape)."""
        z = self.prior.sample(n, device=self.device, dtype=self.dtype, generator=generator)
        return self.decode(z)


# inspect.signature(VAEModel) would show __new__'s (*args, **kwargs): show the constructor's.
_INIT = inspect.signature(VAEModel.__init__)
VAEModel.__signature__ = _INIT.replace(parameters=list(_INIT.parameters.values())[1:],
                                       return_annotation=inspect.Signature.empty)


def json_config(**arguments: Any) -> dict[str, Any]:
    """Constructor arguments as the JSON values config.json holds (tuples become lists)."""
    try:
        return json.loads(json.dumps(arguments))
    except TypeError as error:
        raise TypeError(f"model arguments must be JSON values to be saved: {error}; pass plain "
                        "numbers, strings, lists and dicts") from None
