"""The project's own promises about installing, testing and citing it."""

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The shell commands in the README's first code block: install, test, train."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_install_test_and_train_commands():
    install, test, train = readme_commands()[:3]
    assert "torch==2.13.0" in install and '-e ".[dev]"' in install
    assert test == "python -m pytest"
    assert train == "lightning-vae fit --config recipes/mnist_vae.yaml"
    assert (ROOT / "README.md").read_text().index("```bash") < 600


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    install, test = readme_commands()[:2]
    assert install in ci_lines and test in ci_lines
    assert ci_lines.index(install) < ci_lines.index(test)


def test_pyproject_declares_every_runtime_import_and_constrains_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = {Requirement(dep).name: Requirement(dep) for dep in project["dependencies"]}
    names = set(requirements)
    assert {"torch", "pytorch-lightning", "torchmetrics", "huggingface-hub", "safetensors",
            "jsonargparse", "numpy", "pillow"} <= names
    assert "torchvision" not in names
    assert requirements["torch"].specifier.contains("2.13.0")  # the local CPU wheel
    assert project["scripts"]["lightning-vae"] == "lightning_vae.cli:main"


def test_citation_file_is_valid_cff_and_cites_the_vae_papers():
    from cffconvert import Citation

    text = (ROOT / "CITATION.cff").read_text()
    Citation(text).validate()
    cff = yaml.safe_load(text)
    assert cff["cff-version"] == "1.2.0"
    import lightning_vae

    assert str(cff["version"]) == lightning_vae.__version__
    titles = [ref["title"] for ref in cff["references"]]
    assert "Auto-Encoding Variational Bayes" in titles
    assert any(title.startswith("beta-VAE") for title in titles)
