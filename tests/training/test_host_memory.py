"""ReuseFreedMemory: CPU training steps reuse freed memory instead of page-faulting it back."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_vae.training.host_memory import retain_freed_memory

ROOT = Path(__file__).resolve().parents[2]
GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's malloc")

# Page faults per training step of the default recipe's conv VAE (batch 64), after a Trainer
# run on the CPU with or without the callback; each case in a fresh process, as the setting is
# process-wide.
FAULTS_PER_STEP = """
import json, resource, sys, torch, pytorch_lightning as pl
from torch.utils.data import DataLoader, TensorDataset
from lightning_vae import VAE, ReuseFreedMemory

torch.manual_seed(0)
model = VAE(arch="conv", image_shape=(1, 28, 28), latent_dim=32, iw_samples=0)
images = (torch.rand(64, 1, 28, 28) > 0.5).float()
callbacks = [ReuseFreedMemory()] if sys.argv[1] == "with" else []
pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
           enable_model_summary=False, accelerator="cpu", callbacks=callbacks,
           ).fit(model, DataLoader(TensorDataset(images), batch_size=64))
optimizer = torch.optim.Adam(model.parameters())

def step():
    optimizer.zero_grad()
    model.model.elbo(images)["elbo"].mean().neg().backward()
    optimizer.step()

for _ in range(6):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10))
"""


def faults_per_step(case: str) -> float:
    done = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, case], capture_output=True,
                          text=True, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@GLIBC
def test_with_the_callback_cpu_training_steps_stop_page_faulting():
    without, with_callback = faults_per_step("without"), faults_per_step("with")
    # Measured: 1500-3000 faults per step without, 0-160 with (the heap still grows now and then).
    assert with_callback < without / 8, (without, with_callback)


@GLIBC
def test_retaining_freed_memory_takes_effect_once_and_reports_it():
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True
