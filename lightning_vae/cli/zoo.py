"""``lightning-vae zoo``: list the pretrained models installed with the package."""

import argparse

from lightning_vae.hub.zoo import ZOO_ROOT, installed, table


def main(argv: list[str]) -> None:
    """``lightning-vae zoo``: list the pretrained models installed with the package."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae zoo",
        description="List the pretrained VAEs installed with lightning-vae; load one with "
                    "lightning_vae.from_pretrained(NAME), offline. Test NLL is minus the "
                    "importance-weighted test log-likelihood with k samples per image, in "
                    "nats per example (lower is better).")
    parser.parse_args(argv)
    if not installed():
        print(f"no zoo models are installed in {ZOO_ROOT}; build them with "
              "`python scripts/build_zoo.py` in a clone of the repository")
        return
    print(table())
