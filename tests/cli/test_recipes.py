"""The recipes installed with the package: ``--config recipes/...`` from any folder, the local
file first, clear errors, and ``lightning-vae recipes``. (tests/test_zoo.py checks that a wheel
holds them and that its console script finds them.)"""

import json
from pathlib import Path

import pytest
import yaml
from test_cli import fit_args

from lightning_vae.cli import main
from lightning_vae.recipe_files import (
    RECIPES_ROOT,
    installed_recipes,
    resolve_config,
    resolve_config_arguments,
)

ROOT = Path(__file__).resolve().parents[1]
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
            "-crecipes/mnist_vae.yaml", "--conf", "mnist_vae.yaml", "--confi=mnist_vae.yaml"]
    recipe = str(RECIPES_ROOT / "mnist_vae.yaml")
    assert resolve_config_arguments(argv) == [
        "fit", "--config", recipe, "-c", str(RECIPES_ROOT / "trainer" / "ddp.yaml"),
        f"--config={RECIPES_ROOT / 'logging' / 'wandb.yaml'}", "--model.beta", "4",
        f"-c={recipe}", f"-c{recipe}", "--conf", recipe, f"--confi={recipe}"]


def test_every_form_of_the_config_flag_reaches_lightning_cli_resolved(elsewhere, capsys):
    with pytest.raises(SystemExit) as stop:  # --print_config prints, then exits
        main(["fit", "-c=recipes/mnist_vae.yaml", "--confi", "recipes/trainer/gpu_fast.yaml",
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
