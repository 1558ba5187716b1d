"""The VAE LightningModule: a :class:`~lightning_vae.model.VAEModel` trained on an objective
(the β-weighted negative ELBO by default), with its metrics, optimizer and logging.

It owns what training needs and the model does not: the objective and its schedule, the
optimizer settings, the evaluation metrics, the noise seeding (:mod:`.noise`) and the speed path
(:mod:`.fast_path`, :mod:`.cuda_graph`, :mod:`.direct_step`, :mod:`.step_logging`). Its
constructor's first eight arguments are the model's; ``self.model`` is what ``save_pretrained``
writes.
"""

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.core.hooks import ModelHooks
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError

from lightning_vae.checks import check_bool, check_number, is_real
from lightning_vae.metrics import (
    ActiveUnits,
    DCIDisentanglement,
    FactorVAEScore,
    ImportanceWeightedNLL,
    KLPerDimension,
    MutualInformationGap,
    SAPScore,
)
from lightning_vae.model import DiagonalGaussian, VAEModel
from lightning_vae.model.validation import check_batch, unchecked_inputs
from lightning_vae.objectives import Objective, build_objective
from lightning_vae.training.cuda_graph import GraphedTrainingPass, carry_optimizer_steps
from lightning_vae.training.direct_step import can_step_directly
from lightning_vae.training.empty_hooks import TRAINING_HOOKS, skip_empty_hooks
from lightning_vae.training.fast_path import (
    COMPILE_MODES,
    CompileMode,
    check_compile_mode,
    compiled,
    uses_cudagraphs,
)
from lightning_vae.training.noise import NoiseSource
from lightning_vae.training.optimizers import build_optimizer, check_optimizer
from lightning_vae.training.schedules import build_lr_schedule, check_lr_schedule
from lightning_vae.training.step_logging import (
    StepsRead,
    device_scalar,
    per_step_progress_bar,
    progress_bar_refreshes,
)


def signature_stored(step: Callable) -> Callable:
    """``step`` with its signature stored as ``__signature__``, which ``inspect`` returns as
    it is: Lightning inspects a step method's signature at every batch (whether it takes
    ``batch_idx``), and building it anew cost some 700 Python bytecodes a training step."""
    step.__signature__ = inspect.signature(step)
    return step


ELBO_TERMS = ("loss", "recon", "kl", "elbo")
MODEL_ARGUMENTS = VAEModel.argument_names()
"""The constructor arguments that build the model; the others are training settings."""
PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "_train_generator"})
"""Attributes set at every training step that are never parameters, buffers or modules."""
LEGACY_STATE_PREFIXES = ("encoder.", "decoder.", "likelihood_head.")
"""Where 0.1.0, whose module was the model, kept the weights (now under ``model.``)."""


class VAE(pl.LightningModule):
    """Trains a variational autoencoder (Kingma & Welling 2014) with β-weighting (Higgins et
    al. 2017). Every argument is a JSON value, so a recipe (LightningCLI) sets each one.

    Losses are in nats per example: summed over pixels and latent dimensions, averaged over
    the batch.

    ``arch``, ``image_shape``, ``latent_dim``, ``arch_options``, ``likelihood``,
    ``likelihood_options``, ``prior`` and ``preprocessing`` are the model's (see
    :class:`~lightning_vae.model.VAEModel`); ``lightning-vae fit`` takes ``image_shape`` and
    ``preprocessing`` from the datamodule.

    Args:
        beta: weight of the KL term (γ for the capacity objective).
        beta_schedule: "constant" or a dict such as ``{"name": "linear", "steps": 5000}``,
            ``{"name": "cyclical", "cycle_steps": 5000, "ratio": 0.5}`` or
            ``{"name": "capacity", "capacity_max": 25, "steps": 100000}``
            (:mod:`lightning_vae.objectives`).
        objective: what is optimised around the β schedule: "elbo" (the β-weighted negative
            ELBO), or a registered objective's name or dict with its options
            (:mod:`lightning_vae.objectives`), e.g. ``{"name": "tcvae", "dataset_size": N}``.
            An objective with parameters of its own (``factorvae``'s discriminator) is a
            submodule, trained by a second optimizer of its own in manual optimization.
        optimizer: "adam" or "adamw".
        lr: learning rate.
        weight_decay: decoupled (adamw) or L2 (adam) weight decay.
        lr_schedule: null (a constant learning rate) or ``{"name": "cosine", "warmup_steps":
            N}`` (linear warm-up, then cosine decay to ``min_lr_ratio`` × lr at the end of
            training; :mod:`lightning_vae.training.schedules`), stepped every optimizer step.
        fused_optimizer: use the single-kernel (fused) Adam/AdamW where torch has one for the
            parameters' device (CUDA; the CPU from torch 2.4), else torch's default.
        iw_samples: k of the importance-weighted bound logged as ``test/nll_iw`` (0 turns it
            off). 5000 by default, the k of Burda et al. 2016 and the papers after it, so the
            number compares with published ones. It costs k decoder passes per test image:
            seconds per image on a CPU, so pass fewer (or 0) there.
        iw_chunk_size: samples per image decoded at once for ``test/nll_iw``: memory grows with
            iw_chunk_size × test batch size and not with k; lower it if testing runs out of memory.
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
            backward) and the optimizer's step (capturable Adam/AdamW) in one CUDA graph after
            three eager steps and replay it at every step
            (:mod:`lightning_vae.training.cuda_graph`). Needs one GPU, static shapes
            (``drop_last: true``; other batches run eagerly) and no gradient clipping,
            accumulation, fp16 scaler nor learning-rate scheduler; ``on_before_optimizer_step``
            hooks are not called. Combines
            with a ``compile_mode`` without CUDA graphs of its own. Elsewhere training runs
            eagerly.
    """

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
        beta: float = 1.0,
        beta_schedule: str | dict[str, Any] = "constant",
        objective: str | dict[str, Any] = "elbo",
        optimizer: Literal["adam", "adamw"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: str | dict[str, Any] | None = None,
        fused_optimizer: bool = True,
        iw_samples: int = 5000,
        iw_chunk_size: int = 100,
        channels_last: bool = False,
        compile_mode: CompileMode | None = None,
        cuda_graph: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_number("iw_samples", iw_samples, minimum=0)
        check_number("iw_chunk_size", iw_chunk_size, minimum=1)
        for name, value in (("fused_optimizer", fused_optimizer),
                            ("channels_last", channels_last), ("cuda_graph", cuda_graph)):
            check_bool(name, value)
        check_optimizer(optimizer)
        if not is_real(lr) or lr <= 0:
            raise ValueError(f"lr must be a number > 0, got {lr!r}")
        if not is_real(weight_decay) or weight_decay < 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        check_compile_mode(compile_mode)
        check_lr_schedule(lr_schedule)
        if cuda_graph and uses_cudagraphs(compile_mode):
            modes = [mode for mode in COMPILE_MODES if not uses_cudagraphs(mode)]
            raise ValueError(
                f"compile_mode={compile_mode!r} replays CUDA graphs of its own; with "
                f"cuda_graph=True choose compile_mode null or one of {modes}"
            )
        self.model = VAEModel(arch, image_shape, latent_dim, arch_options, likelihood,
                              likelihood_options, prior, preprocessing)
        if channels_last:  # 4-d weights only; their layout decides the convolutions' output
            self.model.to(memory_format=torch.channels_last)
        self.objective = build_objective(beta, beta_schedule, objective)
        if self.adversarial:
            if cuda_graph:
                raise ValueError(f"objective {objective!r} trains a discriminator with a second "
                                 "optimizer, which cuda_graph=True cannot replay: set cuda_graph "
                                 "false")
            self.objective.build(latent_dim)  # its parameters: checkpointed, moved, synced
        # nan_strategy="disable": a NaN term makes the mean NaN rather than being dropped with a
        # warning (which flatters a diverging model), and checking for NaNs at every update
        # would wait for the GPU.
        self.eval_means = nn.ModuleDict({
            stage: nn.ModuleDict({term: MeanMetric(nan_strategy="disable") for term in ELBO_TERMS})
            for stage in ("val", "test")
        })
        # Active units of all stochastic layers together, and of each when there are several
        sizes = self.model.latent_sizes
        self.active_units = nn.ModuleDict({
            stage: ActiveUnits(sum(sizes)) for stage in ("val", "test")})
        self.layer_active_units = nn.ModuleDict({
            stage: nn.ModuleList(ActiveUnits(size) for size in (sizes if len(sizes) > 1 else []))
            for stage in ("val", "test")})
        self.test_kl_per_dim = KLPerDimension(latent_dim)
        self.test_mse = MeanSquaredError()
        self.test_nll_iw = ImportanceWeightedNLL(iw_samples, iw_chunk_size) if iw_samples else None
        self.test_disentanglement = nn.ModuleDict({  # logged when the batches carry factors
            "mig": MutualInformationGap(), "factorvae_score": FactorVAEScore(),
            "dci_d": DCIDisentanglement(), "sap": SAPScore()})

    @property
    def adversarial(self) -> bool:
        """Whether the objective trains a discriminator of its own (FactorVAE)."""
        return getattr(self.objective, "adversarial", False)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets _current_fx_name before and after every hook it calls, about 20 times
        # a training step, and on_train_batch_start sets _train_generator. nn.Module's
        # __setattr__ first tests the value against Parameter, buffer and Module types (about
        # 2 µs, against 0.2 for a plain attribute); a hook's name and a generator are none of
        # those, so they go straight to the instance.
        if name in PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # --- the model, loaded and saved ---------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> "VAE":
        """A module to fine-tune from a pretrained model (a folder, zoo name or Hub id, as
        :meth:`VAEModel.from_pretrained`): the model's config and weights, with ``kwargs``
        setting training options (``lr``, ``beta``, ...) and the download options."""
        training_names = cls.training_argument_names()
        training = {name: kwargs.pop(name) for name in list(kwargs) if name in training_names}
        model = VAEModel.from_pretrained(name_or_path, **kwargs)
        module = cls(**model.config, **training)
        module.model.load_state_dict(model.state_dict())
        return module

    @classmethod
    def argument_names(cls) -> list[str]:
        """The constructor's arguments: the model's, then the training settings."""
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    @classmethod
    def training_argument_names(cls) -> list[str]:
        """The constructor's arguments that are training settings, not the model's."""
        return [name for name in cls.argument_names() if name not in MODEL_ARGUMENTS]

    def training_settings(self) -> dict[str, Any]:
        """The training settings this module was built with (what a model card records)."""
        return {name: self.hparams[name] for name in self.training_argument_names()}

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> str | None:
        """The model's ``save_pretrained``, its card stating these training settings (unless
        ``model_card_kwargs`` gives other ``training`` settings)."""
        card = dict(kwargs.pop("model_card_kwargs", None) or {})
        if card.get("training") is None:
            card["training"] = self.training_settings()
        return self.model.save_pretrained(save_directory, model_card_kwargs=card, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the folder the run was started from, against which ``export`` resolves a
        relative ``data_dir`` of the datamodule when run from elsewhere."""
        checkpoint[WORKING_FOLDER_KEY] = os.getcwd()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read 0.1.0 checkpoints (weights at the top level of the state dict), record the step
        the weights were trained to, and carry the optimizer steps across a change between
        automatic and manual optimization (``cuda_graph``, :mod:`.direct_step`)."""
        upgrade_state_dict(checkpoint.get("state_dict", {}))
        check_checkpoint_shapes(checkpoint.get("state_dict", {}), self.state_dict())
        self._weights_step = checkpoint.get("global_step", 0)
        carry_optimizer_steps(checkpoint)

    # --- sampling noise ----------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        self.noise = NoiseSource()  # after seed_everything, whose seed it reads
        for callback in self.trainer.callbacks:  # per-batch hooks that do nothing: uncalled
            skip_empty_hooks(callback, pl.Callback)
        skip_empty_hooks(self, ModelHooks, TRAINING_HOOKS)
        graphed = stage == "fit" and self.hparams.cuda_graph
        self._graphed_pass = self._graph_training_pass() if graphed else None
        # The graph holds the backward, and a discriminator has its own optimizer: then the
        # optimizers are stepped by training_step itself.
        self.automatic_optimization = not graphed and not self.adversarial
        self._first_batch_checked = False  # see on_train_batch_start

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            self._graphed_pass = None  # frees the graph's memory; the next fit captures anew
            self._weights_step = self.global_step  # what the weights are now trained to

    def _generator(self, stream: str, *position: int) -> torch.Generator:
        return self.noise.seed(self.device, self.global_rank, stream, *position)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Here, outside the training pass, which a CUDA graph replays without running its Python.
        self._train_generator = self._generator("train", self.global_step, batch_idx)
        # The model's input check reads the batch's range back from the device, a host
        # synchronisation: a fit runs it on its first batch, and its training passes skip it.
        if not self._first_batch_checked and self.model.validate_inputs:
            check_batch(images_of(batch), self.model.image_shape, self.model.likelihood_head)
            self._first_batch_checked = True

    # --- training --------------------------------------------------------------------------

    def on_train_epoch_start(self) -> None:
        self._steps_read = StepsRead(self.trainer)  # whose logged values are read, this epoch

    def _objective(self, terms: dict[str, Tensor], weights: dict[str, Tensor] | None = None
                   ) -> dict[str, Tensor]:
        """Batch means of the objective's terms, the optimised loss and the objective's weights
        behind it (``weights``, else the objective's at this step), all tensors on the model's
        device (so logging them never copies from the host)."""
        means = {name: term.mean() for name, term in terms.items()}
        if weights is None:
            device = means["elbo"].device
            weights = {name: device_scalar(value, device)
                       for name, value in self.objective.weights(self._schedule_step()).items()}
        return {"loss": self.objective.loss(means, **weights), **means, **weights}

    def _schedule_step(self) -> int:
        """Where the objective's schedule stands: the trainer's step while fitting (also for
        weights loaded from a checkpoint, whose new fit starts at its own step 0 unless it
        resumes); otherwise the step the weights were trained to: the checkpoint's for a
        validate/test run (whose step counter starts at 0), the end of the last fit for a model
        evaluated after one."""
        if self._trainer is not None and self._trainer.state.fn == TrainerFn.FITTING:
            return self.global_step
        return getattr(self, "_weights_step", self.global_step)

    def _training_terms(self, x: Tensor) -> dict[str, Tensor]:
        """The objective's terms of a training batch, compiled when ``compile_mode`` is set."""
        mode = self.hparams.compile_mode
        with unchecked_inputs(self.model):  # checked once, on the fit's first batch
            if mode is None:
                return objective_terms(self.objective, self.model, x, self._train_generator)
            if uses_cudagraphs(mode):  # last step's graph outputs are no longer read
                torch.compiler.cudagraph_mark_step_begin()
            return compiled(objective_terms, mode)(self.objective, self.model, x,
                                                   self._train_generator)

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
        self._graph_weight_values: dict[str, float] | None = None  # what they hold
        return GraphedTrainingPass(self._training_pass, self.parameters())

    def on_train_start(self) -> None:
        self._steps_read = StepsRead(self.trainer)  # a run resumed mid-epoch starts no epoch
        if self._graphed_pass is None:
            own_step = type(self).training_step is VAE.training_step  # it runs the direct step
            if self.automatic_optimization and own_step and can_step_directly(self.trainer, self):
                self.automatic_optimization = False  # see _direct_training_step
            return
        if self.trainer.lr_scheduler_configs:
            raise ValueError(
                "model.cuda_graph=True steps the optimizer itself, and Lightning then leaves "
                "learning-rate schedulers unstepped: remove the lr_scheduler, or set cuda_graph "
                "false"
            )
        self._graphed_pass.optimizer = self.trainer.optimizers[0]  # built after setup

    def _training_pass(self, x: Tensor) -> dict[str, Tensor]:
        """What the CUDA graph captures: the terms and loss of a batch, with the objective's
        weights read from the tensors ``_graphed_training_step`` refills before a replay
        whenever they change."""
        return self._objective(self._training_terms(x), self._graph_weights)

    def _graphed_training_step(self, x: Tensor) -> dict[str, Tensor]:
        """One training step replayed whole (forward, backward, optimizer step), counted as
        one optimizer step by Lightning's optimizer wrapper, so ``global_step`` and the
        checkpoints' step counts are those of automatic optimization."""
        weights = self.objective.weights(self._schedule_step())
        if weights != self._graph_weight_values:  # under a constant β, at the first step only
            for name, value in weights.items():
                self._graph_weights[name].fill_(value)  # a kernel argument: no host copy
            self._graph_weight_values = dict(weights)  # a copy: objectives may reuse a dict
        optimizer = self.optimizers()
        optimizer._on_before_step()
        means = self._graphed_pass(x)
        optimizer._on_after_step()
        return means

    def _direct_training_step(self, x: Tensor) -> dict[str, Tensor]:
        """Automatic optimization's step, called directly (:mod:`.direct_step`): the gradients
        unset, the loss, its backward, the optimizer's step counted by Lightning's wrapper as
        one optimizer step, then the learning-rate schedule's step."""
        optimizer = self.optimizers()
        optimizer.optimizer.zero_grad()
        means = self._objective(self._training_terms(x))
        means["loss"].backward()
        optimizer._on_before_step()
        optimizer.optimizer.step()
        optimizer._on_after_step()
        if (scheduler := self.lr_schedulers()) is not None:
            scheduler.step()
        return means

    def _adversarial_training_step(self, x: Tensor) -> dict[str, Tensor]:
        """One step of the VAE and of the objective's discriminator, each with its optimizer,
        from one backward pass of the sum of their losses (which share no parameter's
        gradient). Only the VAE's step goes through Lightning's optimizer wrapper, so
        ``global_step`` counts VAE steps, as in automatic optimization; the discriminator's
        goes through the strategy (precision plugin) alone."""
        vae_optimizer, discriminator_optimizer = self.optimizers()
        vae_optimizer.zero_grad()
        discriminator_optimizer.zero_grad()
        means = self._objective(self._training_terms(x))
        self.manual_backward(means["loss"] + means["disc_loss"])
        vae_optimizer.step()
        self.trainer.strategy.optimizer_step(discriminator_optimizer.optimizer, lambda: None)
        if (scheduler := self.lr_schedulers()) is not None:  # the VAE's, once per step
            scheduler.step()
        return means

    @signature_stored
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The objective's loss on the batch (without automatic optimization, also its backward
        and optimizer step). Logs every term, as device tensors, at every step whose values
        Lightning passes on (:func:`~lightning_vae.training.step_logging.step_values_read`:
        each logger write and the epoch's last step); ``train/loss`` also goes to the progress
        bar whenever it redraws, on the CPU only."""
        x = images_of(batch)
        read = self._steps_read(batch_idx)  # before a step taken here counts in global_step
        if self.automatic_optimization:
            means = self._objective(self._training_terms(x))
        elif self.adversarial:
            means = self._adversarial_training_step(x)
        elif self._graphed_pass is None:
            means = self._direct_training_step(x)
        else:  # the graph's outputs are overwritten by the next replay: return a copy
            means = self._graphed_training_step(x)
            means["loss"] = means["loss"].clone()
        in_bar = per_step_progress_bar(self.device)  # the same for every step of a run
        if read or (in_bar and progress_bar_refreshes(self.trainer, batch_idx)):
            self.log("train/loss", means["loss"], prog_bar=in_bar)
        if read:
            self.log_dict({f"train/{name}": value for name, value in means.items()
                           if name != "loss"})
        return means["loss"]

    # --- evaluation --------------------------------------------------------------------------

    def _evaluation_step(self, batch: Any, stage: str, generator: torch.Generator
                         ) -> tuple[Tensor, DiagonalGaussian]:
        """Log the epoch means of the ELBO terms and active units; return the images and their
        posterior for further metrics."""
        x = images_of(batch)
        out, terms = self.objective.terms(self.model, x, generator)
        means = self._objective(terms)
        terms["loss"] = means["loss"].expand_as(terms["elbo"])
        for term, metric in self.eval_means[stage].items():
            metric.update(terms[term])
            self.log(f"{stage}/{term}", metric, prog_bar=term == "elbo")
        extra_terms = {name for name in terms if name not in ELBO_TERMS}
        self.log_dict({f"{stage}/{name}": means[name] for name in extra_terms},
                      batch_size=len(x), sync_dist=True)
        self.log_dict({f"{stage}/{name}": value for name, value in means.items()
                       if name not in ELBO_TERMS and name not in extra_terms},
                      reduce_fx="max", sync_dist=True)  # constants: no batch-size weighting
        layer_means = [posterior.mean for posterior in out.layer_posteriors]
        self.active_units[stage].update(torch.cat(layer_means, dim=1))
        self.log(f"{stage}/active_units", self.active_units[stage])
        for layer, metric in enumerate(self.layer_active_units[stage]):
            metric.update(layer_means[layer])
            self.log(f"{stage}/active_units/{layer}", metric)
        return x, out.posterior

    @signature_stored
    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, "val", self._generator("val", dataloader_idx, batch_idx))

    @signature_stored
    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """The ELBO terms and active units, then KL per dimension (of the top layer, for a
        hierarchical model), pixel MSE of the reconstruction from the posterior mode, the
        importance-weighted NLL and, for batches ``(images, factors)`` with factor classes
        (B, K) (dSprites), the disentanglement scores of the posterior means: ``test/mig``,
        ``test/factorvae_score``, ``test/dci_d``, ``test/sap`` (see :mod:`lightning_vae.metrics`).
        """
        generator = self._generator("test", dataloader_idx, batch_idx)
        x, posterior = self._evaluation_step(batch, "test", generator)
        self.test_kl_per_dim.update(posterior.kl_per_dim())
        self.test_mse.update(self.model.reconstruction(x, posterior), x)
        self.log("test/mse", self.test_mse)
        if self.test_nll_iw is not None:
            self.test_nll_iw.update(x, posterior, self.model, generator)
            self.log("test/nll_iw", self.test_nll_iw)
        factors = factors_of(batch)
        if factors is not None:  # scored on the whole test set at the epoch's end
            for name, metric in self.test_disentanglement.items():
                metric.update(posterior.mean, factors)
                self.log(f"test/{name}", metric)

    def on_test_epoch_end(self) -> None:
        # The metric has already summed over ranks, so sync_dist averages equal values: it
        # changes nothing but keeps Lightning from warning under DDP.
        kl_per_dim = self.test_kl_per_dim.compute()
        self.test_kl_per_dim.reset()
        self.log_dict({f"test/kl_dim/{i}": kl for i, kl in enumerate(kl_per_dim)}, sync_dist=True)

    def configure_optimizers(self) -> Any:
        """The VAE's optimizer (with its learning-rate schedule, if any); with a discriminator,
        also the objective's own optimizer for its parameters, which the VAE's leaves out."""
        parameters = [p for name, p in self.named_parameters() if not name.startswith("objective.")]
        optimizer = build_optimizer(self.hparams.optimizer, parameters, self.hparams.lr,
                                    self.hparams.weight_decay,
                                    fused=self.hparams.fused_optimizer,
                                    capturable=self.hparams.cuda_graph)
        scheduler = None if self.hparams.get("lr_schedule") is None else build_lr_schedule(
            self.hparams.lr_schedule, optimizer, self.trainer.estimated_stepping_batches)
        if self.adversarial:  # the schedule is stepped by _adversarial_training_step
            optimizers = [optimizer, self.objective.discriminator_optimizer()]
            return optimizers if scheduler is None else (optimizers, [scheduler])
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def check_checkpoint_shapes(stored: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    """Refuse a checkpoint whose weights have other shapes than this module's, naming them
    (Lightning's own error is a multi-line RuntimeError)."""
    wrong = [f"{name}: stored {tuple(tensor.shape)}, this model {tuple(expected[name].shape)}"
             for name, tensor in stored.items()
             if name in expected and tuple(tensor.shape) != tuple(expected[name].shape)]
    if wrong:
        raise ValueError(f"the checkpoint's weights do not fit this model ({'; '.join(wrong[:2])}"
                         f"{'; ...' if len(wrong) > 2 else ''}): pass the model options it was "
                         "trained with")


def upgrade_state_dict(state: dict[str, Tensor]) -> None:
    """Move the weights of a 0.1.0 checkpoint, whose module was the model, under ``model.``,
    in place."""
    for key in [key for key in state if key.startswith(LEGACY_STATE_PREFIXES)]:
        state[f"model.{key}"] = state.pop(key)


def objective_terms(objective: Objective, model: VAEModel, x: Tensor,
                    generator: torch.Generator | None) -> dict[str, Tensor]:
    """The per-example terms of a training batch: a plain function, so it compiles once."""
    return objective.terms(model, x, generator)[1]


WORKING_FOLDER_KEY = "lightning_vae_working_folder"
"""The checkpoint entry holding the folder training was started from."""


def images_of(batch: Any) -> Tensor:
    """The images of a batch: ``(images, labels)`` tuples and bare image tensors both work."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def factors_of(batch: Any) -> Tensor | None:
    """The generative factor classes of a batch ``(images, factors)``, integers (B, K) as
    dSprites gives; None for other batches (bare images, or class labels (B,))."""
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        return None
    factors = batch[1]
    usable = isinstance(factors, Tensor) and factors.ndim == 2 and not factors.is_floating_point()
    return factors if usable else None
