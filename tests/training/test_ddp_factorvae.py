"""FactorVAE under two-process DDP on the CPU (gloo), through the command line: the
discriminator, a submodule of the training module, is synchronised like the model, so both ranks
end with the same weights of both after steps on different shards and different permutations."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from dsprites_args import tiny_dsprites_args

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent


def sums(module: pl.LightningModule) -> dict[str, float]:
    return {name: p.detach().double().sum().item() for name, p in module.named_parameters()}


class WeightsProbe(pl.Callback):
    """Writes, per rank, the sum of each parameter of the module at the start and the end of fit,
    and the step it ended at."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.start: dict[str, float] = {}

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.start = sums(module)

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        (self.folder / f"weights-rank{trainer.global_rank}.json").write_text(json.dumps(
            {"step": trainer.global_step, "start": self.start, "sums": sums(module)}))


@pytest.mark.slow
def test_both_ranks_end_with_the_same_vae_and_discriminator(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent),
                                           os.environ.get("PYTHONPATH", "")]))
    probe = json.dumps({"class_path": "test_ddp_factorvae.WeightsProbe",
                        "init_args": {"folder": str(tmp_path)}})
    done = subprocess.run(
        [sys.executable, "-m", "lightning_vae.cli", "fit",
         "--config", str(ROOT / "recipes" / "dsprites_factorvae.yaml"),
         *tiny_dsprites_args(tmp_path / "data", tmp_path),
         "--config", str(ROOT / "recipes" / "trainer" / "cpu_ddp.yaml"),
         "--model.objective.hidden_dim", "16", "--model.objective.layers", "3",
         "--trainer.max_steps", "3", "--test_after_fit", "false", "--trainer.logger", "false",
         "--trainer.callbacks", probe],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"weights-rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == 3
    assert ranks[0]["sums"].keys() == ranks[1]["sums"].keys()
    assert any(name.startswith("objective.discriminator.") for name in ranks[0]["sums"])
    for name, value in ranks[0]["sums"].items():
        assert value == pytest.approx(ranks[1]["sums"][name], rel=1e-6, abs=1e-6), name
    moved = [name for name, value in ranks[0]["sums"].items() if value != ranks[0]["start"][name]]
    assert set(moved) == set(ranks[0]["sums"])  # every weight trained, the discriminator's too
