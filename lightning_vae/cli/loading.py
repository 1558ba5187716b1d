"""What the model commands share: the model named on the command line (a Hub repo id, a model
folder or a Lightning ``.ckpt`` file), on the device asked for."""

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from lightning_vae.model import VAEModel
from lightning_vae.training.checkpoints import load_checkpoint, model_from_checkpoint


def load_model(source: str, *, trusted: bool = False, revision: str | None = None,
               device: str | torch.device = "cpu") -> VAEModel:
    """A VAE in eval mode on ``device`` from a Lightning checkpoint file, a model folder, a zoo
    name or a Hub repo id (``revision`` applies to the last)."""
    device = usable_device(device)
    if Path(source).is_file() or source.endswith(".ckpt"):  # load_checkpoint names a missing one
        model = model_from_checkpoint(load_checkpoint(source, trusted), source).model
    else:
        model = VAEModel.from_pretrained(source, revision=revision)
    return model.to(device).eval()


def usable_device(name: str | torch.device) -> torch.device:
    """The torch device ``name`` (``--device``) names, refused with the fix where this machine
    cannot run it."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device {name!r} is not a device: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA GPU; "
                         "use --device cpu")
    if device.type == "meta":
        raise ValueError(f"--device {name}: meta tensors hold no values to sample or "
                         "reconstruct; use --device cpu or cuda")
    backend = getattr(torch.backends, device.type, None) or getattr(torch, device.type, None)
    if device.type not in ("cpu", "cuda") and not getattr(backend, "is_available", bool)():
        raise ValueError(f"--device {name}: this torch ({torch.__version__}) has no "
                         f"{device.type} device on this machine; use --device cpu")
    return device


def model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a Hub repo id (user/name), a model folder or a .ckpt file")
    parser.add_argument("--device", default="cpu", help="where to run the model (cpu, cuda, ...)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of MODEL")
    parser.add_argument("--trust-checkpoint", action="store_true", dest="trusted",
                        help="unpickle a checkpoint that weights_only loading refuses (only "
                        "for your own files)")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def at_most(limit: int) -> Callable[[str], int]:
    """An argparse type: a count from 1 to ``limit``."""

    def count(text: str) -> int:
        value = positive(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}, got {value}")
        return value

    return count
