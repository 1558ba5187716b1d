"""Keep freed tensor memory in the process, so CPU training steps stop page-faulting.

glibc's ``malloc`` serves every block above its mmap threshold (128 KiB at first, raised
step by step up to 32 MiB as blocks are freed) with a fresh ``mmap`` and gives it back to the
kernel with ``munmap`` when it is freed. A training step on the CPU allocates and frees the
same activation and gradient buffers (0.2–10 MB each for the default conv VAE) at every step,
so each step can map them anew and touch every page for the first time: thousands of page
faults, each one zeroing a page, a quarter of a plain training loop's step here
(docs/results.md, "Training throughput"). How many depends on what the process freed before
(glibc raises its threshold to the largest block freed). Raising the mmap threshold to its
maximum and the trim threshold far above a step's working set makes freed blocks stay in the
heap, where the next step finds them. This is what jemalloc or tcmalloc (``LD_PRELOAD``), as
PyTorch's CPU tuning guide advises, achieve, without a library to install or a variable to
set before Python starts.

:class:`ReuseFreedMemory` applies it when a run trains on the CPU; :func:`retain_freed_memory`
is the call itself, for loops outside a ``Trainer``.
"""

from __future__ import annotations

import ctypes
import logging
import platform
from functools import cache

import pytorch_lightning as pl

log = logging.getLogger(__name__)

# mallopt(3) parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MAX_MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling on 64-bit systems; larger values are refused
TRIM_THRESHOLD = 2**30  # free memory kept at the top of the heap before any is given back


@cache
def retain_freed_memory() -> bool:
    """Make glibc keep freed blocks of up to 32 MiB, and up to 1 GiB of free heap, for reuse.

    Returns whether the settings took effect: ``False`` where the C library is not glibc
    (macOS, Windows, musl), which leaves the process as it was. Process-wide and permanent;
    calling again does nothing more. Blocks over 32 MiB are still mapped and unmapped each time.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD)
                and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


class ReuseFreedMemory(pl.Callback):
    """Apply :func:`retain_freed_memory` in every process of a run that computes on the CPU.

    GPU runs are left alone: their tensors live in the CUDA caching allocator already. In a
    recipe::

        trainer:
          callbacks:
            - class_path: lightning_vae.ReuseFreedMemory
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type != "cpu":
            return
        if not retain_freed_memory():
            log.info("ReuseFreedMemory: the C library is not glibc; memory allocation unchanged")
