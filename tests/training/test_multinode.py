"""Multi-node training proved on one machine: two "nodes" of one CPU process each, started by
the package's own ``scripts/torchrun_multinode.sh`` (torchrun, rendezvous on 127.0.0.1, gloo),
train and write one checkpoint, see the ranks torchrun gave them, and log the validation
metrics one process computes on the same weights. The SLURM script's command is checked by
its dry run."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from conftest import write_tiny_mnist
from test_ddp import (
    IMPORTABLE,
    last_values,
    logged,
    model_and_data,
    quiet_trainer,
    single_process_validate,
    write_yaml,
)

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN_SCRIPT = ROOT / "scripts" / "torchrun_multinode.sh"
SLURM_SCRIPT = ROOT / "scripts" / "slurm_multinode.sbatch"


class RankProbe(pl.Callback):
    """Writes ``rank<R>.json``: the ranks and sizes this process trained with."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        ranks = {"global_rank": trainer.global_rank, "node_rank": trainer.node_rank,
                 "local_rank": trainer.local_rank, "world_size": trainer.world_size,
                 "num_nodes": trainer.num_nodes, "backend": trainer.strategy.process_group_backend}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(ranks))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def script_env(**variables: str) -> dict[str, str]:
    """This environment, with the venv's ``torchrun`` first on PATH, one thread per process
    and the test modules importable (for RankProbe)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    python_path = os.pathsep.join([*map(str, IMPORTABLE), str(ROOT),
                                   os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PATH=path, PYTHONPATH=python_path, OMP_NUM_THREADS="1",
                **variables)


@pytest.mark.slow
def test_two_nodes_started_by_the_torchrun_script_train_as_one_job(tmp_path):
    data_dir = write_tiny_mnist(tmp_path / "data", n_train=256, n_test=65)
    root = tmp_path / "fit"
    checkpoint = {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(root / "checkpoints"), "save_last": True}}
    probe = {"class_path": "test_multinode.RankProbe", "init_args": {"folder": str(root)}}
    trainer = quiet_trainer(root) | {"max_epochs": 2, "callbacks": [checkpoint, probe]}
    recipe = write_yaml(root / "run.yaml", model_and_data(data_dir) | {"trainer": trainer})
    port = str(free_port())
    nodes = [subprocess.Popen(
        ["bash", str(TORCHRUN_SCRIPT), str(recipe), "--trainer.accelerator", "cpu"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=script_env(NNODES="2", NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=port, GPUS_PER_NODE="1"))
        for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-4000:]

    ranks = [json.loads((root / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [(r["global_rank"], r["node_rank"], r["local_rank"]) for r in ranks] == [
        (0, 0, 0), (1, 1, 0)]
    assert all(r["world_size"] == 2 and r["num_nodes"] == 2 and r["backend"] == "gloo"
               for r in ranks)
    names = sorted(p.name for p in (root / "checkpoints").iterdir())
    assert names == ["epoch=1-step=6.ckpt", "last.ckpt"]  # once, not once per node
    # 191 training images, 96 per rank, 3 steps of 32 an epoch: the data was sharded.
    one = single_process_validate(data_dir, root / "checkpoints" / "last.ckpt")
    two = last_values(logged(root), "val/")
    for key in ("val/kl", "val/active_units"):  # noise-free terms: equal to float precision
        assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key


def dry_run(script: Path, *args: str, **variables: str) -> list[str]:
    done = subprocess.run(["bash", str(script), *args], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, DRY_RUN="1", **variables), timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_slurm_script_runs_one_fit_per_task_across_the_allocation():
    command = dry_run(SLURM_SCRIPT, "recipes/mnist_vae.yaml", "--trainer.max_epochs", "3",
                      SLURM_NTASKS_PER_NODE="4(x2)", SLURM_JOB_NUM_NODES="2")
    assert command == [
        "srun", "lightning-vae", "fit", "--config", "recipes/mnist_vae.yaml",
        "--config", "recipes/trainer/ddp.yaml", "--trainer.num_nodes", "2",
        "--trainer.devices", "4", "--trainer.default_root_dir", "runs/mnist_vae",
        "--trainer.max_epochs", "3"]


def test_the_torchrun_script_names_this_node_and_the_master():
    command = dry_run(TORCHRUN_SCRIPT, "recipes/mnist_vae.yaml", "--trainer.max_epochs", "3",
                      NNODES="2", NODE_RANK="1", MASTER_ADDR="10.0.0.1", GPUS_PER_NODE="8")
    assert command[:12] == ["torchrun", "--nnodes", "2", "--node_rank", "1", "--nproc_per_node",
                            "8", "--master_addr", "10.0.0.1", "--master_port", "29500", "-m"]
    assert command[-6:] == ["--trainer.num_nodes", "2", "--trainer.devices", "8",
                            "--trainer.max_epochs", "3"]


def test_the_torchrun_script_names_what_is_missing():
    done = subprocess.run(["bash", str(TORCHRUN_SCRIPT), "recipes/mnist_vae.yaml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30,
                          env={k: v for k, v in os.environ.items()
                               if k not in ("NNODES", "NODE_RANK", "MASTER_ADDR")})
    assert done.returncode != 0
    assert "set NNODES, the number of machines" in done.stderr
