"""Where a training step of the package's Trainer path goes: torch.profiler over a window of
steady-state steps of ``benchmarks/train_throughput.py``'s (b), after a warm-up (compilation).

Prints the wall time per step over the window and the operators (Python and Lightning
included) by their own host time and, on CUDA, by device time: on a GPU, host time per step
above the device time per step means the step waits on Python, not on the GPU.

``--host-only`` measures, on the CPU and without a GPU, the host work of a graphed step in (b)
and in the hand-written loop (a'): bytecodes and CPU time per step, the graph's replay a
stand-in that does nothing (``benchmarks/host_work.py``). Usage::

    python benchmarks/profile_step.py --device cuda                   # recipe + gpu_fast.yaml
    python benchmarks/profile_step.py --model tiny --batch-size 16    # CPU: overhead only
    python benchmarks/profile_step.py --host-only                     # host work per step
    python benchmarks/profile_step.py --host-only --eager --model mlp # bytecodes, CPU steps
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function
from train_throughput import GPU_FRAGMENT, MODELS, SHARED_MNIST, Spec, package_argv


class ProfileWindow(pl.Callback):
    """Profile training steps ``first`` to ``first + steps - 1`` of the first epoch."""

    def __init__(self, first: int, steps: int, device: torch.device) -> None:
        self.first, self.last, self.device = first, first + steps - 1, device
        activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self.profiler = profile(activities=activities)
        self.seconds = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.first:
            self._sync()
            self.profiler.start()
            self._start = time.perf_counter()
        if self.first <= batch_idx <= self.last:
            self._step = record_function("training step (Lightning)")
            self._step.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.first <= batch_idx <= self.last:
            self._step.__exit__(None, None, None)
        if batch_idx == self.last:
            self._sync()
            self.seconds = time.perf_counter() - self._start
            self.profiler.stop()
            trainer.should_stop = True


def host_only(args: argparse.Namespace) -> None:
    """``--host-only``: :func:`host_work.host_work` on the CPU with gpu_fast.yaml's settings;
    ``--eager``: with the recipe's own (eager CPU steps, whole), the progress bar off."""
    from host_work import host_work

    configs = [] if args.eager else [str(c) for c in args.config or [GPU_FRAGMENT]]
    common = dict(model=args.model, batch_size=args.batch_size or 16, epochs=0,
                  limit_batches=None, device="cpu", data_dir=str(args.data_dir), configs=configs)
    bar_off = ["trainer.enable_progress_bar=false"] if args.eager else []
    host_work(Spec(name="(b) lightning-vae", kind="package", overrides=bar_off, **common),
              Spec(name="(a') hand-written loop", kind="loop", **common),
              args.warmup, args.steps or 1000, args.counted, args.rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(MODELS), default="conv")
    parser.add_argument("--batch-size", type=int,
                        help="default 128; 16 with --host-only (less batch drawing on the CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", type=Path, default=SHARED_MNIST)
    parser.add_argument("--config", action="append", type=Path,
                        help="recipe fragments; default on CUDA: gpu_fast.yaml")
    parser.add_argument("--warmup", type=int, default=100, help="steps before the window")
    parser.add_argument("--steps", type=int,
                        help="steps profiled (default 50); with --host-only, timed (1000)")
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--host-only", action="store_true",
                        help="bytecodes and host CPU time per graphed step of (b) and (a') on "
                             "the CPU, the replay doing nothing; --warmup, --steps (timed) and "
                             "--counted steps")
    parser.add_argument("--counted", type=int, default=100,
                        help="--host-only: steps whose bytecodes are counted")
    parser.add_argument("--eager", action="store_true",
                        help="--host-only: count the CPU's eager steps instead (the recipe's "
                             "settings, arithmetic included), with (b)'s "
                             "progress bar off (it redraws by the clock, and tracing is slow)")
    args = parser.parse_args()
    if args.host_only:
        return host_only(args)
    args.batch_size, args.steps = args.batch_size or 128, args.steps or 50
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = args.config
    if configs is None:
        configs = [GPU_FRAGMENT] if args.device.startswith("cuda") else []
    spec = Spec(name="(b)", kind="package", model=args.model, batch_size=args.batch_size,
                epochs=0, limit_batches=args.warmup + args.steps, device=args.device,
                data_dir=str(args.data_dir), configs=[str(c) for c in configs])

    from lightning_vae.cli import run_lightning

    with tempfile.TemporaryDirectory() as root:
        cli = run_lightning(package_argv(spec, root), run=False)
        window = ProfileWindow(args.warmup, args.steps, cli.trainer.strategy.root_device)
        cli.trainer.callbacks.append(window)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    events = window.profiler.key_averages()
    print(f"\n{args.steps} steps after {args.warmup}: {1000 * window.seconds / args.steps:.2f} "
          f"ms per step (wall, device synchronised at both ends)")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if window.device.type == "cuda":
        kernels = [e for e in events if e.device_type == DeviceType.CUDA
                   and not getattr(e, "is_user_annotation", False)]  # not the named regions
        device_ms = sum(e.self_device_time_total for e in kernels) / 1000 / args.steps
        print(f"device time per step (kernels and copies): {device_ms:.2f} ms")
        print(events.table(sort_by="self_device_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
