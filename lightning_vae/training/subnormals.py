"""Flush subnormal floats to zero on the CPU, where they slow training steps down by a quarter.

Adam's first moment of a weight whose gradient is zero at most steps (a first-layer weight of a
pixel that is black in nearly every MNIST image, the weights after a unit that ReLU switched off)
decays by β1 = 0.9 a step: a few hundred steps after its last gradient it is below 1.2e-38,
a subnormal float, and stays one for about 150 steps more. x86 CPUs compute with subnormal
operands in microcode, far slower, so the optimizer's step (their only reader) slows down: the
MLP VAE's CPU step went from 5.5 to 7.0 ms after about 700 steps and stayed there
(docs/results.md, issue 26). Flushing them to zero changes nothing above 1.2e-38.

The setting (``torch.set_flush_denormal``: the CPU's flush-to-zero and denormals-are-zero flags)
belongs to a thread, and a thread starts with its creator's. Set before torch starts its
intra-op threads (at the first parallel operation), it covers them all; set later, only the
calling thread, while the others go on computing subnormals.
"""

from __future__ import annotations

import torch


def flush_subnormals() -> bool:
    """Flush subnormal floats to zero in this thread and the threads it starts from now on.
    Returns whether the CPU supports it (x86 with SSE3; ``False`` elsewhere, changing nothing).
    Process-wide in effect, so the ``lightning-vae`` command calls it, before any work; a script
    that trains on the CPU should call it first thing too (``lightning_vae.flush_subnormals()``).
    """
    return torch.set_flush_denormal(True)
