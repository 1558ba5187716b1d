"""The ``lightning-vae`` command: LightningCLI's fit/validate/test/predict, plus package verbs.

``lightning-vae fit --config recipes/mnist_vae.yaml`` trains the default model. Verbs that are not
Lightning subcommands (``export``, ``push``, ...) are dispatched to their modules before
LightningCLI parses anything, so each keeps its own small argument parser.
"""

import importlib
import json
import sys
import warnings
from collections.abc import Callable

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from lightning_vae.module import VAE

VERBS: dict[str, str] = {
    "export": "lightning_vae.hub:export_main",
    "push": "lightning_vae.hub:push_main",
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


class VAECLI(LightningCLI):
    """LightningCLI for :class:`VAE` with any LightningDataModule; the model's ``image_shape``
    and ``preprocessing`` are taken from the datamodule so the two can never disagree, and the
    checkpoint records how to prepare new images for the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.image_shape", "model.image_shape", apply_on="instantiate")
        parser.link_arguments("data.preprocessing", "model.preprocessing",
                              apply_on="instantiate")

    def before_fit(self) -> None:
        """Name the data set in every logger's run config (Lightning logs the datamodule's
        arguments but not its class)."""
        dataset = getattr(self.datamodule, "dataset_name", None) or type(self.datamodule).__name__
        for logger in self.trainer.loggers:
            logger.log_hyperparams({"dataset": dataset})


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
            parser_kwargs={"epilog": _verbs_help()},
        )


def _verb(name: str) -> Callable[[list[str]], object]:
    module_name, function = VERBS[name].split(":")
    return getattr(importlib.import_module(module_name), function)


def _verbs_help() -> str:
    return "Other commands: " + ", ".join(sorted(VERBS)) if VERBS else ""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lightning-vae`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in VERBS:
        _verb(argv[0])(argv[1:])
    else:
        run_lightning(expand_wandb_flag(argv))


def expand_wandb_flag(argv: list[str]) -> list[str]:
    """``--wandb`` → ``--trainer.logger=<WANDB_LOGGER as JSON>``, in place, so that arguments
    after it (``--trainer.logger.project=...``) still apply."""
    flag = f"--trainer.logger={json.dumps(WANDB_LOGGER)}"
    return [flag if arg == "--wandb" else arg for arg in argv]


if __name__ == "__main__":
    main()
