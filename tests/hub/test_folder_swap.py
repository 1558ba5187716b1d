"""A model folder is replaced in one step (atomic.swap_folder, hub/format.py save_pretrained):
a real export process killed at every file-system step of its save leaves the old model or the
new one, whole; a folder of files no save wrote is not overwritten unless forced."""

import json
import os
import signal
import subprocess
import sys

import pytest
from hub_models import fit_tiny, save_small_model, small_model

from lightning_vae import VAEModel
from lightning_vae.atomic import exchange, swap_folder
from lightning_vae.cli import main
from lightning_vae.hub.format import MODEL_FILES

KILLER = r"""
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)  # no thread pool yet: the forked exports cannot inherit a locked one
torch.set_num_interop_threads(1)
from lightning_vae import VAEModel
from lightning_vae.cli import main

WATCHED = {"open", "os.rename", "os.replace", "os.chmod", "os.link", "os.mkdir", "os.remove",
           "os.rmdir", "shutil.rmtree", "os.symlink", "ctypes.call_function"}
checkpoint, folder = sys.argv[1], Path(sys.argv[2])
old = VAEModel.from_pretrained(folder)


def export_killed_at(step):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the export process
        taken = 0

        def hook(event, args):
            nonlocal taken
            if event not in WATCHED or (event != "ctypes.call_function" and not any(
                    str(arg).startswith(str(folder.parent)) for arg in args)):
                return
            taken += 1
            if taken == step:
                os.kill(os.getpid(), signal.SIGKILL)

        sys.addaudithook(hook)
        try:
            main(["export", checkpoint, str(folder), "--force"])
        except BaseException:
            os._exit(3)
        os.write(write, str(taken).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        steps = int(pipe.read() or 0)
    return os.waitpid(pid, 0)[1], steps


status, steps = export_killed_at(None)
results = [{"status": status, "steps": steps}]
for step in range(1, steps + 1):
    old.save_pretrained(folder)  # the old model again before each kill
    status, _ = export_killed_at(step)
    loaded = VAEModel.from_pretrained(folder)  # raises unless whole
    results.append({"status": status, "latent_dim": loaded.latent_dim,
                    "files": sorted(p.name for p in folder.iterdir())})
print(json.dumps(results))
"""
"""Run in a fresh process: forks an export process per kill point (SIGKILL just before its
N-th file-system step under the folder's parent, found by an audit hook; renameat2 goes through
ctypes) and loads the folder after each, printing what it found as JSON."""


@pytest.mark.slow  # about 10 s: one forked export per step
@pytest.mark.skipif(sys.platform != "linux", reason="fork, audit hooks and SIGKILL as on Linux")
def test_an_export_killed_at_every_step_of_its_save_leaves_the_old_or_the_new_model(tmp_path):
    new = fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path
    folder = tmp_path / "models" / "hub"
    small_model(image_shape=(1, 8, 8), latent_dim=7).save_pretrained(folder)
    (folder / "notes.txt").write_text("mine")
    done = subprocess.run([sys.executable, "-c", KILLER, new, str(folder)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    first, *killed = json.loads(done.stdout.splitlines()[-1])
    assert first["status"] == 0 and first["steps"] > 10 and len(killed) == first["steps"]
    for result in killed:
        assert os.WIFSIGNALED(result["status"])
        assert os.WTERMSIG(result["status"]) == signal.SIGKILL
        assert result["files"] == sorted({*MODEL_FILES, "notes.txt"})
    assert {result["latent_dim"] for result in killed} == {7, 3}  # killed before and after
    assert (folder / "notes.txt").read_text() == "mine"


def test_swap_folder_puts_the_new_folder_in_place_and_the_old_one_at_its_path(tmp_path):
    old, new = tmp_path / "model", tmp_path / ".model.x.partial"
    old.mkdir()
    new.mkdir()
    (old / "a").write_text("old")
    (new / "a").write_text("new")
    swap_folder(new, old)
    assert (old / "a").read_text() == "new" and (new / "a").read_text() == "old"
    fresh = tmp_path / ".other.partial"
    fresh.mkdir()
    swap_folder(fresh, tmp_path / "other")
    assert (tmp_path / "other").is_dir() and not fresh.exists()


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux's")
def test_exchange_swaps_in_one_step_where_the_file_system_can(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").mkdir()
    assert exchange(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "a" and (tmp_path / "a").is_dir()


@pytest.mark.parametrize("name", ["README.md", "config.json"])
def test_saving_into_a_folder_of_someone_elses_files_is_refused_unless_forced(tmp_path, name):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / name).write_text('{"mine": true}')
    with pytest.raises(FileExistsError, match=f"{folder} holds {name}, which no lightning-vae "
                                              "save wrote .* pass force=True"):
        small_model().save_pretrained(folder)
    assert [p.name for p in folder.iterdir()] == [name]
    assert (folder / name).read_text() == '{"mine": true}'
    small_model().save_pretrained(folder, force=True)
    assert {p.name for p in folder.iterdir()} == set(MODEL_FILES)


def test_the_export_command_refuses_a_users_readme_in_one_line(tmp_path):
    checkpoint = fit_tiny(tmp_path / "run").checkpoint_callback.best_model_path
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    with pytest.raises(SystemExit) as stopped:
        main(["export", checkpoint, str(folder)])
    assert str(stopped.value).startswith(f"lightning-vae export: error: {folder} holds README.md")
    assert "(--force)" in str(stopped.value).splitlines()[0]
    assert (folder / "README.md").read_text() == "my notes"


def test_saving_over_a_saved_model_needs_no_force_and_keeps_other_files(tmp_path):
    folder = save_small_model(tmp_path / "model")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    small_model(latent_dim=5).save_pretrained(folder)
    assert VAEModel.from_pretrained(folder).latent_dim == 5
    assert (folder / ".git" / "HEAD").read_text() == "ref"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left
