"""The commands of ``lightning-vae``: Lightning's subcommands the package offers and its own
verbs, each with its line in ``lightning-vae --help`` (and, for a verb, the function that runs
it)."""

SUBCOMMAND_HELP = {
    "fit": "Train a VAE from a recipe (--config recipes/mnist_vae.yaml).",
    "validate": "Evaluate a checkpoint (--ckpt_path) on the validation split.",
    "test": "Evaluate a checkpoint (--ckpt_path) on the test split, with the IW bound.",
}
"""Lightning's subcommands the package offers, each with its line in ``lightning-vae --help``.
``predict`` is the package's own verb (:mod:`lightning_vae.cli.predict`): Lightning's needs a
``predict_dataloader`` that no datamodule here has, and writes nothing."""


VERBS: dict[str, tuple[str, str]] = {
    "export": ("lightning_vae.cli.export:main",
               "Turn a Lightning checkpoint into a Hugging Face model folder."),
    "predict": ("lightning_vae.cli.predict:main",
                "Write the latents and reconstructions of images or a data set to files."),
    "push": ("lightning_vae.cli.push:main",
             "Upload a model folder (or a checkpoint, exported on the way) to the Hub."),
    "recipes": ("lightning_vae.cli.recipes:main",
                "List the recipes installed with the package, or print one's path."),
    "reconstruct": ("lightning_vae.cli.reconstruct:main",
                    "Encode and decode image files with a model; one PNG per image."),
    "sample": ("lightning_vae.cli.sample:main",
               "Decode draws from a model's prior into one grid image."),
    "sweep": ("lightning_vae.cli.sweep:main",
              "Train one model per β and plot the rate–distortion trade-off."),
    "zoo": ("lightning_vae.cli.zoo:main",
            "List the pretrained models installed with the package."),
}
"""Package verbs: name → ("module:function", the function taking the verb's argv; one line of
help)."""
