"""The recipes installed with the package, and ``--config`` paths resolved against them.

The repository's ``recipes/`` folder is installed as ``lightning_vae/recipes``, so every
command in the README works after ``pip install lightning-vae`` too, in any folder:
``--config recipes/mnist_vae.yaml`` names a file in the current folder when there is one (a
clone of the repository, or a copy being edited), and the installed recipe otherwise.
``lightning-vae recipes`` lists them and prints their paths, for ``wandb sweep`` or to copy one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import textwrap
from pathlib import Path

RECIPES_ROOT = Path(__file__).resolve().parents[1] / "recipes"
RECIPES_PREFIX = "recipes/"


def installed_recipes() -> list[str]:
    """Every installed recipe, as its path relative to the recipes folder (``trainer/ddp.yaml``),
    the top-level (training) recipes first."""
    paths = RECIPES_ROOT.rglob("*.yaml") if RECIPES_ROOT.is_dir() else []
    names = [path.relative_to(RECIPES_ROOT).as_posix() for path in paths]
    return sorted(names, key=lambda name: ("/" in name, name))


def resolve_config(value: str) -> str:
    """A ``--config`` value: unchanged when it is a file here (or not a recipe's path), else the
    installed recipe it names, as ``recipes/mnist_vae.yaml`` or ``mnist_vae.yaml``.

    Raises:
        FileNotFoundError: ``recipes/...`` that is neither here nor installed, with the names
            of the installed ones.
    """
    try:
        if Path(value).exists() or Path(value).is_absolute():
            return value
    except (OSError, ValueError):  # an inline configuration, too long or odd for a path
        return value
    name = value.removeprefix(RECIPES_PREFIX)
    if ".." not in Path(name).parts and (RECIPES_ROOT / name).is_file():
        return str(RECIPES_ROOT / name)
    if value.startswith(RECIPES_PREFIX):
        raise FileNotFoundError(
            f"no recipe {value}: not in {Path.cwd() / 'recipes'} nor among the recipes installed "
            f"in {RECIPES_ROOT}: {', '.join(installed_recipes()) or 'none'}"
        )
    return value  # not a recipe: an inline configuration, or a file LightningCLI will report


MOVED_CLASS_PATHS = {
    f"lightning_vae.{module}.{name}": f"lightning_vae.{name}"
    for module, names in (("callbacks", ("ImagePanels", "LatentDiagnostics")),
                          ("host_memory", ("ReuseFreedMemory",)),
                          ("hub", ("PushToHub",)), ("module", ("VAE",)))
    for name in names
}
"""Class paths of 0.1.0 that recipes name and 0.2.0 moved: old → new."""


def check_moved_class_paths(text: str, where: str) -> None:
    """Refuse a recipe or argument naming a class path 0.2.0 moved, in one line that names the
    new one (Lightning's own error would list every callback type it tried)."""
    for old, new in MOVED_CLASS_PATHS.items():
        if re.search(rf"\b{re.escape(old)}\b", text):
            raise ValueError(f"{where} names {old}, which lightning-vae 0.2.0 moved: write "
                             f"{new} instead")


def is_config_flag(flag: str) -> bool:
    """``-c`` or ``--config`` (the parser takes no abbreviation of an option)."""
    return flag in ("-c", "--config")


def resolve_config_arguments(argv: list[str]) -> list[str]:
    """``argv`` with each ``--config`` value passed through :func:`resolve_config`, in every
    form LightningCLI's parser takes: ``--config X``, ``--config=X``, ``-c X``, ``-c=X`` and
    ``-cX``."""
    resolved = list(argv)
    configs = []
    for index, arg in enumerate(argv):
        flag, equals, value = arg.partition("=")
        if is_config_flag(arg) and index + 1 < len(argv):
            resolved[index + 1] = resolve_config(argv[index + 1])
            configs.append(resolved[index + 1])
        elif equals and is_config_flag(flag):
            configs.append(resolve_config(value))
            resolved[index] = f"{flag}={configs[-1]}"
        elif arg.startswith("-c") and len(arg) > len("-c"):
            configs.append(resolve_config(arg.removeprefix("-c")))
            resolved[index] = "-c" + configs[-1]
    for arg in resolved:
        check_moved_class_paths(arg, f"the argument {arg!r}")
    for config in filter(_is_file, configs):
        check_moved_class_paths(Path(config).read_text(encoding="utf-8", errors="replace"),
                                config)
    return resolved


def _is_file(value: str) -> bool:
    """Whether ``value`` names a file (not an inline configuration too long for a path)."""
    try:
        return Path(value).is_file()
    except (OSError, ValueError):
        return False


def summary(name: str) -> str:
    """The first sentence of a recipe's opening comment."""
    lines = []
    for line in (RECIPES_ROOT / name).read_text(encoding="utf-8").splitlines():
        if not line.startswith("# ") or line.startswith("#   "):  # the end, or a command
            break
        lines.append(line.removeprefix("# ").strip())
    text = " ".join(lines)
    return re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0]


def main(argv: list[str]) -> None:
    """``lightning-vae recipes``: list the installed recipes, or print one's path."""
    parser = argparse.ArgumentParser(
        prog="lightning-vae recipes",
        description="List the recipes installed with lightning-vae. `--config recipes/NAME` "
                    "finds them from any folder; a file of that path in the current folder "
                    "takes precedence (copy one there to edit it).")
    parser.add_argument("--path", nargs="?", const="", metavar="NAME",
                        help="print the path of recipe NAME (e.g. sweeps/beta.yaml), or of "
                             "the recipes folder without NAME")
    args = parser.parse_args(argv)
    names = installed_recipes()
    if args.path is not None:
        name = args.path.removeprefix(RECIPES_PREFIX)
        if name and name not in names:
            parser.error(f"no recipe {args.path}; installed: {', '.join(names)}")
        print(RECIPES_ROOT / name if name else RECIPES_ROOT)
        return
    if not names:
        print(f"no recipes are installed in {RECIPES_ROOT}")
        return
    print(f"recipes in {RECIPES_ROOT} (use as --config recipes/NAME):")
    width = max(len(name) for name in names)
    columns = shutil.get_terminal_size((100, 24)).columns
    for name in names:
        print(textwrap.fill(summary(name), max(columns, 60),
                            initial_indent=f"  {name.ljust(width)}  ",
                            subsequent_indent=" " * (width + 4)))
