"""The ``lightning-vae`` command: LightningCLI's fit/validate/test/predict, plus package verbs.

``lightning-vae fit --config recipes/mnist_vae.yaml`` trains the default model (``recipes/...``
is found in the current folder, else among the recipes installed with the package). Verbs that
are not Lightning subcommands (``export``, ``push``, ...) are dispatched to their modules before
LightningCLI parses anything, so each keeps its own small argument parser.
"""

import importlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar, TQDMProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_vae.hub import check_checkpoint_file
from lightning_vae.module import VAE
from lightning_vae.recipe_files import resolve_config_arguments

VERBS: dict[str, str] = {
    "export": "lightning_vae.hub:export_main",
    "push": "lightning_vae.hub:push_main",
    "recipes": "lightning_vae.recipe_files:main",
    "reconstruct": "lightning_vae.use_cli:reconstruct_main",
    "sample": "lightning_vae.use_cli:sample_main",
    "sweep": "lightning_vae.sweep:main",
    "zoo": "lightning_vae.zoo:main",
}
"""Package verbs: name → "module:function", the function taking the verb's argv."""

WANDB_LOGGER = {
    "class_path": "pytorch_lightning.loggers.WandbLogger",
    "init_args": {"project": "lightning-vae", "save_dir": "lightning_logs", "log_model": False},
}
"""The logger ``--wandb`` sets: the one recipes/logging/wandb.yaml sets, for runs without the
recipes folder at hand. Later ``--trainer.logger.*`` arguments change it."""


SUBCOMMAND_NOTES = (
    "lightning-vae adds: --config recipes/NAME takes a recipe installed with the package when "
    "there is no such file here (`lightning-vae recipes` lists them); --ckpt_path last is the "
    "newest last.ckpt of this recipe's earlier runs; --wandb logs to Weights & Biases as "
    "recipes/logging/wandb.yaml does. Bad input ends in one message; LIGHTNING_VAE_TRACEBACK=1 "
    "shows the traceback."
)
"""The end of ``lightning-vae fit --help`` (and validate, test, predict): what the package adds
to LightningCLI's options."""

USER_ERRORS = (OSError, ValueError, MisconfigurationException)
"""What bad input raises (a missing or damaged file, a value out of range, a trainer setting this
machine cannot honour), each with a message that names it and the fix: the command reports it in
one line rather than a traceback."""
TRACEBACK_ENV = "LIGHTNING_VAE_TRACEBACK"

PROGRESS_BAR_REFRESH_STEPS = 10
"""How often the progress bar the CLI adds redraws. Lightning's default redraws at every step,
which costs milliseconds (a TQDM redraw and the training loss logged for it): more than a whole
step of the default model on a GPU (docs/results.md)."""


WEIGHT_ARGUMENTS = ("arch", "image_shape", "latent_dim", "arch_options", "likelihood",
                    "likelihood_options", "preprocessing")
"""The VAE arguments that decide what its weights are: ``--ckpt_path last`` takes a checkpoint
only where they equal this run's. The others (lr, β and its schedule, the speed options) and the
data module's arguments (batch size, ...) may change when a run is resumed."""


@dataclass(frozen=True)
class LastCheckpoint:
    """What ``--ckpt_path last`` found: the newest ``last*.ckpt`` of this run's model and data
    (None when none is), and the newer ones passed over, newest first, each with the reason."""

    path: str | None
    passed_over: list[tuple[Path, str]]

    def passed_over_note(self) -> str:
        """The messages' "; passed over N ..., the newest P (reason)"; empty when none was."""
        if not self.passed_over:
            return ""
        newest, reason = self.passed_over[0]
        return (f"; passed over {len(self.passed_over)} last*.ckpt of other models or data, "
                f"the newest {newest} ({reason})")


class VAECLI(LightningCLI):
    """LightningCLI for :class:`VAE` with any LightningDataModule; the model's ``image_shape``
    and ``preprocessing`` are taken from the datamodule so the two can never disagree, and the
    checkpoint records how to prepare new images for the model. Unless the configuration names a
    progress bar or turns it off, the bar redraws every ``PROGRESS_BAR_REFRESH_STEPS`` steps."""

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        config = {**init.get("trainer", {}), **kwargs}
        callbacks = config.get("callbacks") or []
        if not isinstance(callbacks, list):  # one callback, given without a list
            callbacks = [callbacks]
        bar_wanted = config.get("enable_progress_bar") is not False
        if bar_wanted and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, TQDMProgressBar(PROGRESS_BAR_REFRESH_STEPS)]
        return super().instantiate_trainer(**kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then refuse a ``--ckpt_path`` file that is damaged or not a checkpoint, naming
        it, before Lightning reads the file (for its hyperparameters, right after parsing) with
        torch's reader, whose error names neither."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        path = subcommand and self.config[subcommand].get("ckpt_path")
        if path and Path(path).is_file():
            check_checkpoint_file(path)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.image_shape", "model.image_shape", apply_on="instantiate")
        parser.link_arguments("data.preprocessing", "model.preprocessing",
                              apply_on="instantiate")

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

    before_test = before_predict = before_validate

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


def last_checkpoint(trainer: pl.Trainer, hparams: Mapping[str, Any],
                    data_class: str) -> LastCheckpoint:
    """The newest ``last*.ckpt`` of earlier runs of the model ``hparams`` describe on data of
    the class named ``data_class``, for ``--ckpt_path last``.

    Lightning looks for "last" only in the checkpoint folder of the run being started, which for
    a versioned logger is a new, empty ``version_N+1``: it then warns and starts from the
    untrained weights. This looks in :func:`checkpoint_folders`, newest first, and passes over
    checkpoints of other models or data, whose weights would not load or would mean something
    else.
    """
    found = [path for folder in checkpoint_folders(trainer) for path in folder.glob("last*.ckpt")]
    passed_over = []
    for path in sorted(found, key=lambda path: path.stat().st_mtime, reverse=True):
        reason = misfit(path, hparams, data_class)
        if reason is None:
            return LastCheckpoint(str(path), passed_over)
        passed_over.append((path, reason))
    return LastCheckpoint(None, passed_over)


def misfit(path: Path, hparams: Mapping[str, Any], data_class: str) -> str | None:
    """Why the checkpoint at ``path`` is not one of the model ``hparams`` describe on data of
    class ``data_class`` (e.g. "latent_dim 10 != 32"); None when it is. Memory-mapped, so that
    only the few bytes of its hyperparameters are read from a large file."""
    try:
        check_checkpoint_file(path)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # damaged, cut short, not torch's: each reader has its own types
        return f"cannot be read: {(str(error).splitlines() or [type(error).__name__])[0]}"
    saved = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(saved, dict):
        return "no hyper_parameters: not written while training a lightning_vae.VAE"
    data = checkpoint.get("datamodule_hyper_parameters")
    class_path = data.get("_class_path") if isinstance(data, dict) else None
    saved_class = class_path.rsplit(".", 1)[-1] if isinstance(class_path, str) else data_class
    if saved_class != data_class:  # the same class when the checkpoint does not say
        return f"data {saved_class} != {data_class}"
    for name in WEIGHT_ARGUMENTS:
        theirs, ours = json_value(saved.get(name)), json_value(hparams.get(name))
        if theirs != ours:
            return f"{name} {json.dumps(theirs)} != {json.dumps(ours)}"
    return None


def json_value(value: Any) -> Any:
    """``value`` as the JSON value it is written as, so that a tuple equals the same list."""
    return json.loads(json.dumps(value, default=repr))


def checkpoint_folders(trainer: pl.Trainer) -> list[Path]:
    """Where this recipe's runs write checkpoints: each ModelCheckpoint's explicit ``dirpath``,
    every version folder of the first logger, or ``default_root_dir/checkpoints`` without one."""
    folders = [Path(c.dirpath) for c in trainer.checkpoint_callbacks
               if isinstance(c, ModelCheckpoint) and c.dirpath]
    logger = trainer.loggers[0] if trainer.loggers else None
    if logger is not None and logger.save_dir is not None:
        folders += sorted(Path(logger.save_dir, str(logger.name or "")).glob("*/checkpoints"))
    else:
        folders.append(Path(trainer.default_root_dir, "checkpoints"))
    return folders


def run_lightning(argv: list[str], run: bool = True) -> VAECLI:
    """Run a Lightning subcommand (fit, validate, test, predict) with ``argv``; with
    ``run=False``, ``argv`` holds no subcommand and the CLI only builds the model and data."""
    with warnings.catch_warnings():  # main() hands over sys.argv itself, on purpose
        warnings.filterwarnings("ignore", message=".*provide both args and command line")
        return VAECLI(
            VAE,
            pl.LightningDataModule,
            subclass_mode_data=True,
            args=argv,
            run=run,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"epilog": _verbs_help(),
                           **{name: {"epilog": SUBCOMMAND_NOTES} for name in VAECLI.subcommands()}},
        )


def _verb(name: str) -> Callable[[list[str]], object]:
    module_name, function = VERBS[name].split(":")
    return getattr(importlib.import_module(module_name), function)


def _verbs_help() -> str:
    return "Other commands: " + ", ".join(sorted(VERBS)) if VERBS else ""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lightning-vae`` console script. Bad input (``USER_ERRORS``) ends it
    with a one-line message and status 1; ``LIGHTNING_VAE_TRACEBACK=1`` shows the traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    commands = [*VAECLI.subcommands(), *sorted(VERBS)]
    if command is not None and command not in commands:
        sys.exit(f"lightning-vae: error: unknown command {command!r}; choose from "
                 f"{', '.join(commands)} (each takes --help)")
    try:
        if command in VERBS:
            _verb(command)(argv[1:])
        else:
            run_lightning(expand_wandb_flag(resolve_config_arguments(argv)))
    except USER_ERRORS as error:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        program = " ".join(filter(None, ("lightning-vae", command)))
        sys.exit(f"{program}: error: {error}\n"
                 f"(run with {TRACEBACK_ENV}=1 to see where it was raised)")


def expand_wandb_flag(argv: list[str]) -> list[str]:
    """``--wandb`` → ``--trainer.logger=<WANDB_LOGGER as JSON>``, in place, so that arguments
    after it (``--trainer.logger.project=...``) still apply."""
    flag = f"--trainer.logger={json.dumps(WANDB_LOGGER)}"
    return [flag if arg == "--wandb" else arg for arg in argv]


if __name__ == "__main__":
    main()
