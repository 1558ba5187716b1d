"""``--ckpt_path last``: the newest ``last*.ckpt`` of earlier runs of the same model on the same
data. Lightning looks for "last" only in the checkpoint folder of the run being started, which
for a versioned logger is a new, empty ``version_N+1``; and the newest checkpoint of all may be
another recipe's, whose weights would not load or would mean something else."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_vae.hub.fetch import first_line
from lightning_vae.model import VAEModel
from lightning_vae.training.checkpoints import check_checkpoint_file

MODEL_DEFAULTS = {name: parameter.default
                  for name, parameter in VAEModel._hub_mixin_init_parameters.items()
                  if name != "self"}
"""The model's arguments, which decide what its weights are and what input they take (the
preprocessing follows the data module's binarization and crop), with their defaults (for
checkpoints written before an argument existed): ``--ckpt_path last`` takes a checkpoint only
where they equal this run's. The training settings (lr, β and its schedule, the speed options)
and the data module's other arguments (batch size, ...) may change when a run is resumed."""


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


def last_checkpoint(trainer: pl.Trainer, hparams: Mapping[str, Any],
                    data_class: str) -> LastCheckpoint:
    """The newest ``last*.ckpt`` in :func:`checkpoint_folders` of a run of the model ``hparams``
    describe on data of the class named ``data_class``, and the newer ones passed over
    (:func:`misfit` says why)."""
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
        return f"cannot be read: {first_line(error)}"
    saved = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(saved, dict):
        return "no hyper_parameters: not written while training a lightning_vae.VAE"
    data = checkpoint.get("datamodule_hyper_parameters")
    class_path = data.get("_class_path") if isinstance(data, dict) else None
    saved_class = class_path.rsplit(".", 1)[-1] if isinstance(class_path, str) else data_class
    if saved_class != data_class:  # the same class when the checkpoint does not say
        return f"data {saved_class} != {data_class}"
    for name, default in MODEL_DEFAULTS.items():
        theirs = json_value(saved.get(name, default))
        ours = json_value(hparams.get(name, default))
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
