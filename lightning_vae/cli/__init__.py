"""The ``lightning-vae`` command line."""

from lightning_vae.cli.lightning import run_lightning
from lightning_vae.cli.main import main

__all__ = ["main", "run_lightning"]
