"""LightningCLI's fit/validate/test for :class:`~lightning_vae.VAE` and any LightningDataModule,
with what the package adds: ``--ckpt_path last`` of this recipe's earlier runs, ``--wandb``, a
checked ``--ckpt_path`` file, the parser of :mod:`.parser` (one-line errors, short help), the
run's config.yaml in its own folder, no empty run folder left by a failed run, and none of
Lightning's advertising."""

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn

from lightning_vae import safe_yaml
from lightning_vae.cli.parser import VAEArgumentParser
from lightning_vae.cli.verbs import SUBCOMMAND_HELP
from lightning_vae.training.callbacks import run_folder
from lightning_vae.training.checkpoints import (
    AtomicCheckpointIO,
    load_checkpoint,
)
from lightning_vae.training.last_checkpoint import (
    LastCheckpoint,
    checkpoint_folders,
    last_checkpoint,
)
from lightning_vae.training.module import VAE
from lightning_vae.training.progress_bar import TimedProgressBar
from lightning_vae.training.subnormals import flush_subnormals

WANDB_LOGGER = {
    "class_path": "pytorch_lightning.loggers.WandbLogger",
    "init_args": {"project": "lightning-vae", "save_dir": "lightning_logs", "log_model": False},
}
"""The logger ``--wandb`` sets: the one recipes/logging/wandb.yaml sets, for runs without the
recipes folder at hand. Later ``--trainer.logger.*`` arguments change it."""


SUBCOMMAND_NOTES = (
    "A datamodule's options: --data.help CLASS (e.g. --data.help "
    "lightning_vae.data.MNISTDataModule); set them as --data.NAME VALUE. "
    "lightning-vae adds: --config recipes/NAME takes a recipe installed with the package when "
    "there is no such file here (`lightning-vae recipes` lists them); --ckpt_path last is the "
    "newest last.ckpt of this recipe's earlier runs; --wandb logs to Weights & Biases as "
    "recipes/logging/wandb.yaml does. Bad input ends in one message; LIGHTNING_VAE_TRACEBACK=1 "
    "shows the traceback."
)
"""The end of ``lightning-vae fit --help`` (and validate, test): where the datamodule's options
are, and what the package adds to LightningCLI's options."""

LIGHTNING_NOISE = ("💡 Tip:",)
"""Beginnings of Lightning's info lines that advertise its services: dropped."""
WARNING_NOISE = (r".*isinstance\(treespec, LeafSpec\)` is deprecated",)
"""Warnings Lightning's own code triggers in every run, which the user can do nothing about."""


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LIGHTNING_NOISE)


for _name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
    if not any(isinstance(f, _DropNoise) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_DropNoise())


class RunFolderConfig(SaveConfigCallback):
    """LightningCLI's config.yaml, written into the run's own folder (:func:`run_folder`, beside
    its checkpoints) rather than ``trainer.log_dir``, which for W&B is the folder every run
    shares, so that each run kept the config of the next."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                    stage: str) -> None:
        folder = run_folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, folder / self.config_filename, skip_none=False,
                         overwrite=True, multifile=self.multifile)


class DropEmptyRun(Callback):
    """Remove the run folders a run created when it fails before its first training step
    (bad data, a missing file), or a validate or test run that fails (they log only at their
    end), so that failed attempts leave no empty ``version_N``. Folders that existed before the
    run, and any holding a checkpoint, are kept."""

    def __init__(self, new_folders: list[Path]) -> None:
        self.new_folders = new_folders

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        trained = trainer.state.fn == TrainerFn.FITTING and trainer.global_step > 0
        if trained or not trainer.is_global_zero:  # validate/test log only when they finish
            return
        for logger in trainer.loggers:  # close their files first (Lightning does it again)
            logger.finalize("failed")
        for folder in self.new_folders:
            if folder.is_dir() and not any(folder.rglob("*.ckpt")):
                shutil.rmtree(folder, ignore_errors=True)


def model_arguments(argv: list[str]) -> list[str]:
    """The ``--model`` and ``--model.*`` arguments of ``argv``, each with its value."""
    picked = []
    for index, token in enumerate(argv):
        name = token.split("=", 1)[0]
        if name == "--model" or name.startswith("--model."):
            picked += [token] if "=" in token else argv[index:index + 2]
    return picked


def new_run_folders(trainer: pl.Trainer) -> list[Path]:
    """The folders of ``trainer``'s TensorBoard and CSV loggers that do not exist yet (the
    run's ``version_N``): what a run that fails at once should not leave behind."""
    folders = [Path(logger.log_dir) for logger in trainer.loggers
               if isinstance(getattr(logger, "log_dir", None), str)]
    return [folder for folder in folders if not folder.exists()]


PROGRESS_BAR_INTERVAL = 0.1
"""Seconds between redraws of the progress bar the CLI adds, at most. Lightning's default redraws
at every step, which costs milliseconds (a TQDM redraw and the training loss logged for it):
more than a whole step of the default model on a GPU (docs/results.md)."""


class VAECLI(LightningCLI):
    """LightningCLI for :class:`VAE` with any LightningDataModule; the model's ``image_shape``
    and ``preprocessing`` are taken from the datamodule so the two can never disagree, and the
    checkpoint records how to prepare new images for the model. Checkpoints are written whole
    (:class:`~lightning_vae.training.checkpoints.AtomicCheckpointIO`) unless the configuration
    names a checkpoint writer. Unless the configuration names a progress bar or turns it off,
    the bar redraws at most every ``PROGRESS_BAR_INTERVAL`` seconds."""

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        config = {**init.get("trainer", {}), **kwargs}
        callbacks = config.get("callbacks") or []
        if not isinstance(callbacks, list):  # one callback, given without a list
            callbacks = [callbacks]
        bar_wanted = config.get("enable_progress_bar") is not False
        if bar_wanted and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, TimedProgressBar(PROGRESS_BAR_INTERVAL)]
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):  # .ckpt written whole
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.append(DropEmptyRun(new_run_folders(trainer)))
        return trainer

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: skip for name, skip in LightningCLI.subcommands().items()
                if name in SUBCOMMAND_HELP}

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then refuse a ``--ckpt_path`` file that is damaged or not a checkpoint, naming
        it, before Lightning reads the file (for its hyperparameters, right after parsing) with
        torch's reader, whose error names neither."""
        super().parse_arguments(parser, args)
        self.model_arguments = model_arguments(args) if isinstance(args, list) else []
        subcommand = self.config.get("subcommand")
        path = subcommand and self.config[subcommand].get("ckpt_path")
        if path and Path(path).is_file():  # load_checkpoint checks the file's format first
            trusted = self.config[subcommand].get("weights_only") is False
            checkpoint = load_checkpoint(path, trusted, "--weights_only false")
            if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
                raise ValueError(f"{path} holds no state_dict: it is not a checkpoint Lightning "
                                 "wrote while training; pass one of the run's .ckpt files")

    def _parse_ckpt_path(self) -> None:
        """Lightning sets a ``--ckpt_path`` file's hyperparameters over the whole configuration,
        the command line's included, so ``test --ckpt_path X --model.iw_samples 100`` would
        test at the checkpoint's k. The checkpoint's values still replace the recipe's (they
        describe the weights), but the command line's own ``--model`` arguments come last."""
        super()._parse_ckpt_path()
        subcommand = self.config.get("subcommand")
        path = subcommand and self.config[subcommand].get("ckpt_path")
        if path and Path(path).is_file() and self.model_arguments:
            self.config = self.parser.parse_args([subcommand, *self.model_arguments],
                                                 namespace=self.config)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.image_shape", "model.image_shape", apply_on="instantiate")
        parser.link_arguments("data.preprocessing", "model.preprocessing",
                              apply_on="instantiate")
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="fit: test the trained weights on the test set when training "
                                 "ends, in the same run and loggers (how a sweep's runs log "
                                 "test/mig)")

    def after_fit(self) -> None:
        """``--test_after_fit true``: the test metrics of the weights the fit ended with."""
        if self.config_init[self.subcommand].get("test_after_fit"):
            self.trainer.test(self.model, datamodule=self.datamodule)

    def before_fit(self) -> None:
        """Name the data set in every logger's run config (Lightning logs the datamodule's
        arguments but not its class), and find the checkpoint ``--ckpt_path last`` means."""
        dataset = getattr(self.datamodule, "dataset_name", None) or type(self.datamodule).__name__
        for logger in self.trainer.loggers:
            logger.log_hyperparams({"dataset": dataset})
        found = self.resolve_ckpt_path_last()
        if found is not None and found.path is None:
            rank_zero_warn("--ckpt_path last: no last.ckpt from an earlier run of this model and "
                           f"data was found{found.passed_over_note()}; training from scratch")

    def before_validate(self) -> None:
        """``--ckpt_path last``: the newest ``last*.ckpt`` of this model's training runs.
        Lightning would look only in the new run's empty folder and evaluate the untrained
        weights; with no checkpoint to find, this stops with where it looked."""
        found = self.resolve_ckpt_path_last()
        if found is not None and found.path is None:
            folders = ", ".join(str(folder) for folder in checkpoint_folders(self.trainer))
            raise FileNotFoundError(
                f"--ckpt_path last: no last*.ckpt in {folders or 'any checkpoint folder'}"
                f"{found.passed_over_note()}; train first with `lightning-vae fit` and the same "
                f"configuration, or pass the checkpoint's path"
            )

    before_test = before_validate

    def resolve_ckpt_path_last(self) -> LastCheckpoint | None:
        """Replace ``--ckpt_path last`` by the checkpoint :func:`last_checkpoint` finds (None when
        none fits) and warn when it passed newer ones over; None when ``ckpt_path`` is not
        "last"."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return None
        found = last_checkpoint(self.trainer, self.model.hparams, type(self.datamodule).__name__)
        config["ckpt_path"] = found.path
        if found.path is not None and found.passed_over:
            rank_zero_warn(f"--ckpt_path last: took {found.path}{found.passed_over_note()}")
        return found


def run_lightning(argv: list[str], run: bool = True) -> VAECLI:
    """Run a Lightning subcommand (fit, validate, test) with ``argv``; with ``run=False``,
    ``argv`` holds no subcommand and the CLI only builds the model and data. Subnormal floats
    are flushed to zero from here on, in the threads torch starts after this call
    (:mod:`~lightning_vae.training.subnormals`)."""
    flush_subnormals()  # before the model and data are built, which start torch's threads
    safe_yaml.install()  # --config files and values: no alias bombs
    with warnings.catch_warnings():  # main() hands over sys.argv itself, on purpose
        warnings.filterwarnings("ignore", message=".*provide both args and command line")
        for message in WARNING_NOISE:
            warnings.filterwarnings("ignore", message=message)
        return VAECLI(
            VAE,
            pl.LightningDataModule,
            subclass_mode_data=True,
            args=argv,
            run=run,
            parser_class=VAEArgumentParser,
            save_config_callback=RunFolderConfig,
            save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
            parser_kwargs={"prog": "lightning-vae",
                           **{name: {"epilog": SUBCOMMAND_NOTES, "description": line}
                              for name, line in SUBCOMMAND_HELP.items()}},
        )


def expand_wandb_flag(argv: list[str]) -> list[str]:
    """``--wandb`` → ``--trainer.logger=<WANDB_LOGGER as JSON>``, in place, so that arguments
    after it (``--trainer.logger.project=...``) still apply."""
    flag = f"--trainer.logger={json.dumps(WANDB_LOGGER)}"
    return [flag if arg == "--wandb" else arg for arg in argv]

