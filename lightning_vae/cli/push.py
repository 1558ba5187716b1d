"""``lightning-vae push CHECKPOINT_OR_FOLDER --repo-id user/name``: upload a model folder, or a
checkpoint exported on the way, to the Hugging Face Hub."""

import argparse

from lightning_vae.cli.export import card_options
from lightning_vae.training.export import push


def main(argv: list[str]) -> None:
    """``lightning-vae push CHECKPOINT_OR_FOLDER --repo-id user/name``: upload to the Hub."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae push",
        description="Upload a model folder, or a checkpoint exported on the way, to the Hub.")
    parser.add_argument("source", help="a model folder, or a checkpoint to export first")
    parser.add_argument("--repo-id", required=True,
                        help="the Hub repository: user/name, or a bare name in your account")
    parser.add_argument("--private", action="store_true", default=None,
                        help="create the repository private (an existing one keeps its setting)")
    parser.add_argument("--commit-message", help="the message of the Hub commit")
    card_options(parser)
    args = {key: value for key, value in vars(parser.parse_args(argv)).items()
            if value is not None}
    print(push(args.pop("source"), args.pop("repo_id"), **args))
