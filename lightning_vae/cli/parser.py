"""The parser of ``lightning-vae fit``/``validate``/``test``: LightningCLI's, without
abbreviated options (``--trainer.max_epoch`` is refused, not read as ``max_epochs``), whose errors
are one line suggesting the option meant, and whose ``--help`` shows the options a run usually
sets, the package's datamodules with theirs (``--help-all``: every option)."""

import difflib
import importlib
import inspect
import re
from typing import Any, NoReturn

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningArgumentParser

from lightning_vae.cli.verbs import SUBCOMMAND_HELP

TRAINER_ESSENTIALS = ("accelerator", "devices", "strategy", "precision", "max_epochs",
                      "max_steps", "logger", "callbacks", "default_root_dir", "log_every_n_steps",
                      "val_check_interval", "limit_train_batches", "limit_val_batches",
                      "enable_progress_bar", "gradient_clip_val")
"""The Trainer options ``fit --help`` shows; ``--help-all`` shows the Trainer's every option."""
HELP_ALL = "--help-all"


class VAEArgumentParser(LightningArgumentParser):
    """LightningCLI's parser without abbreviated options, whose errors are the message alone
    (no usage of 60 lines above it), with the closest option suggested for an unknown one, and
    whose subcommands' ``--help`` is short (:meth:`format_help`)."""

    full_help = False
    """Set by ``--help-all``: the subcommands' help lists every option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        """A subcommand's options a run usually sets (the model's, the datamodule's class, the
        main Trainer options), rather than the Trainer's 100 in 640 lines."""
        if self.full_help or self.prog.split()[-1] not in SUBCOMMAND_HELP:
            return super().format_help()
        trainer = {f"--trainer.{name}" for name in TRAINER_ESSENTIALS}
        sections = {
            "options": lambda name: name.startswith("-") and not name.startswith(
                ("--model", "--trainer", "--data", "--optimizer", "--lr_scheduler",
                 "--weights_only")),
            "the model (--model.NAME VALUE)": lambda name: name.startswith("--model."),
            "the data": lambda name: name in ("--data", "--data.help"),
            f"the Trainer's main options (`{self.prog.split()[-1]} {HELP_ALL}` lists all)":
                lambda name: name in trainer,
        }
        formatter = self._get_formatter()
        formatter.add_usage(f"lightning-vae {self.prog.split()[-1]} [--config RECIPE] "
                            "[--GROUP.OPTION VALUE ...]", [], [])
        formatter.add_text(self.description)
        for title, wanted in sections.items():
            formatter.start_section(title)
            formatter.add_arguments([action for action in self._actions
                                     if any(map(wanted, action.option_strings))])
            if title == "the data":
                for line in datamodule_options():
                    formatter.add_text(line)
            formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        raise SystemExit(f"{prog}: error: {condensed(message)}{suggestion(parser, message)}; "
                         f"`{prog} --help` lists the options")


def condensed(message: str) -> str:
    """jsonargparse's report on a class's arguments (a dozen lines: every type it tried) as the
    line that says what was wrong: ``--data: lightning_vae.data.MNISTDataModule: Option
    'data_dirr' is not accepted``."""
    key = re.match(r'Parser key "([^"]+)":', message)
    problem = re.search(r"Problem with given class_path '([^']+)':\s*\n\s*(.+)", message)
    if not (key and problem):
        return message.strip()
    return f"--{key.group(1)}: {problem.group(1)}: {problem.group(2).strip()}"


def datamodule_options() -> list[str]:
    """The package's datamodules, each with its options, for ``fit --help``."""
    import lightning_vae.data as data

    lines = []
    for name in sorted(data.__all__):
        cls = getattr(data, name)
        if isinstance(cls, type) and issubclass(cls, pl.LightningDataModule):
            options = ", ".join(init_arguments(f"lightning_vae.data.{name}"))
            lines.append(f"--data lightning_vae.data.{name} takes {options}.")
    return lines


def option_names(parser: LightningArgumentParser) -> list[str]:
    """Every ``--option`` of ``parser``, nested ones (``--model.latent_dim``) included."""
    return [name for action in parser._actions for name in action.option_strings
            if name.startswith("--")]


def suggestion(parser: LightningArgumentParser, message: str) -> str:
    """``"; did you mean --model.latent_dim?"`` for the unrecognized options of ``message``, or
    the option a class (``--data``'s datamodule) did not accept, when one of the options it
    knows is close (empty when none is)."""
    given, known = [], option_names(parser)
    if match := re.match(r"unrecognized arguments: (.*)", message.strip()):
        given = [arg.split("=", 1)[0] for arg in match.group(1).split() if arg.startswith("--")]
    elif match := re.search(r'Parser key "([^"]+)":[\s\S]*?class_path \'([^\']+)\':\s*\n'
                            r"\s*Option '([^']+)' is not accepted", message):
        key, class_path, option = match.groups()
        given = [f"--{key}.{option}"]
        known = [f"--{key}.{name}" for name in init_arguments(class_path)]
    meant = [close[0] for name in given
             if (close := difflib.get_close_matches(name, known, n=1, cutoff=0.75))]
    return f"; did you mean {' '.join(meant)}?" if meant else ""


def init_arguments(class_path: str) -> list[str]:
    """The constructor arguments of the class ``class_path`` names (none if it cannot be
    imported)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in cls.__mro__:  # a constructor passing **kwargs on takes its parent's too
        parameters = inspect.signature(klass.__init__).parameters.values()
        names += [p.name for p in parameters if p.name != "self" and p.name not in names
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names
