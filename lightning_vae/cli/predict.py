"""``lightning-vae predict MODEL``: what a trained model makes of images, written to files.

For image files or folders, or for a split of any datamodule a recipe configures::

    lightning-vae predict user/mnist-vae digits/ --out predictions
    lightning-vae predict last.ckpt --config recipes/mnist_vae.yaml --split test --out predictions

Writes ``latents.npz`` (``mean`` and ``std`` of q(z|x), one row per image; ``names``: the image
files, or the examples' indices in the split; ``labels`` when the data has them) and, unless
``--no-reconstructions``, one PNG per image in ``reconstructions/`` (the decoded posterior mean).
"""

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lightning_vae.atomic import replacing
from lightning_vae.cli.loading import load_model, model_options, positive
from lightning_vae.cli.recipes import resolve_config_arguments
from lightning_vae.cli.reconstruct import output_names
from lightning_vae.data.images import open_image
from lightning_vae.model import VAEModel

SPLITS = ("train", "val", "test")
LATENTS_FILE = "latents.npz"
RECONSTRUCTIONS_FOLDER = "reconstructions"


def image_batches(inputs: list[str], batch_size: int
                  ) -> Iterator[tuple[list, list[str], Tensor | None]]:
    """(PIL images, output names, no labels) of the image files and folders ``inputs``."""
    pairs = output_names(inputs)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        images = [open_image(source, upright=False) for source, _ in chunk]
        yield images, [str(name) for _, name in chunk], None


def datamodule_batches(configs: list[str], overrides: list[str], split: str, limit: int | None
                       ) -> Iterator[tuple[Tensor, list[str], Tensor | None]]:
    """(images, their indices in ``split`` as names, labels) of the datamodule the configs
    (recipes) and ``--data.*`` overrides describe, as ``fit`` would build it."""
    from lightning_vae.cli.lightning import run_lightning  # Lightning's CLI: only when needed

    argv = [arg for config in configs for arg in ("--config", config)]
    quiet = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:  # the trainer built on the way reports devices and seeds: not used here
        logger.setLevel(logging.WARNING)
    try:
        datamodule = run_lightning([*argv, *overrides, "--trainer.logger", "false"], run=False
                                   ).datamodule
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    datamodule.prepare_data()
    datamodule.setup("fit" if split in ("train", "val") else "test")
    loader = getattr(datamodule, "train_dataloader" if split == "train"
                     else f"{split}_dataloader")()
    seen = 0
    for batch in loader:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        labels = batch[1] if isinstance(batch, list | tuple) and len(batch) > 1 else None
        if limit is not None:
            images = images[:limit - seen]
            labels = None if labels is None else labels[:limit - seen]
        yield images, [str(seen + i) for i in range(len(images))], labels
        seen += len(images)
        if limit is not None and seen >= limit:
            return


@torch.no_grad()
def predict(model: VAEModel, batches: Iterator, out: str | Path, reconstructions: bool = True
            ) -> dict[str, Path]:
    """Encode every batch (images of any kind the model's ``preprocess`` takes, their names,
    labels or None) and write ``latents.npz`` and, with ``reconstructions``, one PNG per image
    into ``out``; returns what was written ("latents", "reconstructions")."""
    out = Path(out)
    means, stds, names, labels = [], [], [], []
    for images, batch_names, batch_labels in batches:
        posterior = model.encode(images)
        means.append(posterior.mean.float().cpu().numpy())
        stds.append(posterior.std.float().cpu().numpy())
        names += batch_names
        if batch_labels is not None:
            labels.append(np.asarray(batch_labels.cpu()))
        if reconstructions:
            pictures = model.postprocess(model.decode(posterior.mode()), "pil")
            for name, picture in zip(batch_names, pictures, strict=True):
                path = (out / RECONSTRUCTIONS_FOLDER / name).with_suffix(".png")
                with replacing(path) as temporary:
                    picture.save(temporary, format="PNG")
    if not names:
        raise ValueError("no images to predict: the inputs or the data split are empty")
    arrays = {"mean": np.concatenate(means), "std": np.concatenate(stds), "names": np.array(names)}
    if labels and sum(map(len, labels)) == len(names):
        arrays["labels"] = np.concatenate(labels)
    written = {"latents": out / LATENTS_FILE}
    out.mkdir(parents=True, exist_ok=True)
    with replacing(written["latents"]) as temporary, open(temporary, "wb") as file:
        np.savez(file, **arrays)
    if reconstructions:
        written["reconstructions"] = out / RECONSTRUCTIONS_FOLDER
    return written


def main(argv: list[str]) -> None:
    """``lightning-vae predict MODEL (IMAGES... | --config RECIPE [--split S]) --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae predict", allow_abbrev=False,
        description="Encode images, or a split of the data set a recipe configures, with a VAE: "
                    f"writes {LATENTS_FILE} (posterior mean and std per image) and the "
                    f"reconstructions as PNGs. Options --data.NAME VALUE change the recipe's "
                    "datamodule as in `lightning-vae fit`.")
    model_options(parser)
    parser.add_argument("images", nargs="*", help="image files, or folders of them")
    parser.add_argument("--config", "-c", action="append", default=[],
                        help="a recipe whose datamodule supplies the images; repeat for several")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="the datamodule's split to encode (default: test)")
    parser.add_argument("--limit", type=positive, help="encode only the split's first N images")
    parser.add_argument("--out", default="predictions", help="output folder")
    parser.add_argument("--batch-size", type=positive, default=64,
                        help="images per batch (image files; a datamodule uses its own)")
    parser.add_argument("--reconstructions", action=argparse.BooleanOptionalAction, default=True,
                        help="write the reconstructions as PNGs (default: yes)")
    args, overrides = parser.parse_known_args(argv)
    if bad := [arg for arg in overrides if arg.startswith("-") and not arg.startswith("--data.")]:
        parser.error(f"unrecognized arguments: {' '.join(bad)}; `lightning-vae predict --help` "
                     "lists the options")
    if bool(args.images) == bool(args.config):
        parser.error("give image files or folders, or --config RECIPE for a data set (not both)")
    if overrides and not args.config:
        parser.error(f"{overrides[0]} changes a recipe's datamodule: add --config RECIPE")
    model = load_model(args.model, trusted=args.trusted, revision=args.revision,
                       device=args.device)
    if args.images:
        batches = image_batches(args.images, args.batch_size)
    else:
        configs = resolve_config_arguments([arg for c in args.config for arg in ("--config", c)])
        batches = datamodule_batches(configs[1::2], overrides, args.split, args.limit)
    written = predict(model, batches, args.out, args.reconstructions)
    print("wrote " + ", ".join(str(path) for path in written.values()))
