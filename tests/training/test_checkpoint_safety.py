"""Nothing a checkpoint file says chooses what code runs (training/checkpoints.py, export.py),
and a checkpoint is written whole or not at all (AtomicCheckpointIO), with real files, real
processes and a real full disk where the machine can mount one."""

import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
import torch
from hub_models import fit_tiny
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_vae import export_checkpoint
from lightning_vae.data import MNISTDataModule
from lightning_vae.training.checkpoints import (
    DATAMODULES,
    AtomicCheckpointIO,
    datamodule_class,
)


def hostile_checkpoint(tmp_path: Path, marker: Path) -> Path:
    """A real trainer checkpoint whose datamodule hyperparameters name ``subprocess.Popen`` with
    a shell command that creates ``marker``: plain data, so weights_only loading accepts it."""
    checkpoint = torch.load(fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path,
                            weights_only=True)
    checkpoint["datamodule_hyper_parameters"] = {
        "_class_path": "subprocess.Popen", "args": ["sh", "-c", f"touch {marker}"]}
    path = tmp_path / "hostile.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("trusted", [False, True])
def test_a_checkpoint_naming_another_callable_runs_nothing_even_when_trusted(tmp_path, trusted):
    marker = tmp_path / "ran"
    path = hostile_checkpoint(tmp_path, marker)
    with pytest.warns(UserWarning, match="records the datamodule 'subprocess.Popen', which is not "
                                         "one of lightning_vae's"):
        export_checkpoint(path, tmp_path / "hub", trusted=trusted)
    assert not marker.exists()
    assert (tmp_path / "hub" / "model.safetensors").is_file()


def test_the_export_command_runs_nothing_a_checkpoint_names(tmp_path):
    marker = tmp_path / "ran"
    path = hostile_checkpoint(tmp_path, marker)
    done = subprocess.run([sys.executable, "-m", "lightning_vae.cli", "export", str(path),
                           str(tmp_path / "hub"), "--trust-checkpoint"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()


def test_an_untrusted_checkpoint_of_our_own_datamodule_does_not_build_it(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(MNISTDataModule, "setup", lambda self, stage: built.append(stage))
    checkpoint = torch.load(fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path,
                            weights_only=True)
    checkpoint["datamodule_hyper_parameters"] = {
        "_class_path": "lightning_vae.data.MNISTDataModule", "data_dir": str(tmp_path)}
    path = tmp_path / "ours.ckpt"
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match=r"MNISTDataModule\) is rebuilt .* only for a trusted"):
        export_checkpoint(path, tmp_path / "hub")
    assert built == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the patched setup leaves no data to show
        export_checkpoint(path, tmp_path / "hub", trusted=True)
    assert built == ["validate"]


@pytest.mark.parametrize("class_path", ["os.system", "builtins.eval", "lightning_vae.VAE",
                                        "lightning_vae.data.mnist.MNISTDataModule.__init__"])
def test_only_this_packages_datamodules_are_ever_looked_up(class_path):
    assert datamodule_class({"_class_path": class_path}) is None
    assert all(cls.__module__.startswith("lightning_vae.data.") for cls in DATAMODULES.values())
    assert datamodule_class({"_class_path": "lightning_vae.MNISTDataModule"}) is MNISTDataModule


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 1 MiB tmpfs mounted at a fresh folder (as root); skipped where mounting is refused."""
    folder = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux's")
def test_a_checkpoint_written_to_a_full_disk_leaves_the_previous_one_whole(full_disk):
    path = full_disk / "last.ckpt"
    writer = AtomicCheckpointIO()
    small = {"state_dict": {"w": torch.arange(10.0)}, "global_step": 1}
    writer.save_checkpoint(small, path)
    before = path.read_bytes()
    big = {"state_dict": {"w": torch.zeros(512 * 1024)}, "global_step": 2}  # 2 MiB: too big
    with pytest.raises(OSError, match=f"cannot write {path} .*; it was left as it was"):
        writer.save_checkpoint(big, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(full_disk)) == ["last.ckpt"]  # no partial file left
    assert torch.load(path, weights_only=True)["global_step"] == 1


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux's")
def test_training_on_a_full_disk_fails_naming_the_checkpoint_and_leaves_no_truncated_file(
        full_disk, tmp_path):
    """A real fit whose ModelCheckpoint writes onto the full tmpfs, through the writer the
    command line installs."""
    (full_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))
    with pytest.raises(OSError, match=r"cannot write .*last\.ckpt"):
        fit_tiny(tmp_path / "run", plugins=[AtomicCheckpointIO()],
                 callbacks=[ModelCheckpoint(dirpath=full_disk, save_last=True)])
    left = sorted(os.listdir(full_disk))
    assert "last.ckpt" not in left and not [name for name in left if name.endswith(".partial")]
    for name in left:  # what was written before the disk filled up is whole
        if name.endswith(".ckpt"):
            assert torch.load(full_disk / name, weights_only=True)["global_step"] > 0
