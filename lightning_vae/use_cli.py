"""``lightning-vae reconstruct`` and ``lightning-vae sample``: a pretrained VAE in one command.

``MODEL`` is a Hub repo id (``user/name``), a model folder (``save_pretrained`` or
``lightning-vae export``) or a Lightning ``.ckpt`` file. Input images of any size, mode and
format go through the model's own preprocessing (:mod:`lightning_vae.preprocess`)::

    lightning-vae reconstruct user/mnist-vae digit.png photos/ --out reconstructions
    lightning-vae sample user/mnist-vae -n 64 --out grid.png
"""

import argparse
from pathlib import Path

import torch
from PIL import Image

from lightning_vae.atomic import replacing
from lightning_vae.data.folder import list_images
from lightning_vae.hub import load_checkpoint, model_from_checkpoint
from lightning_vae.imaging import make_grid, save_image
from lightning_vae.module import VAE


def load_model(source: str, *, trusted: bool = False, revision: str | None = None,
               device: str | torch.device = "cpu") -> VAE:
    """A VAE in eval mode on ``device`` from a Lightning checkpoint file, a model folder or a
    Hub repo id (``revision`` applies to the last)."""
    device = usable_device(device)
    if Path(source).is_file() or source.endswith(".ckpt"):  # load_checkpoint names a missing one
        model = model_from_checkpoint(load_checkpoint(source, trusted), source)
    else:
        model = VAE.from_pretrained(source, revision=revision)
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
    return device


def output_names(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(image file, its output name) for files and for the images found in folders (kept in
    their subfolders); an input file keeps its stem, with ``.png``."""
    pairs = []
    for given in map(Path, inputs):
        if given.is_dir():
            pairs += [(given / name, Path(name).with_suffix(".png"))
                      for name in list_images(given)[0]]
        elif given.is_file():
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


def open_image(path: Path) -> Image.Image:
    """The decoded image in ``path``; an error names the file when it is not a readable image."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot be decoded as an image ({error})") from error


def reconstruct_files(model: VAE, inputs: list[str], out: str | Path,
                      batch_size: int = 64) -> list[Path]:
    """Write the reconstruction of every input image (files, or folders of them) as a PNG of the
    model's size into ``out``; returns the files written."""
    pairs, out = output_names(inputs), Path(out)
    written = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        images = [open_image(source) for source, _ in chunk]
        for (_, name), picture in zip(chunk, model.postprocess(model.reconstruct(images), "pil"),
                                      strict=True):
            with replacing(out / name) as temporary:
                picture.save(temporary, format="PNG")
            written.append(out / name)
    return written


def sample_grid(model: VAE, n: int, out: str | Path, nrow: int = 8, seed: int = 0) -> Path:
    """Decode ``n`` prior draws (seeded) and write them as one grid image (its format from
    ``out``'s extension), ``nrow`` per row."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    return save_image(make_grid(model.sample(n, generator=generator), nrow=nrow), out)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a Hub repo id (user/name), a model folder or a .ckpt file")
    parser.add_argument("--device", default="cpu", help="where to run the model (cpu, cuda, ...)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of MODEL")
    parser.add_argument("--trust-checkpoint", action="store_true", dest="trusted",
                        help="unpickle a checkpoint that weights_only loading refuses (only "
                        "for your own files)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def reconstruct_main(argv: list[str]) -> None:
    """``lightning-vae reconstruct MODEL IMAGES... --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae reconstruct",
        description="Encode images of any size and format with a VAE and decode them again; "
        "writes one PNG per image, of the model's size.")
    _model_options(parser)
    parser.add_argument("images", nargs="+", help="image files, or folders of them")
    parser.add_argument("--out", default="reconstructions", help="output folder")
    parser.add_argument("--batch-size", type=_positive, default=64)
    args = parser.parse_args(argv)
    model = load_model(args.model, trusted=args.trusted, revision=args.revision,
                       device=args.device)
    written = reconstruct_files(model, args.images, args.out, args.batch_size)
    print(f"wrote {len(written)} reconstructions to {args.out}")


def sample_main(argv: list[str]) -> None:
    """``lightning-vae sample MODEL -n 64 --out grid.png``."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae sample",
        description="Decode draws from the prior N(0, I) of a VAE into one grid PNG.")
    _model_options(parser)
    parser.add_argument("-n", "--num-samples", type=_positive, default=64)
    parser.add_argument("--out", default="samples.png",
                        help="the image file to write (.png, .jpg, .webp, ...)")
    parser.add_argument("--nrow", type=_positive, default=8, help="images per row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = load_model(args.model, trusted=args.trusted, revision=args.revision,
                       device=args.device)
    print(f"wrote {sample_grid(model, args.num_samples, args.out, args.nrow, args.seed)}")
