"""The ``lightning-vae`` command: LightningCLI's fit/validate/test (:mod:`.lightning`), plus the
package's verbs, one module each.

``lightning-vae fit --config recipes/mnist_vae.yaml`` trains the default model (``recipes/...``
is found in the current folder, else among the recipes installed with the package). Verbs that
are not Lightning subcommands (``export``, ``push``, ...) are dispatched to their modules before
LightningCLI parses anything, so each keeps its own small argument parser.
"""

import importlib
import os
import sys
from collections.abc import Callable

from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_vae.cli.lightning import expand_wandb_flag, run_lightning
from lightning_vae.cli.parser import HELP_ALL, VAEArgumentParser
from lightning_vae.cli.recipes import resolve_config_arguments
from lightning_vae.cli.verbs import SUBCOMMAND_HELP, VERBS

USER_ERRORS = (OSError, ValueError, MisconfigurationException)
"""What bad input raises (a missing or damaged file, a value out of range, a trainer setting this
machine cannot honour), each with a message that names it and the fix: the command reports the
message without a traceback."""
TRACEBACK_ENV = "LIGHTNING_VAE_TRACEBACK"
WANDB_HINT = "W&B: run `wandb login`, or set WANDB_MODE=offline to log to local files"


def user_errors() -> tuple[type[BaseException], ...]:
    """USER_ERRORS, and W&B's UsageError (no API key, a bad entity) once W&B is loaded: W&B is
    optional and slow to import, so it is never imported just to name its error."""
    wandb_errors = sys.modules.get("wandb.errors")
    return USER_ERRORS + ((wandb_errors.UsageError,) if wandb_errors else ())


DESCRIPTION = ("Train variational autoencoders on PyTorch Lightning; sample, reconstruct, "
               "export and share them.")


def _verb(name: str) -> Callable[[list[str]], object]:
    module_name, function = VERBS[name][0].split(":")
    return getattr(importlib.import_module(module_name), function)


def overview() -> str:
    """``lightning-vae --help``: what the command does and every command in one line each."""
    lines = {**SUBCOMMAND_HELP, **{name: line for name, (_, line) in VERBS.items()}}
    width = max(map(len, lines))
    return "\n".join([
        "usage: lightning-vae COMMAND [options]", "", DESCRIPTION, "", "commands:",
        *(f"  {name.ljust(width)}  {line}" for name, line in lines.items()), "",
        "Each command takes --help. Start with: lightning-vae fit --config recipes/mnist_vae.yaml",
    ])


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lightning-vae`` console script. Bad input (``USER_ERRORS``) ends it
    with its message and status 1; ``LIGHTNING_VAE_TRACEBACK=1`` shows the traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        return
    command = argv[0] if not argv[0].startswith("-") else None
    commands = [*SUBCOMMAND_HELP, *sorted(VERBS)]
    if command is not None and command not in commands:
        sys.exit(f"lightning-vae: error: unknown command {command!r}; choose from "
                 f"{', '.join(commands)} (each takes --help)")
    try:
        if command in VERBS:
            _verb(command)(argv[1:])
        else:
            VAEArgumentParser.full_help = HELP_ALL in argv  # every option, the Trainer's too
            try:
                run_lightning(expand_wandb_flag(resolve_config_arguments(
                    ["--help" if arg == HELP_ALL else arg for arg in argv])))
            finally:
                VAEArgumentParser.full_help = False
    except user_errors() as error:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        program = " ".join(filter(None, ("lightning-vae", command)))
        hint = "" if isinstance(error, USER_ERRORS) else f" ({WANDB_HINT})"
        sys.exit(f"{program}: error: {error}{hint}\n"
                 f"(run with {TRACEBACK_ENV}=1 to see where it was raised)")
