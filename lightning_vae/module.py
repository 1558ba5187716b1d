"""The VAE LightningModule: encoder → diagonal-Gaussian posterior → decoder → likelihood,
trained on the β-weighted negative ELBO and logging every ELBO term at every step."""

import os
from dataclasses import dataclass
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError

from lightning_vae.checks import check_bool, check_number, is_real
from lightning_vae.cuda_graph import GraphedTrainingPass, carry_optimizer_steps
from lightning_vae.distributions import DiagonalGaussian
from lightning_vae.hub_mixin import VAEHubMixin
from lightning_vae.likelihoods import build_likelihood
from lightning_vae.metrics import ActiveUnits, ImportanceWeightedNLL, KLPerDimension
from lightning_vae.nets import build_architecture
from lightning_vae.objectives import build_schedule
from lightning_vae.preprocess import (
    ImageInput,
    OutputType,
    Preprocessing,
    postprocess_images,
    preprocess_images,
)
from lightning_vae.seeding import noise_seed
from lightning_vae.speed import (
    COMPILE_MODES,
    CompileMode,
    build_optimizer,
    check_compile_mode,
    check_optimizer,
    compiled,
    device_scalar,
    per_step_progress_bar,
    progress_bar_refreshes,
    seed_device_generator,
    step_values_read,
    uses_cudagraphs,
)

ELBO_TERMS = ("loss", "recon", "kl", "elbo")
NOISE_STREAMS = {"train": 0, "val": 1, "test": 2}


@dataclass
class VAEOutput:
    """One pass through the model: the posterior, the latent drawn from it and p(x|z)."""

    posterior: DiagonalGaussian
    z: Tensor
    likelihood: Any


class Reparameterize(nn.Module):
    """The sampler: encoder output (B, 2D) → posterior q(z|x), drawn from as z = μ + σ·ε."""

    def forward(self, params: Tensor) -> DiagonalGaussian:
        if params.dtype in (torch.float16, torch.bfloat16):  # under autocast: KL sums in float32
            params = params.float()
        return DiagonalGaussian.from_params(params)


class VAE(pl.LightningModule, VAEHubMixin):
    """A variational autoencoder (Kingma & Welling 2014) with β-weighting (Higgins et al. 2017).

    Every constructor argument is JSON-serialisable, so a saved config rebuilds the model.
    Losses are in nats per example: summed over pixels and latent dimensions, averaged over
    the batch.

    Args:
        arch: a registered architecture name ("mlp", "conv", or one you registered).
        image_shape: (channels, height, width) of the input images, pixel values in [0, 1].
        latent_dim: number of latent dimensions.
        arch_options: keyword options of the architecture (widths, activation, ...).
        likelihood: "bernoulli" (binary or [0, 1] images, from logits) or "gaussian".
        likelihood_options: e.g. ``{"sigma": 0.1, "learn_sigma": True}`` for "gaussian".
        beta: weight of the KL term (γ for the capacity objective).
        beta_schedule: "constant" or a dict such as ``{"name": "linear", "steps": 5000}``,
            ``{"name": "cyclical", "cycle_steps": 5000, "ratio": 0.5}`` or
            ``{"name": "capacity", "capacity_max": 25, "steps": 100000}``.
        optimizer: "adam" or "adamw".
        lr: learning rate.
        weight_decay: decoupled (adamw) or L2 (adam) weight decay.
        iw_samples: k of the importance-weighted bound logged as ``test/nll_iw`` (0 turns it
            off). 5000 by default, the k of Burda et al. 2016 and the papers after it, so the
            number compares with published ones. It costs k decoder passes per test image:
            seconds per image on a CPU, so pass fewer (or 0) there.
        iw_chunk_size: samples per image decoded at once for ``test/nll_iw``: memory grows with
            iw_chunk_size × test batch size and not with k; lower it if testing runs out of memory.
        preprocessing: how the training images were prepared beyond ``image_shape``: the
            datamodule's ``preprocessing`` property (``binarize``, ``crop_size``,
            ``input_size``; see :mod:`lightning_vae.preprocess`), which ``lightning-vae fit``
            passes here. :meth:`preprocess` applies it to new images; None means whole images,
            grey levels.
        fused_optimizer: use the single-kernel (fused) Adam/AdamW where torch has one for the
            parameters' device (CUDA; the CPU from torch 2.4), else torch's default.
        channels_last: keep convolution weights in the channels-last memory layout, which
            convolutions then also use for their outputs: faster on a CPU for the conv VAE
            (docs/results.md), and the layout of GPU tensor cores in bf16. No effect on models
            without convolutions.
        compile_mode: ``torch.compile`` the training pass (encoder, sampling, decoder, ELBO
            terms) with this mode: ``"default"``, ``"reduce-overhead"`` (CUDA graphs: pair it
            with static shapes, ``drop_last: true`` in the datamodule), ``"max-autotune"`` or
            ``"max-autotune-no-cudagraphs"``; None runs eagerly. Compiling takes tens of
            seconds and is slower than eager on CPUs; evaluation always runs eagerly.
        cuda_graph: on a CUDA device, capture the training pass (forward, ELBO terms and
            backward) in one CUDA graph after three eager steps and replay it at every step
            (:mod:`lightning_vae.cuda_graph`); the optimizer steps outside it. Needs one GPU,
            static shapes (``drop_last: true``; other batches run eagerly) and no gradient
            clipping, accumulation, fp16 scaler nor learning-rate scheduler. Combines with a
            ``compile_mode`` without CUDA graphs of its own. Elsewhere training runs eagerly.
    """

    def __init__(
        self,
        arch: str = "conv",
        image_shape: tuple[int, int, int] = (1, 28, 28),
        latent_dim: int = 32,
        arch_options: dict[str, Any] | None = None,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        likelihood_options: dict[str, Any] | None = None,
        beta: float = 1.0,
        beta_schedule: str | dict[str, Any] = "constant",
        optimizer: Literal["adam", "adamw"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        iw_samples: int = 5000,
        iw_chunk_size: int = 100,
        preprocessing: dict[str, Any] | None = None,
        fused_optimizer: bool = True,
        channels_last: bool = False,
        compile_mode: CompileMode | None = None,
        cuda_graph: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not isinstance(image_shape, (list, tuple)) or len(image_shape) != 3:
            raise ValueError(f"image_shape must be (channels, height, width), got {image_shape!r}")
        image_shape = tuple(image_shape)
        for axis, size in zip(("channels", "height", "width"), image_shape, strict=True):
            check_number(f"image_shape {axis}", size, minimum=1)
        for name, value, minimum in (("latent_dim", latent_dim, 1), ("iw_samples", iw_samples, 0),
                                     ("iw_chunk_size", iw_chunk_size, 1)):
            check_number(name, value, minimum=minimum)
        for name, value in (("fused_optimizer", fused_optimizer),
                            ("channels_last", channels_last), ("cuda_graph", cuda_graph)):
            check_bool(name, value)
        for name, value in (("arch_options", arch_options),
                            ("likelihood_options", likelihood_options),
                            ("preprocessing", preprocessing)):
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{name}={value!r}: expected a dict of options or null, got a "
                                f"{type(value).__name__}")
        check_optimizer(optimizer)
        if not is_real(lr) or lr <= 0:
            raise ValueError(f"lr must be a number > 0, got {lr!r}")
        if not is_real(weight_decay) or weight_decay < 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        check_compile_mode(compile_mode)
        if cuda_graph and uses_cudagraphs(compile_mode):
            modes = [mode for mode in COMPILE_MODES if not uses_cudagraphs(mode)]
            raise ValueError(
                f"compile_mode={compile_mode!r} replays CUDA graphs of its own; with "
                f"cuda_graph=True choose compile_mode null or one of {modes}"
            )
        self.image_shape = image_shape
        self.latent_dim = latent_dim
        self.preprocessing = Preprocessing.from_dict(preprocessing)
        self.encoder, self.decoder = build_architecture(
            arch, image_shape, latent_dim, out_channels=image_shape[0], options=arch_options)
        if channels_last:  # 4-d weights only; their layout decides the convolutions' output
            self.encoder.to(memory_format=torch.channels_last)
            self.decoder.to(memory_format=torch.channels_last)
        self.sampler = Reparameterize()
        self.likelihood_head = build_likelihood(
            likelihood, image_shape[0], **(likelihood_options or {}))
        self.objective = build_schedule(beta, beta_schedule)
        # nan_strategy="disable": a NaN term makes the mean NaN rather than being dropped with a
        # warning (which flatters a diverging model), and checking for NaNs at every update
        # would wait for the GPU.
        self.eval_means = nn.ModuleDict({
            stage: nn.ModuleDict({term: MeanMetric(nan_strategy="disable") for term in ELBO_TERMS})
            for stage in ("val", "test")
        })
        self.active_units = nn.ModuleDict({
            stage: ActiveUnits(latent_dim) for stage in ("val", "test")})
        self.test_kl_per_dim = KLPerDimension(latent_dim)
        self.test_mse = MeanSquaredError()
        self.test_nll_iw = ImportanceWeightedNLL(iw_samples, iw_chunk_size) if iw_samples else None

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets _current_fx_name before and after every hook it calls, about 24 times
        # a training step. nn.Module's __setattr__ first tests the value against Parameter,
        # buffer and Module types (about 2 µs, against 0.2 for a plain attribute); a hook's name
        # is none of those, so it goes straight to the instance.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # --- the model -------------------------------------------------------------------------

    def preprocess(self, images: ImageInput) -> Tensor:
        """Images of any size and kind (uint8 or float tensors and arrays, PIL images; one, a
        batch or a list) → the batch (B, *image_shape) this model was trained on, on its device
        (see :mod:`lightning_vae.preprocess`). A batch from its datamodule passes unchanged."""
        batch = preprocess_images(images, self.image_shape, self.preprocessing)
        return batch.to(device=self.device, dtype=self.dtype)

    def postprocess(self, images: Tensor, output_type: OutputType = "uint8") -> Tensor | list:
        """Decoder output in [0, 1] → uint8 (B, C, H, W) (``"uint8"``) or PIL images (``"pil"``)."""
        return postprocess_images(images, output_type)

    def encode(self, images: ImageInput) -> DiagonalGaussian:
        """q(z|x) for images of any kind :meth:`preprocess` takes."""
        return self.sampler(self.encoder(self.preprocess(images)))

    def likelihood(self, z: Tensor) -> Any:
        """p(x|z): a distribution over images with ``log_prob`` and ``mean``."""
        # The posterior is float32 even for float16/bfloat16 weights: feed the decoder its dtype.
        return self.likelihood_head(self.decoder(z.to(self.dtype)))

    def decode(self, z: Tensor) -> Tensor:
        """The expected image under p(x|z), in [0, 1]."""
        return self.likelihood(z).mean

    def forward(self, x: Tensor) -> VAEOutput:
        """One pass on a prepared batch (B, *image_shape), as training sees it."""
        posterior = self.sampler(self.encoder(x))
        z = posterior.rsample()
        return VAEOutput(posterior, z, self.likelihood(z))

    @torch.no_grad()
    def reconstruct(self, images: ImageInput) -> Tensor:
        """Decode the posterior mean of each image: the deterministic reconstruction, in [0, 1]
        (images of any kind :meth:`preprocess` takes; :meth:`postprocess` makes it displayable).
        """
        return self.decode(self.encode(images).mean)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images decoded from prior draws z ~ N(0, I), shape (n, *image_shape)."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device,
                        dtype=self.dtype)
        return self.decode(z)

    def elbo(self, x: Tensor) -> dict[str, Tensor]:
        """Per-example ``recon`` (−log p(x|z)), ``kl`` and ``elbo`` (= −recon − kl), in nats,
        from one posterior sample."""
        return self._elbo_terms(x)[1]

    def _elbo_terms(self, x: Tensor) -> tuple[VAEOutput, dict[str, Tensor]]:
        out = self(x)
        recon = -out.likelihood.log_prob(x)
        kl = out.posterior.kl()
        return out, {"recon": recon, "kl": kl, "elbo": -(recon + kl)}

    # --- sampling noise ----------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        # The run's seed: seed_everything's (the same on every rank), else torch's.
        self._noise_base = int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed()))
        graphed = stage == "fit" and self.hparams.cuda_graph
        self._graphed_pass = self._graph_training_pass() if graphed else None
        # The graph holds the backward, so the optimizer is stepped by training_step itself.
        self.automatic_optimization = not graphed

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            self._graphed_pass = None  # frees the graph's memory; the next fit captures anew
            self._weights_step = self.global_step  # what the weights are now trained to

    def _seed_noise(self, stream: str, *position: int) -> None:
        """Seed the model's device's generator, which draws ε (and the IW samples), from (run
        seed, rank, stream, position). seed_everything gives all DDP ranks one seed, so without
        this they would draw the same ε; and a resumed run, whose step counter is restored, draws
        the ε of an uninterrupted one (Lightning does not checkpoint generator states)."""
        seed_device_generator(self.device, noise_seed(
            self._noise_base, self.global_rank, NOISE_STREAMS[stream], *position))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._seed_noise("train", self.global_step, batch_idx)

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0
                                  ) -> None:
        # From the batch position only: the same weights give the same numbers whenever
        # validation runs (during fit, or `lightning-vae validate` on a checkpoint).
        self._seed_noise("val", dataloader_idx, batch_idx)

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._seed_noise("test", dataloader_idx, batch_idx)

    def on_validation_start(self) -> None:
        # Off CUDA, evaluation reseeds the CPU's global generator, which also draws the shuffle
        # of every DataLoader: hand its state back afterwards, or each epoch after a validation
        # would start from the same state and repeat the previous epoch's order. (On CUDA only
        # the GPU's generator is reseeded, and training reseeds it at every step anyway.)
        self._cpu_generator_state = torch.get_rng_state()

    def on_validation_end(self) -> None:
        torch.set_rng_state(self._cpu_generator_state)

    on_test_start, on_test_end = on_validation_start, on_validation_end

    # --- training --------------------------------------------------------------------------

    def _objective(self, terms: dict[str, Tensor], weights: dict[str, Tensor] | None = None
                   ) -> dict[str, Tensor]:
        """Batch means of the ELBO terms, the optimised loss and the schedule's weights behind
        it (``weights``, else the schedule's at this step), all tensors on the model's device
        (so logging them never copies from the host)."""
        recon, kl = terms["recon"].mean(), terms["kl"].mean()
        if weights is None:
            weights = {name: device_scalar(value, recon.device)
                       for name, value in self.objective.weights(self._schedule_step()).items()}
        loss = self.objective.loss(recon, kl, **weights)
        return {"loss": loss, "recon": recon, "kl": kl, "elbo": -(recon + kl), **weights}

    def _schedule_step(self) -> int:
        """Where the β schedule stands: the trainer's step while fitting (also for weights loaded
        from a checkpoint, whose new fit starts at its own step 0 unless it resumes); otherwise
        the step the weights were trained to: the checkpoint's for a validate/test run (whose
        step counter starts at 0), the end of the last fit for a model evaluated after one."""
        if self._trainer is not None and self._trainer.state.fn == TrainerFn.FITTING:
            return self.global_step
        return getattr(self, "_weights_step", self.global_step)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._weights_step = checkpoint.get("global_step", 0)
        carry_optimizer_steps(checkpoint, automatic=self.automatic_optimization)

    def _training_terms(self, x: Tensor) -> dict[str, Tensor]:
        """:meth:`elbo` of a training batch, compiled when ``compile_mode`` is set."""
        mode = self.hparams.compile_mode
        if mode is None:
            return self.elbo(x)
        if uses_cudagraphs(mode):  # last step's graph outputs are no longer read
            torch.compiler.cudagraph_mark_step_begin()
        return compiled(type(self).elbo, mode)(self, x)

    def _graph_training_pass(self) -> GraphedTrainingPass:
        """The training pass to replay as a CUDA graph in this fit, after checking that the
        trainer's settings allow one (an error naming the fix where they do not). Off CUDA the
        same steps run, eagerly, with a warning."""
        trainer = self.trainer
        device = trainer.strategy.root_device
        if device.type != "cuda":
            rank_zero_warn(f"model.cuda_graph=True needs a CUDA device; on {device.type} the "
                           "training passes run eagerly")
        problems = {
            "trains on one GPU: set trainer.devices=1, or cuda_graph false for DDP":
                trainer.world_size > 1,
            "cannot clip gradients: remove trainer.gradient_clip_val":
                bool(trainer.gradient_clip_val),
            "cannot accumulate gradients: set trainer.accumulate_grad_batches=1":
                trainer.accumulate_grad_batches != 1,
            "cannot unscale fp16 gradients: use trainer.precision bf16-mixed or 32-true":
                getattr(trainer.precision_plugin, "scaler", None) is not None,
        }
        found = [problem for problem, present in problems.items() if present]
        if found:
            raise ValueError("model.cuda_graph=True " + "; it ".join(found))
        self._graph_weights = {name: torch.zeros((), device=device)
                               for name in self.objective.weights(0)}
        return GraphedTrainingPass(self._training_pass, self.parameters())

    def on_train_start(self) -> None:
        if self._graphed_pass is not None and self.trainer.lr_scheduler_configs:
            raise ValueError(
                "model.cuda_graph=True steps the optimizer itself, and Lightning then leaves "
                "learning-rate schedulers unstepped: remove the lr_scheduler, or set cuda_graph "
                "false"
            )

    def _training_pass(self, x: Tensor) -> dict[str, Tensor]:
        """What the CUDA graph captures: the terms and loss of a batch, with the schedule's
        weights read from the tensors ``_graphed_training_step`` refills before each replay."""
        return self._objective(self._training_terms(x), self._graph_weights)

    def _graphed_training_step(self, x: Tensor) -> dict[str, Tensor]:
        """One optimizer step whose closure replays the training pass (forward and backward).
        Stepping through Lightning's optimizer wrapper keeps ``global_step``, the optimizer
        hooks and precision handling as in automatic optimization."""
        for name, value in self.objective.weights(self._schedule_step()).items():
            self._graph_weights[name].fill_(value)  # a kernel argument: no copy from the host
        means = {}
        self.optimizers().step(closure=lambda: means.update(self._graphed_pass(x)))
        return means

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The β-weighted negative ELBO of the batch (with ``cuda_graph``, also its backward
        and optimizer step). Logs every term, as device tensors, at every step whose values
        Lightning passes on (:func:`~lightning_vae.speed.step_values_read`: each logger write
        and the epoch's last step); ``train/loss`` also goes to the progress bar whenever it
        redraws, on the CPU only (:func:`~lightning_vae.speed.per_step_progress_bar` and
        :func:`~lightning_vae.speed.progress_bar_refreshes`)."""
        x = images_of(batch)
        if self.automatic_optimization:
            means = self._objective(self._training_terms(x))
        else:  # the graph's outputs are overwritten by the next replay: return a copy
            means = self._graphed_training_step(x)
            means["loss"] = means["loss"].clone()
        read = step_values_read(self.trainer, batch_idx)
        in_bar = per_step_progress_bar(self.device)  # the same for every step of a run
        if read or (in_bar and progress_bar_refreshes(self.trainer, batch_idx)):
            self.log("train/loss", means["loss"], prog_bar=in_bar)
        if read:
            self.log_dict({f"train/{name}": value for name, value in means.items()
                           if name != "loss"})
        return means["loss"]

    def _evaluation_step(self, batch: Any, stage: str) -> tuple[Tensor, DiagonalGaussian]:
        """Log the epoch means of the ELBO terms and active units; return the images and their
        posterior for further metrics."""
        x = images_of(batch)
        out, terms = self._elbo_terms(x)
        means = self._objective(terms)
        terms["loss"] = means["loss"].expand_as(terms["elbo"])
        for term, metric in self.eval_means[stage].items():
            metric.update(terms[term])
            self.log(f"{stage}/{term}", metric, prog_bar=term == "elbo")
        self.log_dict({f"{stage}/{name}": value for name, value in means.items()
                       if name not in ELBO_TERMS},
                      reduce_fx="max", sync_dist=True)  # constants: no batch-size weighting
        self.active_units[stage].update(out.posterior.mean)
        self.log(f"{stage}/active_units", self.active_units[stage])
        return x, out.posterior

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """The ELBO terms and active units, then KL per dimension, pixel MSE of the
        reconstruction from the posterior mean and the importance-weighted NLL
        (see ``lightning_vae.metrics``)."""
        x, posterior = self._evaluation_step(batch, "test")
        self.test_kl_per_dim.update(posterior.kl_per_dim())
        self.test_mse.update(self.decode(posterior.mean), x)
        self.log("test/mse", self.test_mse)
        if self.test_nll_iw is not None:
            self.test_nll_iw.update(x, posterior, self.likelihood)
            self.log("test/nll_iw", self.test_nll_iw)

    def on_test_epoch_end(self) -> None:
        # The metric has already summed over ranks, so sync_dist averages equal values: it
        # changes nothing but keeps Lightning from warning under DDP.
        kl_per_dim = self.test_kl_per_dim.compute()
        self.test_kl_per_dim.reset()
        self.log_dict({f"test/kl_dim/{i}": kl for i, kl in enumerate(kl_per_dim)}, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.hparams.optimizer, self.parameters(), self.hparams.lr,
                               self.hparams.weight_decay,
                               fused=self.hparams.fused_optimizer)


def images_of(batch: Any) -> Tensor:
    """The images of a batch: ``(images, labels)`` tuples and bare image tensors both work."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch
