"""Lightning checkpoints of a VAE, read safely: torch's ``weights_only`` loading (tensors and
plain values only), after checking that the file is one ``torch.save`` wrote; then the model and
the facts a model card states. Nothing a file names is imported: the datamodule class a
checkpoint records is looked up in :data:`DATAMODULES`, this package's own. Checkpoints are
written whole or not at all (:class:`AtomicCheckpointIO`)."""

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from lightning_vae import data
from lightning_vae.atomic import replacing
from lightning_vae.hub.card import CardFacts
from lightning_vae.hub.fetch import first_line
from lightning_vae.training.module import VAE, upgrade_state_dict

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"
"""How the files ``torch.save`` writes begin: a zip archive, or (before torch 1.6) a pickle."""
LOCAL_DATA_OPTIONS = ("data_dir", "download", "loader", "num_workers", "pin_memory", "cache_dir",
                      "progress", "strict")
"""Datamodule options about this machine, not the data: left out of the public model card."""


def load_checkpoint(path: str | Path, trusted: bool = False,
                    trust_option: str = "--trust-checkpoint (trusted=True)") -> dict[str, Any]:
    """A Lightning checkpoint, read with ``weights_only=True`` (tensors and plain values only).

    A checkpoint holding other Python objects is refused unless ``trusted``: then it is
    unpickled, which runs code from the file, so only do it for your own checkpoints. The
    refusal names ``trust_option``, the way to say so where it is raised.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint file; a model folder is "
                                "exported already and loads with from_pretrained")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    check_checkpoint_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not trusted:
            raise ValueError(
                f"{path} holds Python objects that safe (weights_only) loading refuses: "
                f"{first_line(error)}. If it is your own checkpoint, pass {trust_option} to "
                "unpickle it"
            ) from None
    except RuntimeError as error:  # torch's reader: a damaged archive
        raise ValueError(f"{path} is not a readable checkpoint ({first_line(error)}); "
                         "it may be damaged: copy it again, or use another checkpoint") from None
    return torch.load(path, map_location="cpu", weights_only=False)


def check_checkpoint_file(path: str | Path) -> None:
    """Refuse a file that ``torch.save`` did not write, or that is cut short, before torch reads
    it: torch's own errors name neither the file nor the cause, and weights_only loading would
    take any non-checkpoint for a checkpoint holding Python objects."""
    path = Path(path)
    with path.open("rb") as file:
        head = file.read(4)
    if head == ZIP_MAGIC:  # torch.save's format since torch 1.6
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is cut short ({path.stat().st_size} bytes, no zip "
                             "directory at its end): copy it again, or use another checkpoint")
    elif not head.startswith(PICKLE_MAGIC):  # the older format, a pickle stream
        raise ValueError(f"{path} is not a PyTorch checkpoint (it starts with {head!r}, not "
                         "with what torch.save writes); pass a .ckpt file written by Lightning")


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> VAE:
    """The training module a checkpoint's ``hyper_parameters`` describe, with its
    ``state_dict`` loaded (its ``model`` is the VAE; its settings are how it was trained)."""
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"{path} lacks hyper_parameters or state_dict: it was not written by Lightning "
            "while training a lightning_vae.VAE"
        )
    args = {key: value for key, value in hparams.items() if not key.startswith("_")}
    if unknown := sorted(set(args) - set(VAE.argument_names())):
        raise ValueError(
            f"{path}: hyper_parameters {unknown} are not arguments of lightning_vae.VAE; "
            "export only checkpoints of that module"
        )
    try:
        model = VAE(**args)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: its hyper_parameters do not build a VAE: {error}") from None
    try:
        upgrade_state_dict(checkpoint["state_dict"])
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"{path}: state_dict does not fit its hyper_parameters: {error}") from None
    return model


def checkpoint_facts(checkpoint: dict[str, Any], path: str | Path) -> CardFacts:
    """What the checkpoint itself records: training steps, the data set (from a datamodule
    that saved its hyperparameters) and the validation ELBO (from a ModelCheckpoint that
    monitored ``val/elbo`` and kept this file among its best)."""
    val_elbo = None
    for key, state in checkpoint.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and state.get("monitor") == "val/elbo":
            scores = {Path(saved).name: score
                      for saved, score in state.get("best_k_models", {}).items()}
            if scores.get(Path(path).name) is not None:
                val_elbo = float(scores[Path(path).name])
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    datamodule = datamodule_class(data)
    options = {key: value for key, value in data.items()
               if not key.startswith("_") and key not in LOCAL_DATA_OPTIONS
               and value is not None}
    return CardFacts(
        dataset=getattr(datamodule, "dataset_name", None),
        data_options=options or None,
        steps=checkpoint.get("global_step"),
        val_elbo=val_elbo,
    )


DATAMODULES: dict[str, type] = {
    path: cls
    for cls in (data.MNISTDataModule, data.FashionMNISTDataModule, data.CelebADataModule,
                data.ImageFolderDataModule, data.DSpritesDataModule)
    for path in (f"{cls.__module__}.{cls.__name__}", f"lightning_vae.{cls.__name__}",
                 f"lightning_vae.data.{cls.__name__}")
}
"""The datamodule classes a checkpoint's ``_class_path`` may name, by module path and by public
name: the only ones ever built from a checkpoint's values. A file cannot make anything else run
(an installed callable such as ``subprocess.Popen`` named there is a plain string)."""


def datamodule_class(hparams: dict[str, Any]) -> type | None:
    """The datamodule class LightningCLI recorded (``_class_path``) when it is one of this
    package's (:data:`DATAMODULES`); None otherwise. Nothing is imported."""
    return DATAMODULES.get(str(hparams.get("_class_path", "")))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each ``.ckpt`` beside its target and renaming it
    in place (:func:`~lightning_vae.atomic.replacing`). Lightning's own writes through a
    temporary file in ``/tmp`` that is then copied over: a full disk cuts the copy and leaves a
    truncated ``.ckpt``; here the previous file stays as it was and the error names it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        with replacing(path) as temporary:
            try:
                torch.save(checkpoint, temporary)
            except RuntimeError as error:  # torch's writer reports a full disk so
                raise OSError(first_line(error)) from error
