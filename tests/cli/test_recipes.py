"""The recipes installed with the package: ``--config recipes/...`` from any folder, the local
file first, every one parsed by the command, clear errors (also for a class path 0.2.0 moved),
and ``lightning-vae recipes``. (tests/hub/test_zoo.py checks that a wheel holds them and that
its console script finds them.)"""

import importlib
import itertools
import json
from pathlib import Path

import pytest
import yaml
from test_lightning import fit_args

from lightning_vae.cli import main
from lightning_vae.cli.recipes import (
    MOVED_CLASS_PATHS,
    RECIPES_ROOT,
    installed_recipes,
    resolve_config,
    resolve_config_arguments,
)

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY_RECIPES = sorted(path.relative_to(ROOT / "recipes").as_posix()
                            for path in (ROOT / "recipes").rglob("*.yaml"))


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current folder without recipes."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_every_recipe_of_the_repository_is_installed_training_recipes_first():
    names = installed_recipes()
    assert sorted(names) == REPOSITORY_RECIPES
    assert names[0] == "celeba_beta_vae.yaml" and names[-1] == "trainer/gpu_fast.yaml"
    for name in names:
        assert (RECIPES_ROOT / name).read_bytes() == (ROOT / "recipes" / name).read_bytes()


def test_config_arguments_name_the_installed_recipes_from_a_folder_without_them(elsewhere):
    argv = ["fit", "--config", "recipes/mnist_vae.yaml", "-c", "trainer/ddp.yaml",
            "--config=recipes/logging/wandb.yaml", "--model.beta", "4", "-c=mnist_vae.yaml",
            "-crecipes/mnist_vae.yaml"]
    recipe = str(RECIPES_ROOT / "mnist_vae.yaml")
    assert resolve_config_arguments(argv) == [
        "fit", "--config", recipe, "-c", str(RECIPES_ROOT / "trainer" / "ddp.yaml"),
        f"--config={RECIPES_ROOT / 'logging' / 'wandb.yaml'}", "--model.beta", "4",
        f"-c={recipe}", f"-c{recipe}"]


def test_every_form_of_the_config_flag_reaches_lightning_cli_resolved(elsewhere, capsys):
    with pytest.raises(SystemExit) as stop:  # --print_config prints, then exits
        main(["fit", "-c=recipes/mnist_vae.yaml", "--config", "recipes/trainer/gpu_fast.yaml",
              "--print_config"])
    assert stop.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["arch"] == "conv" and config["model"]["cuda_graph"] is True


def test_a_file_in_the_current_folder_wins_over_the_installed_recipe(elsewhere):
    (elsewhere / "recipes").mkdir()
    (elsewhere / "recipes" / "mnist_vae.yaml").write_text("seed_everything: 7\n")
    (elsewhere / "mnist_vae.yaml").write_text("seed_everything: 8\n")
    assert resolve_config("recipes/mnist_vae.yaml") == "recipes/mnist_vae.yaml"
    assert resolve_config("mnist_vae.yaml") == "mnist_vae.yaml"


def test_inline_configurations_and_other_paths_pass_unchanged(elsewhere):
    inline = json.dumps({"trainer": {"max_epochs": 1}})
    too_long_for_a_file_name = json.dumps({"model": {"arch_options": {"hidden_dims": [8] * 200}}})
    argv = ["--config", inline, "--config", too_long_for_a_file_name, "--config", "mine.yaml",
            "--config", "/nowhere/mnist_vae.yaml", "--config", "../recipes/mnist_vae.yaml",
            "--trainer.max_epochs", "recipes/x.yaml"]
    assert resolve_config_arguments(argv) == argv


def test_a_missing_recipe_stops_the_command_saying_where_it_looked(elsewhere):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", "recipes/mnist_vea.yaml"])
    message = str(stop.value.code)
    assert message.startswith("lightning-vae fit: error: no recipe recipes/mnist_vea.yaml")
    assert str(elsewhere / "recipes") in message and str(RECIPES_ROOT) in message
    assert all(name in message for name in REPOSITORY_RECIPES)


def test_fit_trains_from_an_installed_recipe_in_a_folder_without_recipes(elsewhere,
                                                                          tiny_mnist_dir):
    main(fit_args(Path("recipes/mnist_vae.yaml"), tiny_mnist_dir, elsewhere, steps=2))
    run = elsewhere / "lightning_logs" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    config = yaml.safe_load((run / "config.yaml").read_text())
    recipe = yaml.safe_load((ROOT / "recipes" / "mnist_vae.yaml").read_text())
    assert config["model"]["arch_options"] == recipe["model"]["arch_options"]
    assert config["trainer"]["max_steps"] == 2


def lightning_configs(recipe: str) -> list[str]:
    """The ``--config`` values that take ``recipe``: a training recipe (top level) alone, a
    fragment (trainer/, logging/) after the default model's, a W&B sweep's those of its
    command."""
    text = yaml.safe_load((ROOT / "recipes" / recipe).read_text())
    if "command" in text:
        command = text["command"]
        assert command[:2] == ["lightning-vae", "fit"] and text["program"] == "lightning-vae"
        return [value for flag, value in itertools.pairwise(command) if flag == "--config"]
    if "/" not in recipe:
        return [f"recipes/{recipe}"]
    return [FRAGMENT_BASES.get(recipe, "recipes/mnist_vae.yaml"), f"recipes/{recipe}"]


FRAGMENT_BASES = {"trainer/cpu_hour.yaml": "recipes/mnist_hvae.yaml"}
"""The recipe a fragment is made for, where it is not the default model's."""


def test_the_cpu_hour_fragment_is_the_hierarchical_recipe_at_half_width_and_a_short_warm_up():
    """A config file replaces a dict option whole, so the fragment repeats the recipe's
    ``arch_options`` and ``beta_schedule``: they must differ only where it means to."""
    recipe = yaml.safe_load((ROOT / "recipes" / "mnist_hvae.yaml").read_text())["model"]
    fragment = yaml.safe_load((ROOT / "recipes" / "trainer" / "cpu_hour.yaml").read_text())
    model = fragment["model"]
    assert model["arch_options"] == {**recipe["arch_options"], "width": 32}
    assert model["beta_schedule"] == {**recipe["beta_schedule"], "steps": 1290}
    assert fragment["trainer"]["max_time"] == "00:01:00:00"


@pytest.mark.parametrize("recipe", REPOSITORY_RECIPES)
def test_every_recipe_parses_as_the_command_reads_it(recipe, elsewhere, capsys):
    """Every class path and argument of the recipe resolves (``--print_config`` parses the
    whole configuration, then exits without building anything)."""
    configs = lightning_configs(recipe)
    assert configs and all(config.removeprefix("recipes/") in installed_recipes()
                           for config in configs)
    with pytest.raises(SystemExit) as stop:
        main(["fit", *(arg for config in configs for arg in ("--config", config)),
              "--print_config"])
    assert stop.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["arch"] and config["data"]["class_path"].startswith("lightning_vae.")


OLD_CALLBACK_RECIPE = """\
trainer:
  callbacks:
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
    - class_path: lightning_vae.callbacks.ImagePanels
"""


@pytest.mark.parametrize("form", [["--config", "{}"], ["--config={}"], ["-c", "{}"], ["-c{}"]],
                         ids=" ".join)
def test_a_recipe_naming_a_class_path_of_0_1_0_stops_in_one_line_naming_the_new_one(
        form, tmp_path, capsys):
    path = tmp_path / "old.yaml"
    path.write_text(OLD_CALLBACK_RECIPE)
    with pytest.raises(SystemExit) as stop:
        main(["fit", *(arg.format(path) for arg in form)])
    error, hint = str(stop.value.code).splitlines()
    assert error == (f"lightning-vae fit: error: {path} names lightning_vae.callbacks.ImagePanels,"
                     " which lightning-vae 0.2.0 moved: write lightning_vae.ImagePanels instead")
    assert hint == "(run with LIGHTNING_VAE_TRACEBACK=1 to see where it was raised)"
    assert capsys.readouterr().err == ""  # nothing from LightningCLI: it never ran


def test_an_argument_naming_a_class_path_of_0_1_0_is_refused_naming_the_new_one(tmp_path):
    argument = "--trainer.callbacks+=lightning_vae.host_memory.ReuseFreedMemory"
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", "recipes/mnist_vae.yaml", argument])
    assert str(stop.value.code).splitlines()[0] == (
        f"lightning-vae fit: error: the argument {argument!r} names "
        "lightning_vae.host_memory.ReuseFreedMemory, which lightning-vae 0.2.0 moved: write "
        "lightning_vae.ReuseFreedMemory instead")


def resolves(class_path: str) -> bool:
    module, name = class_path.rsplit(".", 1)
    try:
        return hasattr(importlib.import_module(module), name)
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("old, new", sorted(MOVED_CLASS_PATHS.items()))
def test_each_moved_class_path_is_gone_and_its_new_one_is_public(old, new):
    import lightning_vae

    assert not resolves(old) and resolves(new)
    assert new.removeprefix("lightning_vae.") in lightning_vae.__all__


def test_recipes_verb_lists_each_recipe_with_the_first_sentence_of_its_comment(capsys):
    main(["recipes"])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"recipes in {RECIPES_ROOT} (use as --config recipes/NAME):"
    listed = [line.split()[0] for line in out.splitlines()[1:] if not line.startswith("     ")]
    assert listed == installed_recipes()
    unwrapped = " ".join(out.split())
    assert ("mnist_vae.yaml The default model: a convolutional VAE on dynamically binarized "
            "MNIST. logging/tensorboard.yaml Log to TensorBoard") in unwrapped
    assert "iwae_mnist_mlp.yaml The VAE setting of the IWAE paper (Burda et al. 2016," in unwrapped


def test_recipes_verb_prints_a_recipes_path_or_the_folder_and_refuses_unknown_names(capsys):
    main(["recipes", "--path", "sweeps/beta.yaml"])
    main(["recipes", "--path", "recipes/mnist_vae.yaml"])
    main(["recipes", "--path"])
    assert capsys.readouterr().out.splitlines() == [
        str(RECIPES_ROOT / "sweeps" / "beta.yaml"), str(RECIPES_ROOT / "mnist_vae.yaml"),
        str(RECIPES_ROOT)]
    with pytest.raises(SystemExit):
        main(["recipes", "--path", "sweeps/gamma.yaml"])
    error = capsys.readouterr().err
    assert "no recipe sweeps/gamma.yaml; installed: celeba_beta_vae.yaml" in error
