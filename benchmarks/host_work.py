"""Host work per training step, measured without a GPU: the Python around a CUDA graph's replay
in (b) lightning-vae's Trainer path and in (a') the hand-written loop.

With ``cuda_graph`` a whole training step is one replay, so on a GPU a step lasts as long as
the host's Python around it whenever that Python outlasts the replay (docs/results.md, issue
26). The Python is the same on a CPU: both pipelines run here with ``gpu_fast.yaml``'s settings
on the CPU, and after one eager step the graphed pass is given a stand-in graph whose replay
does nothing (:class:`NullGraph`), so that what is left of a step is host work (the loop, hooks,
logging decisions, noise seeding, optimizer wrappers, drawing the batch) and no model arithmetic.

Two measures per step, over windows of steady steps after a warm-up:

- **Python bytecodes executed** (``sys.settrace`` 'opcode' events), by package and by function:
  they do not depend on the machine's load, so they can be trusted on a shared machine (runs of
  one tree agree to 0.01 %: a bytecode a step, here and there). Counted in a window of their own
  (tracing slows Python some fifty times), in which the progress bar, which redraws by the
  clock, is given a clock that moves 1 ms a step (:data:`BAR_SECONDS_PER_STEP`).
- **Host CPU time** (``time.thread_time`` of the main thread, torch on one thread): the CPU the
  step's Python and its small tensor operations took. Less sensitive to other users than wall
  time, not immune (shared caches, clock frequency).

The probe that marks the steps is left out of the counts; in (b) Lightning's dispatch of its
hook (one callback, one hook) is not. Run through ``benchmarks/profile_step.py --host-only``;
with ``--eager``, the pipelines run the recipe's own CPU settings instead, without a graph: their
steps run whole, so the CPU time includes the arithmetic ("+ device"), and the bytecodes are
those of the CPU's training step (in (b), the direct step of
``lightning_vae/training/direct_step.py``).
"""

from __future__ import annotations

import collections
import functools
import itertools
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from train_throughput import Spec, loop_pipeline, package_argv

PACKAGES = ("pytorch_lightning", "lightning_fabric", "lightning_utilities", "lightning_vae",
            "torchmetrics", "torch", "tqdm")
"""Packages bytecodes are attributed to by the file of their code; the rest is the standard
library or "other"."""
STDLIB = sysconfig.get_paths()["stdlib"]
THIS_FILE = __file__
BAR_SECONDS_PER_STEP = 0.001
"""How far the clock of (b)'s progress bar (``TimedProgressBar``, which redraws by the
clock) moves per step while bytecodes are counted: about a graphed step of (b) on an H200
(0.98 ms). Tracing slows Python some fifty times; by the wall clock the bar would redraw fifty
times as often per step. With this clock it redraws once every 100 steps: once in the window."""


class NullGraph:
    """Stands in for a captured ``torch.cuda.CUDAGraph``: replaying it does nothing."""

    def replay(self) -> None:
        pass


def replay_nothing(graphed: Any, x: Tensor) -> None:
    """Make ``graphed`` (a :class:`~lightning_vae.training.cuda_graph.GraphedTrainingPass`)
    replay a :class:`NullGraph` from now on, as if it had captured a pass on ``x``'s shape:
    one eager pass leaves the gradients its replays point ``.grad`` at and the outputs they
    return."""
    outputs = graphed._eager(x)
    graphed.static_input = x.clone()
    graphed.static_outputs = outputs
    graphed.static_gradients = [parameter.grad for parameter in graphed.parameters]
    graphed.graph = NullGraph()


class BytecodeCounter:
    """Counts the bytecodes Python executes between :meth:`start` and :meth:`stop` in the
    calling thread, per code object: its own (``bytecodes``), its own and those of everything
    it called (``inclusive``, counted once where it recurses) and its calls (``calls``,
    generator resumptions included). Frames already running when it starts (the loop that
    calls it) are counted too, their inclusive counts from then on."""

    def __init__(self) -> None:
        self.bytecodes: collections.Counter[CodeType] = collections.Counter()
        self.inclusive: collections.Counter[CodeType] = collections.Counter()
        self.calls: collections.Counter[CodeType] = collections.Counter()
        self._total = 0
        self._stack: list[tuple[CodeType, int]] = []
        self._active: collections.Counter[CodeType] = collections.Counter()

    def _enter(self, code: CodeType) -> None:
        self._stack.append((code, self._total))
        self._active[code] += 1

    def _local(self, frame: FrameType, event: str, arg: object) -> Callable | None:
        if event == "opcode":
            self.bytecodes[frame.f_code] += 1
            self._total += 1
        elif event == "return" and self._stack:
            code, start = self._stack.pop()
            self._active[code] -= 1
            if not self._active[code]:  # the outermost call of a recursion
                self.inclusive[code] += self._total - start
        return self._local

    def _global(self, frame: FrameType, event: str, arg: object) -> Callable | None:
        self.calls[frame.f_code] += 1
        self._enter(frame.f_code)
        frame.f_trace_opcodes = True
        return self._local

    def start(self) -> None:
        frames = []
        frame = sys._getframe(1)
        while frame is not None:
            frame.f_trace, frame.f_trace_opcodes = self._local, True
            frames.append(frame)
            frame = frame.f_back
        for frame in reversed(frames):  # outermost first, as if called now
            self._enter(frame.f_code)
        sys.settrace(self._global)

    def stop(self) -> None:
        sys.settrace(None)
        while self._stack:  # frames still running: what they did so far
            code, start = self._stack.pop()
            self._active[code] -= 1
            if not self._active[code]:
                self.inclusive[code] += self._total - start
        frame = sys._getframe(1)
        while frame is not None:
            frame.f_trace, frame.f_trace_opcodes = None, False
            frame = frame.f_back


def package_of(filename: str) -> str:
    """The package a code object's file belongs to (:data:`PACKAGES`), ``python`` for the
    standard library, else ``other``."""
    parts = Path(filename).parts
    for package in PACKAGES:  # the innermost match: torch/... inside pytorch_lightning/ is not
        if package in parts:
            return package
    if filename.startswith(STDLIB) and "site-packages" not in parts:
        return "python"
    return "other"


@dataclass
class HostWork:
    """Host work per step of one pipeline: CPU milliseconds, bytecodes (in all, by package and
    by function, with calls) over the counted window."""

    name: str
    device_work: bool  # the steps ran whole (no graph to stand in for): ms is not host work only
    ms_per_step: float
    bytecodes_per_step: float
    by_package: dict[str, float] = field(default_factory=dict)
    by_function: list[tuple[str, float, float, float]] = field(default_factory=list)
    """(function, own bytecodes, inclusive bytecodes, calls) per step, most inclusive first."""


class StepMeter:
    """Marks training steps by their index: host CPU time over steps ``warmup`` to
    ``warmup + timed``, then bytecodes over the next ``counted`` steps. ``at_step_start``
    returns True once both windows are done."""

    def __init__(self, warmup: int, timed: int, counted: int) -> None:
        if warmup < 2 or timed < 1 or counted < 1:
            raise ValueError(f"need warmup >= 2 (the stand-in is installed at step 1), timed and "
                             f"counted >= 1; got {warmup}, {timed}, {counted}")
        self.timed_from, self.counted_from = warmup, warmup + timed
        self.counted_to = self.counted_from + counted
        self.counter = BytecodeCounter()
        self.seconds = 0.0
        self._start = 0.0

    @property
    def steps(self) -> int:
        """Steps the pipeline must run (the last one is started, then stopped)."""
        return self.counted_to + 1

    def at_step_start(self, index: int) -> bool:
        if index == self.timed_from:
            self._start = time.thread_time()
        elif index == self.counted_from:
            self.seconds = time.thread_time() - self._start
            self.counter.start()
        elif index == self.counted_to:
            self.counter.stop()
            return True
        return False

    def result(self, name: str, top: int, device_work: bool) -> HostWork:
        """The per-step figures; the meter's own code left out."""
        steps = self.counted_to - self.counted_from
        counts = {code: n for code, n in self.counter.bytecodes.items()
                  if code.co_filename != THIS_FILE}
        by_package: collections.Counter[str] = collections.Counter()
        for code, n in counts.items():
            by_package[package_of(code.co_filename)] += n / steps
        inclusive = self.counter.inclusive
        functions = sorted((code for code in inclusive if code.co_filename != THIS_FILE),
                           key=inclusive.get, reverse=True)[:top]
        by_function = [(f"{package_of(code.co_filename)}: {code.co_qualname} "
                        f"({Path(code.co_filename).name}:{code.co_firstlineno})",
                        counts.get(code, 0) / steps, inclusive[code] / steps,
                        self.counter.calls[code] / steps)
                       for code in functions]
        return HostWork(name=name, device_work=device_work,
                        ms_per_step=1000 * self.seconds / (self.counted_from - self.timed_from),
                        bytecodes_per_step=sum(counts.values()) / steps,
                        by_package=dict(by_package.most_common()), by_function=by_function)


def loop_host_work(spec: Spec, meter: StepMeter, top: int) -> HostWork:
    """(a'): the hand-written loop; over a graphed pass, its replays doing nothing."""
    loop = loop_pipeline(spec)
    graphed = hasattr(loop.training_step, "graph")
    if meter.steps > len(loop.loader):
        raise SystemExit(f"--warmup, --steps and --counted make {meter.steps} steps, more than "
                         f"one epoch ({len(loop.loader)} batches of {spec.batch_size}): lower "
                         "--steps or the batch size")
    batches = iter(loop.loader)
    for index in range(meter.steps):
        x, _ = next(batches)
        if meter.at_step_start(index):
            break
        if index == 1 and graphed:
            replay_nothing(loop.training_step, x)
        loop.step(x)
    return meter.result(spec.name, top, device_work=not graphed)


def pace_progress_bar(trainer: pl.Trainer) -> None:
    """Give a bar that redraws by the clock (``TimedProgressBar``, known by its ``clock``) a
    clock that moves :data:`BAR_SECONDS_PER_STEP` at each read (it reads once a training step),
    from the time of its next redraw."""
    bar = trainer.progress_bar_callback
    if hasattr(bar, "clock"):
        bar.clock = functools.partial(next, itertools.count(bar._next_redraw,
                                                            BAR_SECONDS_PER_STEP))


class _Probe(pl.Callback):
    """Installs the stand-in graph at step 1 and marks each step for the meter; paces the
    progress bar while bytecodes are counted; stops the fit when the meter is done."""

    def __init__(self, meter: StepMeter) -> None:
        self.meter = meter

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        if batch_idx == self.meter.counted_from:
            pace_progress_bar(trainer)
        if self.meter.at_step_start(batch_idx):
            trainer.should_stop = True
        elif batch_idx == 1 and pl_module._graphed_pass is not None:
            replay_nothing(pl_module._graphed_pass, batch[0])


def package_host_work(spec: Spec, meter: StepMeter, top: int) -> HostWork:
    """(b): ``lightning-vae fit`` as the CLI builds it; with ``cuda_graph``, the graph's
    replays doing nothing."""
    from lightning_vae.cli import run_lightning

    spec.limit_batches = meter.steps + 1
    with tempfile.TemporaryDirectory() as root:
        cli = run_lightning(package_argv(spec, root), run=False)
        cli.trainer.callbacks.append(_Probe(meter))
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return meter.result(spec.name, top, device_work=not cli.model.hparams.cuda_graph)


def report(results: list[HostWork], rows: int) -> None:
    """A table of both pipelines, bytecodes by package, and the functions with the most."""
    print("\nhost work per training step (the graph's replay a stand-in that does nothing; "
          "'+ device': no graph, the steps' arithmetic included); bytecodes do not depend on the "
          "machine's load (runs agree to 0.01 %); host ms is the main thread's CPU "
          "time")
    print(f"{'pipeline':40s} {'bytecodes/step':>15s} {'host ms/step':>13s}")
    for result in results:
        print(f"{result.name:40s} {result.bytecodes_per_step:15.0f} {result.ms_per_step:13.3f}"
              + (" + device" if result.device_work else ""))
    packages = sorted({p for r in results for p in r.by_package},
                      key=lambda p: -max(r.by_package.get(p, 0) for r in results))
    print(f"\nbytecodes per step by package\n{'package':40s} "
          + " ".join(f"{r.name[:15]:>15s}" for r in results))
    for package in packages:
        print(f"{package:40s} " + " ".join(f"{r.by_package.get(package, 0):15.0f}"
                                           for r in results))
    for result in results:
        print(f"\n{result.name}: the {rows} functions with the most bytecodes per step, "
              "their own and those of what they call (inclusive)")
        print(f"{'inclusive':>10s} {'own':>7s} {'calls':>7s}  function")
        for name, own, inclusive, calls in result.by_function[:rows]:
            print(f"{inclusive:10.0f} {own:7.0f} {calls:7.1f}  {name}")


def host_work(spec: Spec, loop: Spec, warmup: int, timed: int, counted: int, rows: int
              ) -> list[HostWork]:
    """Measure (a') then (b), on one torch thread, and print the report."""
    torch.set_num_threads(1)
    results = [loop_host_work(loop, StepMeter(warmup, timed, counted), rows),
               package_host_work(spec, StepMeter(warmup, timed, counted), rows)]
    report(results, rows)
    return results
