"""``lightning-vae reconstruct MODEL IMAGES... --out DIR``: encode images of any size, mode and
format (through the model's own preprocessing, :mod:`lightning_vae.model.preprocess`) and decode
them again, one PNG per image::

    lightning-vae reconstruct user/mnist-vae digit.png photos/ --out reconstructions
"""

import argparse
import sys
from pathlib import Path

from lightning_vae.atomic import replacing
from lightning_vae.cli.background import inverted, looks_inverted
from lightning_vae.cli.loading import load_model, model_options, positive
from lightning_vae.data.folder import list_images
from lightning_vae.data.images import open_image
from lightning_vae.model import VAEModel


def output_names(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(image file, its output name) for files and for the images found in folders (kept in
    their subfolders); an input file keeps its stem, with ``.png``."""
    pairs = []
    for given in map(Path, inputs):
        if given.is_dir():
            images, _, unreadable = list_images(given)
            for name, reason in unreadable:
                print(f"skipped {given / name}: {reason}", file=sys.stderr)
            pairs += [(given / name, Path(name).with_suffix(".png")) for name in images]
        elif given.is_file():  # a FIFO or a device is not one: reading it would block
            pairs.append((given, Path(given.stem + ".png")))
        else:
            raise FileNotFoundError(f"no image file or folder at {given}")
    if not pairs:
        raise ValueError(f"no image files in {', '.join(inputs)}")
    seen: dict[Path, Path] = {}
    for source, name in pairs:
        if name in seen:
            raise ValueError(f"{seen[name]} and {source} would both be written as {name}; "
                             "rename one, or reconstruct them in two runs")
        seen[name] = source
    return pairs


def reconstruct_files(model: VAEModel, inputs: list[str], out: str | Path,
                      batch_size: int = 64, invert: bool = False) -> list[Path]:
    """Write the reconstruction of every input image (files, or folders of them; flipped
    first with ``invert``) as a PNG of the model's size into ``out``; returns the files
    written. Images that look inverted to the model are named in a hint on stderr."""
    pairs, out = output_names(inputs), Path(out)
    written, suspects = [], []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        images = [open_image(source, upright=False) for source, _ in chunk]
        images = [inverted(image) for image in images] if invert else images
        batch = model.preprocess(images)
        suspects += [src for (src, _), odd in zip(chunk, looks_inverted(model, batch), strict=True)
                     if odd]
        for (_, name), picture in zip(chunk, model.postprocess(model.reconstruct(batch), "pil"),
                                      strict=True):
            with replacing(out / name) as temporary:
                picture.save(temporary, format="PNG")
            written.append(out / name)
    if suspects:
        which = f"{suspects[0]} and {len(suspects) - 1} more look" if suspects[1:] else (
            f"{suspects[0]} looks")
        fix = "leave out --invert" if invert else "pass --invert"
        print(f"hint: {which} inverted to this model (background light where its images' is "
              f"dark, or the reverse); if the output is noise, {fix}", file=sys.stderr)
    return written


def main(argv: list[str]) -> None:
    """``lightning-vae reconstruct MODEL IMAGES... --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae reconstruct",
        description="Encode images of any size and format with a VAE and decode them again; "
        "writes one PNG per image, of the model's size.")
    model_options(parser)
    parser.add_argument("images", nargs="+", help="image files, or folders of them")
    parser.add_argument("--out", default="reconstructions", help="output folder")
    parser.add_argument("--batch-size", type=positive, default=64, help="images per batch")
    parser.add_argument("--invert", action="store_true",
                        help="flip the grey levels first (black-on-white digits for an MNIST "
                             "model, which draws white on black)")
    args = parser.parse_args(argv)
    model = load_model(args.model, trusted=args.trusted, revision=args.revision,
                       device=args.device)
    written = reconstruct_files(model, args.images, args.out, args.batch_size, args.invert)
    print(f"wrote {len(written)} reconstructions to {args.out}")
