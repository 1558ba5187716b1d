"""The project's own promises about installing, testing and citing it."""

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

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


def requirement_of(requirements: list[str], name: str) -> Requirement:
    [found] = [Requirement(r) for r in requirements if Requirement(r).name == name]
    return found


def test_dependency_ranges_leave_out_releases_without_what_the_package_uses():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dependencies = project["dependencies"]
    lacking = {  # a release without it → the first with it
        # huggingface_hub.errors.RemoteEntryNotFoundError (hub/fetch.py)
        "huggingface-hub": ("0.36.0", "1.0.0"),
        # MeanMetric(nan_strategy="disable") (training/module.py)
        "torchmetrics": ("1.6.0", "1.7.0"),
        # importing it needs pkg_resources, gone from the setuptools that torch pulls in
        "pytorch-lightning": ("2.3.3", "2.4.0"),
    }
    for name, (without, first) in lacking.items():
        specifier = requirement_of(dependencies, name).specifier
        assert not specifier.contains(without) and specifier.contains(first), name


def test_jsonargparse_range_starts_where_lightning_cli_accepts_it():
    from pytorch_lightning import cli

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ours = requirement_of(project["dependencies"], "jsonargparse")
    needed = Requirement(cli._JSONARGPARSE_SIGNATURES_AVAILABLE.requirement)
    assert "signatures" in ours.extras
    [lowest] = [Version(s.version) for s in ours.specifier if s.operator == ">="]
    assert needed.specifier.contains(lowest), (ours, needed)


def test_build_backend_and_dev_extra_have_a_setuptools_that_reads_the_license_expression():
    """``license = "Apache-2.0"`` (PEP 639) needs setuptools 77; 76 refuses pyproject.toml.
    The dev extra brings one for tests/hub/test_zoo.py's ``python -m build --no-isolation``."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(pyproject["project"]["license"], str)
    for requirements in (pyproject["build-system"]["requires"],
                         pyproject["project"]["optional-dependencies"]["dev"]):
        specifier = requirement_of(requirements, "setuptools").specifier
        assert not specifier.contains("76.1.0") and specifier.contains("77.0.3")


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
