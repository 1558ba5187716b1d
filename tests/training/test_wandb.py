"""Weights & Biases: offline runs read back from wandb's own run files, the β sweep file, and
a package that never imports wandb unless a run uses it."""

import json
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from lightning_vae.cli import main, run_lightning
from lightning_vae.cli.lightning import WANDB_LOGGER, expand_wandb_flag

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "mnist_vae.yaml"
SWEEP_FILE = ROOT / "recipes" / "sweeps" / "beta.yaml"
PANELS = ("reconstructions", "samples", "traversals", "interpolations")


def tiny_fit_args(data_dir: Path, root: Path) -> list[str]:
    """Arguments after ``fit --config ...``: a 2-step epoch and its validation on tiny data,
    files under ``root``."""
    return ["--data.init_args.data_dir", str(data_dir), "--data.init_args.download", "false",
            "--data.init_args.val_size", "64", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
            "--trainer.log_every_n_steps", "1", "--trainer.default_root_dir", str(root)]


@pytest.fixture
def offline_env(tmp_path, monkeypatch) -> dict[str, str]:
    """W&B offline and silent, writing under tmp_path/wandb_dir; returns the environment
    for subprocesses."""
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "WANDB_DIR": str(tmp_path / "wandb_dir")}
    (tmp_path / "wandb_dir").mkdir()
    monkeypatch.delenv("WANDB_SERVICE", raising=False)  # a service this process may have left
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)


# --- reading an offline run -------------------------------------------------------------------

BLOCK, HEADER = 32768, struct.Struct("<IHB")  # crc32, length, kind: LevelDB's log format
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(run_file: Path) -> list:
    """The ``wandb_internal_pb2.Record``s of an offline run's ``run-<id>.wandb`` file.

    wandb writes its records in LevelDB's log format (32 KiB blocks of CRC-checked chunks) after
    a 7-byte ``:W&B`` header. wandb 0.31 ships no Python reader for it (the old
    ``wandb.sdk.internal.datastore`` is gone), so this is one, checking every CRC.
    """
    from wandb.proto.wandb_internal_pb2 import Record

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a wandb run file"
    records, position, pending = [], 7, b""
    while position + HEADER.size <= len(data):
        if BLOCK - position % BLOCK < HEADER.size:  # a block's tail too short for a header
            position += BLOCK - position % BLOCK
            continue
        crc, length, kind = HEADER.unpack_from(data, position)
        chunk = data[position + HEADER.size:position + HEADER.size + length]
        position += HEADER.size + length
        if kind == 0:  # zero padding at the end of the file
            break
        assert crc == zlib.crc32(chunk, zlib.crc32(bytes([kind]))), f"bad CRC in {run_file}"
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@dataclass
class OfflineRun:
    """What one offline run recorded: run facts, config, history rows, artifact types."""

    folder: Path
    group: str = ""
    name: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)

    def keys(self) -> set[str]:
        return {key for row in self.history for key in row}


def read_offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    runs = []
    for folder in sorted(wandb_dir.glob("wandb/offline-run-*")):
        (run_file,) = folder.glob("run-*.wandb")
        run = OfflineRun(folder)
        for record in wandb_records(run_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.group, run.name = record.run.run_group, record.run.display_name
            elif kind == "config":
                run.config.update({item.key: json.loads(item.value_json)
                                   for item in record.config.update})
            elif kind == "history":
                run.history.append({item.key or "/".join(item.nested_key):
                                    json.loads(item.value_json) for item in record.history.item})
            elif kind == "artifact":
                run.artifacts.append(record.artifact.type)
        runs.append(run)
    return runs


# --- the logger, the flag, the fragment ------------------------------------------------------


def test_the_wandb_flag_sets_the_logger_of_the_recipe_fragment():
    fragment = yaml.safe_load((ROOT / "recipes" / "logging" / "wandb.yaml").read_text())
    assert fragment["trainer"]["logger"] == WANDB_LOGGER
    argv = expand_wandb_flag(["fit", "--wandb", "--trainer.logger.init_args.project=mine"])
    assert argv[0] == "fit" and argv[2] == "--trainer.logger.init_args.project=mine"
    assert argv[1] == "--trainer.logger=" + json.dumps(WANDB_LOGGER)


@pytest.mark.parametrize(("fragment", "logger"), [("wandb", "WandbLogger"),
                                                  ("tensorboard", "TensorBoardLogger")])
def test_each_logging_fragment_adds_its_logger_to_a_recipe(fragment, logger, tiny_mnist_dir):
    cli = run_lightning(["--config", str(RECIPE),
                         "--config", str(ROOT / "recipes" / "logging" / f"{fragment}.yaml"),
                         "--data.init_args.data_dir", str(tiny_mnist_dir)], run=False)
    assert [type(each).__name__ for each in cli.trainer.loggers] == [logger]
    assert cli.trainer.loggers[0].save_dir == "lightning_logs"


def test_offline_fit_records_elbo_terms_hyperparameters_panels_and_checkpoints(
        tiny_mnist_dir, tmp_path, offline_env):
    import wandb

    main(["fit", "--config", str(RECIPE), *tiny_fit_args(tiny_mnist_dir, tmp_path), "--wandb",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "wandb_dir"),
          "--trainer.logger.init_args.log_model", "true", "--model.beta", "2.5"])
    wandb.finish()  # what the end of a `lightning-vae fit` process does, then stop the
    wandb.teardown()  # wandb service, whose address (WANDB_SERVICE) later subprocesses would get
    (run,) = read_offline_runs(tmp_path / "wandb_dir")
    assert {"train/loss", "train/recon", "train/kl", "train/elbo", "train/beta"} <= run.keys()
    assert {"val/loss", "val/recon", "val/kl", "val/elbo", "val/active_units",
            "val/kl_dim/0", "val/kl_dim/31"} <= run.keys()
    steps = [row["trainer/global_step"] for row in run.history if "train/elbo" in row]
    assert steps == [0, 1]
    assert run.config["beta"] == 2.5
    assert run.config["beta_schedule"] == "constant"
    assert (run.config["arch"], run.config["latent_dim"]) == ("conv", 32)
    assert run.config["binarize"] == "dynamic"
    assert run.config["dataset"] == "mnist"
    expected = {"reconstructions": (62, 242), "samples": (242, 242),
                "traversals": (962, 212), "interpolations": (122, 302)}  # 28-pixel tiles
    for name, (height, width) in expected.items():
        (row,) = [row for row in run.history if f"panels/{name}/filenames" in row]
        assert (row[f"panels/{name}/height"], row[f"panels/{name}/width"]) == (height, width)
        (media,) = row[f"panels/{name}/filenames"]
        assert (run.folder / "files" / media).is_file()
    assert any("diagnostics/kl_per_dim/filenames" in row for row in run.history)
    assert "model" in run.artifacts  # log_model: the checkpoints as a W&B model artifact
    # the run's own folder (beside its checkpoints) holds its config and its panels as PNGs;
    # none is written where every W&B run of this save_dir would overwrite it
    (folder,) = (tmp_path / "wandb_dir" / "lightning-vae").iterdir()
    assert folder.name == run.folder.name.rsplit("-", 1)[-1]  # the W&B run id
    assert yaml.safe_load((folder / "config.yaml").read_text())["model"]["beta"] == 2.5
    assert list(folder.glob("checkpoints/*.ckpt"))
    assert {path.parent.name for path in folder.glob("images/panels/*/*.png")} == set(PANELS)
    assert not (tmp_path / "wandb_dir" / "config.yaml").exists()


# --- the W&B sweep file ----------------------------------------------------------------------


def sweep_command(config: dict, beta: float) -> list[str]:
    """The command a W&B agent runs for one grid point, built by wandb's own functions."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    args = create_sweep_command_args({"args": {"model.beta": {"value": beta}}})["args"]
    command = []
    for part in create_sweep_command(list(config["command"])):
        command += args if part == "${args}" else [part]
    return command


def test_the_beta_sweep_file_has_what_wandb_requires():
    config = yaml.safe_load(SWEEP_FILE.read_text())
    assert config["method"] == "grid"
    assert config["metric"] == {"name": "val/elbo", "goal": "maximize"}
    values = config["parameters"]["model.beta"]["values"]
    assert values == sorted(values) and len(values) >= 3 and min(values) > 0
    command = config["command"]
    assert config.get("program") or command
    assert command[:2] == ["lightning-vae", "fit"] and command[-1] == "${args}"
    configs = [command[i + 1] for i, part in enumerate(command) if part == "--config"]
    assert configs == ["recipes/mnist_vae.yaml", "recipes/logging/wandb.yaml"]
    assert all((ROOT / path).is_file() for path in configs)


def test_the_arguments_wandb_passes_set_beta_in_the_cli(tiny_mnist_dir):
    command = sweep_command(yaml.safe_load(SWEEP_FILE.read_text()), 4)
    assert command[-1] == "--model.beta=4"
    cli = run_lightning(["--config", str(RECIPE), "--data.init_args.data_dir", str(tiny_mnist_dir),
                         "--data.init_args.val_size", "64", "--trainer.logger", "false",
                         command[-1]], run=False)
    assert cli.model.hparams.beta == 4.0


@pytest.mark.slow
def test_the_sweep_command_trains_one_grid_point_offline(tiny_mnist_dir, tmp_path, offline_env):
    command = sweep_command(yaml.safe_load(SWEEP_FILE.read_text()), 4)
    command[0] = str(Path(sys.executable).with_name("lightning-vae"))  # the installed script
    command += [*tiny_fit_args(tiny_mnist_dir, tmp_path),
                "--trainer.logger.init_args.save_dir", str(tmp_path / "wandb_dir")]
    done = subprocess.run(command, cwd=ROOT, env=offline_env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = read_offline_runs(tmp_path / "wandb_dir")
    assert run.config["beta"] == 4.0
    assert {"train/elbo", "val/elbo"} <= run.keys()


@pytest.mark.slow
def test_a_local_sweep_with_wandb_groups_its_runs(tiny_mnist_dir, tmp_path, offline_env):
    out = tmp_path / "sweep"
    main(["sweep", "--config", str(RECIPE), "--beta", "0.5,8", "--out", str(out),
          "--group", "betas", "--parallel", "2", "--",
          *tiny_fit_args(tiny_mnist_dir, tmp_path), "--wandb",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "wandb_dir")])
    runs = read_offline_runs(tmp_path / "wandb_dir")
    assert sorted((run.group, run.name) for run in runs) == [("betas", "beta=0.5"),
                                                             ("betas", "beta=8")]
    assert sorted(run.config["beta"] for run in runs) == [0.5, 8.0]
    assert "| 8 |" in (out / "summary.md").read_text()  # read from the CSV log beside W&B


# --- wandb only when used --------------------------------------------------------------------

NO_WANDB_SCRIPT = """
import sys
import lightning_vae
from lightning_vae.cli import main
assert "wandb" not in sys.modules, "import lightning_vae imported wandb"
main(sys.argv[1:])
assert "wandb" not in sys.modules, "a CSV-logged fit imported wandb"
"""


@pytest.mark.slow
def test_the_package_and_a_csv_logged_fit_never_import_wandb(tiny_mnist_dir, tmp_path):
    args = ["fit", "--config", str(RECIPE), *tiny_fit_args(tiny_mnist_dir, tmp_path),
            "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(tmp_path)]
    done = subprocess.run([sys.executable, "-c", NO_WANDB_SCRIPT, *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(tmp_path.glob("lightning_logs/version_0/images/panels/samples/*.png"))


def test_a_fit_logging_to_wandb_without_an_api_key_ends_in_one_line_naming_the_fix(
        tiny_mnist_dir, tmp_path):
    """W&B online with no key (a fresh home, no WANDB_API_KEY): its UsageError is reported in
    one line, with how to log in or log offline, instead of a 60-line traceback."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env |= {"HOME": str(tmp_path), "WANDB_MODE": "online", "WANDB_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "lightning_vae.cli", "fit", "--config", str(RECIPE),
         *tiny_fit_args(tiny_mnist_dir, tmp_path), "--wandb"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-2]
    assert error.startswith("lightning-vae fit: error: No API key configured")
    assert "wandb login" in error and "WANDB_MODE=offline" in error
