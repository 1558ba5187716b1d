"""``lightning-vae sample MODEL -n 64 --out grid.png``: decode draws from a VAE's prior into one
grid image."""

import argparse
from pathlib import Path

import torch

from lightning_vae.cli.loading import at_most, load_model, model_options, positive
from lightning_vae.imaging import make_grid, save_image
from lightning_vae.model import VAEModel

MAX_SAMPLES = 4096
"""Most images one grid holds (64 rows of 64): ``-n 10000000`` would need hundreds of GB."""


def sample_grid(model: VAEModel, n: int, out: str | Path, nrow: int = 8, seed: int = 0) -> Path:
    """Decode ``n`` prior draws (seeded) and write them as one grid image (its format from
    ``out``'s extension), ``nrow`` per row."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    return save_image(make_grid(model.sample(n, generator=generator), nrow=nrow), out)


def main(argv: list[str]) -> None:
    """``lightning-vae sample MODEL -n 64 --out grid.png``."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae sample",
        description="Decode draws from the prior N(0, I) of a VAE into one grid PNG.")
    model_options(parser)
    parser.add_argument("-n", "--num-samples", type=at_most(MAX_SAMPLES), default=64,
                        help=f"images to draw (default: 64, at most {MAX_SAMPLES})")
    parser.add_argument("--out", default="samples.png",
                        help="the image file to write (.png, .jpg, .webp, ...)")
    parser.add_argument("--nrow", type=positive, default=8, help="images per row")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the prior draws: the same seed, the same grid")
    args = parser.parse_args(argv)
    model = load_model(args.model, trusted=args.trusted, revision=args.revision,
                       device=args.device)
    print(f"wrote {sample_grid(model, args.num_samples, args.out, args.nrow, args.seed)}")
