"""``python -m lightning_vae.cli``: the ``lightning-vae`` command."""

from lightning_vae.cli.main import main

main()
