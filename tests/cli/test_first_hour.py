"""What a new user meets first: `lightning-vae --help`, a mistyped option, a run that fails at
once, and Lightning's own chatter. Each mistake ends in one line that names it and the fix."""

import argparse
import logging
import warnings
from pathlib import Path

import pytest

from lightning_vae.cli import main
from lightning_vae.cli.verbs import SUBCOMMAND_HELP, VERBS

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "recipes" / "mnist_vae.yaml")


def error_of(argv: list[str]) -> str:
    """The message ``lightning-vae ARGV`` stops with."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    return str(stopped.value.code)


def test_help_describes_the_tool_and_every_command_in_one_line(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    assert "Lightning Trainer command line tool" not in out
    assert out.startswith("usage: lightning-vae COMMAND [options]")
    for command in [*SUBCOMMAND_HELP, *VERBS]:
        (line,) = [line for line in out.splitlines() if line.split()[:1] == [command]]
        assert len(line.split()) > 4, line  # a description, not the name alone
    assert len(out.splitlines()) < 25


@pytest.mark.parametrize(("typo", "meant"), [
    ("--model.latent_dims", "--model.latent_dim"),
    ("--trainer.max_epoch", "--trainer.max_epochs"),  # argparse would have taken it as a prefix
    ("--data.data_dirr", "--data.data_dir"),
    ("--data.init_args.batchsize", "--data.batch_size"),
])
def test_a_mistyped_option_is_one_line_that_suggests_the_option_meant(typo, meant):
    message = error_of(["fit", "--config", RECIPE, typo, "3"])
    assert len(message.splitlines()) == 1
    assert message.startswith("lightning-vae fit: error: ")
    assert typo.rsplit(".", 1)[-1] in message
    assert f"did you mean {meant}?" in message
    assert message.endswith("`lightning-vae fit --help` lists the options")


def test_an_option_far_from_any_gets_no_suggestion():
    message = error_of(["fit", "--config", RECIPE, "--completely.unrelated", "1"])
    assert message.startswith("lightning-vae fit: error: unrecognized arguments: "
                              "--completely.unrelated 1; `lightning-vae fit --help`")


def test_a_class_missing_an_argument_is_named_in_one_line():
    message = error_of(["fit", "--config", RECIPE, "--trainer.logger", "CSVLogger"])
    assert len(message.splitlines()) == 1
    assert ("--trainer.logger: pytorch_lightning.loggers.CSVLogger: the following arguments are "
            "required: save_dir") in message


def test_fit_help_is_short_and_shows_the_datamodules_options(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    short = capsys.readouterr().out
    words = " ".join(short.split())
    assert words.startswith("usage: lightning-vae fit [--config RECIPE] [--GROUP.OPTION VALUE "
                            f"...] {SUBCOMMAND_HELP['fit']}")
    assert ("--data lightning_vae.data.MNISTDataModule takes data_dir, batch_size, binarize, "
            "val_size,") in words
    assert "--data lightning_vae.data.FashionMNISTDataModule takes data_dir, batch_size, " \
           "binarize, val_size," in words  # its parent's options, which it passes on
    assert "--data.help CLASS" in words and "--data.NAME VALUE" in words
    assert "--model.latent_dim" in short and "--trainer.max_epochs" in short
    assert "--trainer.detect_anomaly" not in short
    with pytest.raises(SystemExit):
        main(["fit", "--help-all"])
    full = capsys.readouterr().out
    assert "--trainer.detect_anomaly" in full and len(full.splitlines()) > 500
    assert len(short.splitlines()) < len(full.splitlines()) / 1.8


def fit_args(data_dir: Path, root: Path) -> list[str]:
    return ["fit", "--config", RECIPE, "--data.data_dir", str(data_dir), "--data.download",
            "false", "--data.val_size", "64", "--trainer.max_steps", "1",
            "--trainer.limit_val_batches", "1", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root),
            "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", str(root)]


def test_a_run_that_fails_before_training_leaves_no_empty_version_folder(tmp_path):
    message = error_of(fit_args(tmp_path / "no-data", tmp_path))
    assert message.startswith("lightning-vae fit: error: MNIST: ")
    logs = tmp_path / "lightning_logs"
    assert not logs.exists() or list(logs.iterdir()) == []


def test_a_run_shows_none_of_lightnings_advertising_and_keeps_its_folder(
        tmp_path, tiny_mnist_dir, caplog):
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(fit_args(tiny_mnist_dir, tmp_path))
    assert "GPU available" in caplog.text  # Lightning's information stays
    assert "💡" not in caplog.text and "litlogger" not in caplog.text
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    run = tmp_path / "lightning_logs" / "version_0"  # a run that trained keeps its folder
    assert (run / "config.yaml").is_file() and list(run.glob("checkpoints/*.ckpt"))



@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_option_of_every_verb_says_what_it_does(verb, capsys, monkeypatch):
    seen: list[argparse.ArgumentParser] = []
    parse = argparse.ArgumentParser.parse_known_args

    def recording(parser, *args, **kwargs):  # keeps the verb's own parser as it parses --help
        seen.append(parser)
        return parse(parser, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", recording)
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    assert capsys.readouterr().out.startswith(f"usage: lightning-vae {verb}")
    undocumented = [action.dest for action in seen[0]._actions if not action.help]
    assert undocumented == [], f"lightning-vae {verb}: options without help: {undocumented}"
