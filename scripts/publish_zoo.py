"""Push every installed zoo model (``lightning_vae.hub.zoo``) to the Hugging Face Hub repo of its
name, its folder as it is: config.json, model.safetensors, the card and its picture.

    HF_TOKEN=... python scripts/publish_zoo.py [--only lightning-vae/mnist-vae] [--private]

The token is checked before the first upload, and each folder is checked to load as a model
(:func:`lightning_vae.push`), so nothing is uploaded when credentials are missing.
"""

import argparse

from lightning_vae import push
from lightning_vae.hub import zoo
from lightning_vae.hub.format import require_token


def main(argv: list[str] | None = None) -> list[str]:
    """Push the zoo; returns the commit URLs, one per model, in zoo order."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[m.name for m in zoo.ZOO],
                        help="push only these zoo models (default: all installed)")
    parser.add_argument("--private", action="store_true", default=None,
                        help="create missing repos as private")
    args = parser.parse_args(argv)
    models = [model for model in zoo.installed() if not args.only or model.name in args.only]
    if not models:
        raise SystemExit(f"no zoo models to push in {zoo.ZOO_ROOT}; build them with "
                         "scripts/build_zoo.py")
    token = require_token(models[0].name, None)
    urls = []
    for model in models:
        urls.append(push(model.folder, model.name, private=args.private, token=token,
                         commit_message=f"Upload {model.name} from the lightning-vae zoo"))
        print(f"{model.name}: {urls[-1]}", flush=True)
    return urls


if __name__ == "__main__":
    main()
