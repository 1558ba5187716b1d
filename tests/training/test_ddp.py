"""Two-process DDP on the CPU (gloo), through the real command line: `python -m lightning_vae.cli
fit|validate|test ... --config recipes/trainer/cpu_ddp.yaml`, on tiny generated MNIST.

What must hold with several ranks: each rank trains on its own shard; validation and test metrics
cover every example exactly once (the evaluation shards are uneven here: 65 images on 2 ranks) and
equal those of one process on the same weights; checkpoints, logs, W&B runs, image panels and
Hub pushes happen once, on rank zero; the ranks draw different sampling noise.
"""

import csv
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import pytorch_lightning as pl
import torch
import yaml
from conftest import write_tiny_mnist
from torch import nn

from lightning_vae import LatentDiagnostics
from lightning_vae.cli import main
from lightning_vae.data import MNISTDataModule
from lightning_vae.training.checkpoints import load_checkpoint, model_from_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CPU_DDP = ROOT / "recipes" / "trainer" / "cpu_ddp.yaml"
TESTS = Path(__file__).resolve().parent
IMPORTABLE = (TESTS, TESTS.parent)  # test_ddp (NoiseProbe), and the conftest it imports
VAL_SIZE = TEST_SIZE = 65  # odd: rank 0 gets 33 examples (2 batches of 32), rank 1 gets 32 (1)
REPO_ID = "someone/ddp-vae"
DATA_OPTIONS = {"download": False, "val_size": VAL_SIZE, "batch_size": 32,
                "eval_batch_size": 32, "binarize": "dynamic"}


# --- a local Hub: the HTTP endpoints huggingface_hub's create_repo and upload_folder call --------


class LocalHub(BaseHTTPRequestHandler):
    """Answers repo creation, metadata validation, preupload and commit like the Hub does for
    small files, and records the requests in ``requests`` (method, path)."""

    requests: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or "{}"
                          ) if "/commit/" not in self.path else None
        self.requests.append(("POST", self.path))
        host = f"http://{self.headers['Host']}"
        if self.path == "/api/repos/create":
            self.reply({"url": f"{host}/{body['organization']}/{body['name']}"})
        elif self.path == "/api/validate-yaml":
            self.reply({})
        elif "/preupload/" in self.path:
            self.reply({"files": [{"path": f["path"], "uploadMode": "regular",
                                   "shouldIgnore": False} for f in body["files"]]})
        elif "/commit/" in self.path:
            self.reply({"commitUrl": f"{host}/{REPO_ID}/commit/{'a' * 40}",
                        "commitOid": "a" * 40})
        else:
            self.reply({"error": f"no such endpoint {self.path}"}, 404)

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path))
        self.reply({"error": f"no such endpoint {self.path}"}, 404)

    def reply(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def local_hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LocalHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


# --- running the command line -----------------------------------------------------------------


class NoiseProbe(pl.Callback):
    """Records, on every rank, the seed of the module's noise generator in force when each
    training step's loss is computed (it drew that step's ε), and writes
    ``noise-rank<R>.json``."""

    def __init__(self, folder: str) -> None:
        self.folder, self.seeds = Path(folder), []

    def on_before_backward(self, trainer: pl.Trainer, module: pl.LightningModule,
                           loss: torch.Tensor) -> None:
        self.seeds.append([trainer.global_step, module.noise.generator.initial_seed()])

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        (self.folder / f"noise-rank{trainer.global_rank}.json").write_text(json.dumps(self.seeds))


def model_and_data(data_dir: Path, iw_samples: int = 0) -> dict:
    return {
        "seed_everything": 0,
        "model": {"arch": "mlp", "arch_options": {"hidden_dims": [32]}, "latent_dim": 4,
                  "iw_samples": iw_samples, "beta_schedule": {"name": "linear", "steps": 4}},
        "data": {"class_path": "lightning_vae.data.MNISTDataModule",
                 "init_args": {"data_dir": str(data_dir), **DATA_OPTIONS}},
    }


def quiet_trainer(root: Path) -> dict:
    return {"enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1,
            "default_root_dir": str(root),
            "logger": {"class_path": "pytorch_lightning.loggers.CSVLogger",
                       "init_args": {"save_dir": str(root)}}}


def fit_config(data_dir: Path, root: Path) -> dict:
    """Two epochs with everything that must happen once: two ModelCheckpoints (the best model
    and the latest one, with last.ckpt), PushToHub, image panels, CSV and W&B logs."""
    trainer = quiet_trainer(root) | {"max_epochs": 2}
    trainer["logger"] = [trainer["logger"], {
        "class_path": "pytorch_lightning.loggers.WandbLogger",
        "init_args": {"save_dir": str(root), "project": "ddp-test", "offline": True}}]
    checkpoint = "pytorch_lightning.callbacks.ModelCheckpoint"
    trainer["callbacks"] = [
        {"class_path": checkpoint, "init_args": {
            "dirpath": str(root / "checkpoints"), "monitor": "val/elbo", "mode": "max",
            "filename": "best-epoch{epoch:03d}", "auto_insert_metric_name": False}},
        {"class_path": checkpoint, "init_args": {
            "dirpath": str(root / "checkpoints"), "save_last": True,
            "filename": "latest-epoch{epoch:03d}", "auto_insert_metric_name": False}},
        {"class_path": "lightning_vae.PushToHub",
         "init_args": {"repo_id": REPO_ID, "folder": str(root / "hub")}},
        {"class_path": "lightning_vae.ImagePanels"},
        {"class_path": "lightning_vae.LatentDiagnostics"},
        {"class_path": "test_ddp.NoiseProbe", "init_args": {"folder": str(root)}},
    ]
    return model_and_data(data_dir) | {"trainer": trainer}


def write_yaml(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(cwd: Path, *args: str, hub: str | None = None) -> None:
    """``python -m lightning_vae.cli ARGS`` on two CPU processes; fails the test on an error."""
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", WANDB_SILENT="true",
               PYTHONPATH=os.pathsep.join([*map(str, IMPORTABLE),
                                           os.environ.get("PYTHONPATH", "")]))
    if hub:  # a token for the local Hub only, which offline mode would refuse to reach
        env |= {"HF_ENDPOINT": hub, "HF_TOKEN": "hf_local_test_token"}
        env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run([sys.executable, "-m", "lightning_vae.cli", *args, "--config",
                           str(CPU_DDP)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def logged(root: Path) -> list[dict[str, str]]:
    (log,) = root.glob("lightning_logs/version_*/metrics.csv")
    return list(csv.DictReader(log.open()))


def last_values(rows: list[dict[str, str]], prefix: str) -> dict[str, float]:
    """The last logged value of every metric named ``prefix...``."""
    values = {}
    for row in rows:
        values |= {key: float(value) for key, value in row.items()
                   if key.startswith(prefix) and value != ""}
    return values


@dataclass
class DDPFit:
    data_dir: Path
    root: Path


@pytest.fixture(scope="module")
def ddp_fit(tmp_path_factory: pytest.TempPathFactory, local_hub: str) -> DDPFit:
    """One two-process fit, shared by the tests that read what it wrote."""
    base = tmp_path_factory.mktemp("ddp")
    data_dir = write_tiny_mnist(base / "data", n_train=256, n_test=TEST_SIZE)
    root = base / "fit"
    LocalHub.requests.clear()
    run_cli(base, "fit", "--config", str(write_yaml(root / "run.yaml", fit_config(data_dir, root))),
            hub=local_hub)
    return DDPFit(data_dir, root)


# --- the trainer fragments --------------------------------------------------------------------


@pytest.mark.parametrize(("fragment", "accelerator", "devices"),
                         [("ddp.yaml", "gpu", -1), ("cpu_ddp.yaml", "cpu", 2)])
def test_a_trainer_fragment_turns_a_recipe_into_a_ddp_run_and_keeps_the_rest(
        fragment, accelerator, devices, capsys):
    recipe = ROOT / "recipes" / "mnist_vae.yaml"
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(recipe), "--config", str(ROOT / "recipes" / "trainer" /
                                                               fragment), "--print_config"])
    assert done.value.code == 0
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    assert (trainer["strategy"], trainer["accelerator"], trainer["devices"]) == (
        "ddp", accelerator, devices)
    recipe_trainer = yaml.safe_load(recipe.read_text())["trainer"]
    assert trainer["max_epochs"] == recipe_trainer["max_epochs"]
    assert len(trainer["callbacks"]) == len(recipe_trainer["callbacks"])


# --- fit --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ddp_fit_shards_the_data_and_writes_each_checkpoint_once(ddp_fit):
    names = sorted(p.name for p in (ddp_fit.root / "checkpoints").iterdir())
    assert len(names) == 3 and names[0].startswith("best-epoch")  # no "-v1" duplicates
    assert names[1:] == ["last.ckpt", "latest-epoch001.ckpt"]
    last = torch.load(ddp_fit.root / "checkpoints" / "last.ckpt", weights_only=False)
    # 191 training images: 96 per rank (one repeated to even the shards), 3 steps of 32 per
    # epoch. One process would take 6 steps per epoch.
    assert last["global_step"] == 6
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches": 3}]


@pytest.mark.slow
def test_ddp_fit_exports_and_pushes_one_model_from_rank_zero(ddp_fit):
    (weights,) = ddp_fit.root.rglob("model.safetensors")
    assert weights.parent == ddp_fit.root / "hub"
    assert {"config.json", "README.md"} <= {p.name for p in weights.parent.iterdir()}
    commits = [path for method, path in LocalHub.requests if "/commit/" in path]
    assert commits == [f"/api/models/{REPO_ID}/commit/main"]


@pytest.mark.slow
def test_ddp_fit_logs_once_from_rank_zero(ddp_fit):
    (version,) = (ddp_fit.root / "lightning_logs").iterdir()
    assert len(list((ddp_fit.root / "wandb").glob("offline-run-*"))) == 1
    panels = sorted(p.name for p in (version / "images" / "panels" / "samples").iterdir())
    assert len(panels) == 2  # one per epoch
    steps = [int(r["step"]) for r in logged(ddp_fit.root) if r.get("train/loss")]
    assert steps == list(range(6))  # each step logged once, not once per rank


@pytest.mark.slow
def test_ddp_ranks_draw_different_noise_at_every_step(ddp_fit):
    seeds = {rank: json.loads((ddp_fit.root / f"noise-rank{rank}.json").read_text())
             for rank in (0, 1)}
    assert [step for step, _ in seeds[0]] == [step for step, _ in seeds[1]] == list(range(6))
    all_seeds = [seed for rank in (0, 1) for _, seed in seeds[rank]]
    assert len(set(all_seeds)) == 12


def single_process_validate(data_dir: Path, checkpoint: Path) -> dict[str, float]:
    model = model_from_checkpoint(load_checkpoint(checkpoint, trusted=True), checkpoint)
    pl.seed_everything(0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         callbacks=[LatentDiagnostics()])
    (metrics,) = trainer.validate(model, MNISTDataModule(str(data_dir), **DATA_OPTIONS),
                                  verbose=False)
    return {key: float(value) for key, value in metrics.items()}


@pytest.mark.slow
def test_ddp_fit_validation_metrics_cover_every_example_once(ddp_fit):
    """The posterior's KL (in total and per dimension, from LatentDiagnostics) and the active
    units do not depend on the sampling noise, so the two ranks' epoch values equal one
    process's to float precision; a repeated example would not."""
    ddp = last_values(logged(ddp_fit.root), "val/")
    one = single_process_validate(ddp_fit.data_dir, ddp_fit.root / "checkpoints" / "last.ckpt")
    for key in ("val/kl", "val/active_units", *(f"val/kl_dim/{i}" for i in range(4))):
        assert ddp[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key


# --- validate and test ------------------------------------------------------------------------


def nearly_deterministic(checkpoint: Path, out: Path) -> Path:
    """``checkpoint`` with the encoder's log-variance outputs fixed at -30 (σ ≈ 3e-7): the
    single-sample ELBO then hardly depends on the noise, and one process and two ranks, which
    draw different noise, must agree to float precision. The posterior means are spread 20
    times wider, so that examples differ clearly in KL (after 6 steps they hardly do)."""
    state = load_checkpoint(checkpoint, trusted=True)
    module = model_from_checkpoint(state, checkpoint)
    model = module.model
    head = [m for m in model.encoder.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.weight[model.latent_dim:] = 0
        head.bias[model.latent_dim:] = -30
        head.weight[: model.latent_dim] *= 20
        head.bias[: model.latent_dim] *= 20
    state["state_dict"] = module.state_dict()
    torch.save(state, out)
    return out


STAGE_PREFIX = {"validate": "val/", "test": "test/"}


def evaluate(stage: str, ddp_fit: DDPFit, name: str, ddp: bool) -> dict[str, float]:
    """``lightning-vae <stage>`` of the nearly deterministic checkpoint, on two processes or in
    this one; the logged ``<stage>/`` metrics."""
    folder = ddp_fit.root.parent / name
    folder.mkdir()
    checkpoint = nearly_deterministic(ddp_fit.root / "checkpoints" / "last.ckpt",
                                      folder / "model.ckpt")
    config = write_yaml(folder / "eval.yaml", model_and_data(ddp_fit.data_dir, iw_samples=2)
                        | {"trainer": quiet_trainer(folder) | {"accelerator": "cpu"}})
    args = [stage, "--config", str(config), "--ckpt_path", str(checkpoint)]
    if ddp:
        run_cli(folder, *args)
    else:
        main(args)
    return last_values(logged(folder), STAGE_PREFIX[stage])


def padded_mean_kl(data_dir: Path, checkpoint: Path) -> tuple[float, float]:
    """Mean KL over the 65 validation examples, and as a DistributedSampler that pads 65 to 66
    (repeating the first example) would count it."""
    data = MNISTDataModule(str(data_dir), **DATA_OPTIONS)
    data.setup("validate")
    x = torch.cat([images for images, _ in data.val_dataloader()])
    model = model_from_checkpoint(load_checkpoint(checkpoint, trusted=True), checkpoint).model
    with torch.no_grad():
        kl = model.encode(x).kl()
    return kl.mean().item(), torch.cat([kl, kl[:1]]).mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["validate", "test"])
def test_ddp_evaluation_equals_one_process_on_the_same_weights(ddp_fit, stage, tmp_path,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    prefix = STAGE_PREFIX[stage]
    ddp = evaluate(stage, ddp_fit, f"{stage}-ddp", ddp=True)
    one = evaluate(stage, ddp_fit, f"{stage}-one", ddp=False)
    compared = {key for key in one if key != "test/nll_iw"}  # importance samples: noisy
    assert {f"{prefix}{term}" for term in ("elbo", "recon", "kl", "loss")} <= compared
    assert ddp.keys() == one.keys()
    for key in compared:
        assert ddp[key] == pytest.approx(one[key], rel=1e-5, abs=1e-5), key
    if stage == "validate":  # the check can tell: a repeated example moves the mean far more
        mean, padded = padded_mean_kl(ddp_fit.data_dir, ddp_fit.root.parent / "validate-one"
                                      / "model.ckpt")
        assert one["val/kl"] == pytest.approx(mean, rel=1e-5)
        assert abs(padded - mean) > 10 * 1e-5 * abs(mean)  # ten times the tolerance
