"""``lightning-vae export CHECKPOINT FOLDER``: a Lightning checkpoint of a VAE → a Hugging Face
model folder (config.json, model.safetensors, README.md, samples.png)."""

import argparse

from lightning_vae.hub.card import DISENTANGLEMENT_SCORES
from lightning_vae.training.export import export_checkpoint


def card_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="data set name for the card (default: the "
                        "datamodule's dataset_name)")
    parser.add_argument("--val-elbo", type=float, help="validation ELBO, nats per example "
                        "(default: the checkpoint's val/elbo score)")
    parser.add_argument("--test-elbo", type=float, help="test ELBO, nats per example")
    parser.add_argument("--test-log-likelihood", type=float,
                        help="test log-likelihood (importance-weighted bound, i.e. minus the "
                        "logged test/nll_iw), nats per example")
    parser.add_argument("--log-likelihood-samples", type=int,
                        help="importance samples per image behind --test-log-likelihood; 0 "
                        "says none was computed (iw_samples=0): the card then has no "
                        "log-likelihood row")
    for score in DISENTANGLEMENT_SCORES:
        parser.add_argument(score.option, type=float,
                            help=f"{score.title} on the test split, in [0, 1] (the logged "
                            f"test/{score.metric}), for the card's Disentanglement section")
    parser.add_argument("--trust-checkpoint", action="store_true", dest="trusted",
                        help="trust the checkpoint: unpickle it if weights_only loading "
                        "refuses it, and rebuild its datamodule (one of lightning_vae's only) "
                        "for the card's reconstructions (only for your own files)")


def main(argv: list[str]) -> None:
    """``lightning-vae export CHECKPOINT FOLDER``: a Lightning checkpoint → a model folder."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae export",
        description="Turn a Lightning checkpoint of a VAE into a Hugging Face model folder.")
    parser.add_argument("checkpoint", help="a .ckpt file written by `lightning-vae fit`")
    parser.add_argument("folder", help="the model folder to write (made if missing)")
    parser.add_argument("--repo-id", help="the Hub repo the card's loading snippet names")
    parser.add_argument("--force", action="store_true",
                        help="replace model files (README.md, config.json, ...) in FOLDER that "
                        "no lightning-vae save wrote")
    card_options(parser)
    args = vars(parser.parse_args(argv))
    folder = export_checkpoint(args.pop("checkpoint"), args.pop("folder"), **args)
    print(f"wrote {folder}")
