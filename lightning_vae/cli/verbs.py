"""The package's verbs beside Lightning's subcommands: the name each is called by, and the
function that runs it."""

VERBS: dict[str, str] = {
    "export": "lightning_vae.cli.export:main",
    "push": "lightning_vae.cli.push:main",
    "recipes": "lightning_vae.cli.recipes:main",
    "reconstruct": "lightning_vae.cli.reconstruct:main",
    "sample": "lightning_vae.cli.sample:main",
    "sweep": "lightning_vae.cli.sweep:main",
    "zoo": "lightning_vae.cli.zoo:main",
}
"""Package verbs: name → "module:function", the function taking the verb's argv."""


def verbs_help() -> str:
    """The line ``lightning-vae --help`` ends with, naming the verbs."""
    return "Other commands: " + ", ".join(sorted(VERBS)) if VERBS else ""
