"""Subnormal floats flushed to zero (:mod:`lightning_vae.training.subnormals`): in every thread
torch starts afterwards, not in those it started before, and by the command before it builds
anything. Each case runs in a fresh Python, whose threads have never been set."""

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUBNORMALS_LEFT = """
import torch
torch.set_num_threads(2)
x = torch.full((4_000_000,), 1, dtype=torch.int32).view(torch.float32)  # 1.4e-45, by its bits
y = x * 2.0  # two threads, half the elements each
print(int((y.view(torch.int32) != 0).sum()))  # integer compare: a flushed CPU reads 0 here too
"""
"""Prints how many of 4 000 000 subnormal products are left subnormal, not flushed to zero."""
needs_flushing = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                    reason="torch flushes subnormals on x86 CPUs only")


def subnormals_left(before: str) -> int:
    """:data:`SUBNORMALS_LEFT` in a new Python, after ``before``."""
    code = textwrap.dedent(before) + SUBNORMALS_LEFT
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    return int(result.stdout.split()[-1])


@needs_flushing
def test_flushed_before_torchs_threads_start_every_thread_flushes():
    assert subnormals_left("") == 4_000_000
    assert subnormals_left("""
        from lightning_vae.training.subnormals import flush_subnormals
        assert flush_subnormals()
        """) == 0


@needs_flushing
def test_flushed_after_torchs_threads_started_only_the_calling_thread_flushes():
    left = subnormals_left("""
        import torch
        torch.set_num_threads(2)
        torch.ones(4_000_000).mul_(2.0)  # starts the second thread
        from lightning_vae.training.subnormals import flush_subnormals
        flush_subnormals()
        """)
    assert 0 < left < 4_000_000


@needs_flushing
def test_the_command_flushes_subnormals_in_every_thread(tiny_mnist_dir):
    assert subnormals_left(f"""
        import sys
        from lightning_vae.cli.lightning import run_lightning
        sys.argv = ["lightning-vae"]
        run_lightning(["--config", "recipes/mnist_vae.yaml",
                       "--data.init_args.data_dir", {str(tiny_mnist_dir)!r},
                       "--data.init_args.download", "false", "--trainer.logger", "false"],
                      run=False)
        """) == 0
