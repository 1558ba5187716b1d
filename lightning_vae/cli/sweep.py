"""Local β sweeps without a server: ``lightning-vae sweep``.

One ``lightning-vae fit`` subprocess per β (in parallel over the GPUs when there are several,
one GPU per process), then a summary of each run's final validation metrics (``summary.csv``,
``summary.md``) and a rate–distortion plot (``rate_distortion.png``: KL, the rate, against
reconstruction, the distortion; Alemi et al. 2018)::

    lightning-vae sweep --config recipes/mnist_vae.yaml --beta 0.25,1,4,16 --out sweeps/beta \\
        -- --trainer.max_epochs 10

Every run also logs to a CSVLogger in its own folder ``<out>/beta_<β>/``, which the summary reads,
beside whatever logger its configuration chooses. With W&B on (``--wandb`` or
``--config recipes/logging/wandb.yaml`` after ``--``), the runs share a W&B group.

Runs that test after fitting (``test_after_fit: true``, as the dSprites recipes set, or
``-- --test_after_fit true``) on data with known factors log disentanglement scores
(:data:`SCORE_METRICS`); the summary then adds them as columns and plots each against β
(``disentanglement.png``)::

    lightning-vae sweep --config recipes/dsprites_tcvae.yaml --beta 1,4,16 --out sweeps/tcvae
"""

import argparse
import csv
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from lightning_vae.cli.recipes import resolve_config, resolve_config_arguments

SUMMARY_METRICS = ("val/recon", "val/kl", "val/elbo", "val/active_units")
"""The final validation metrics a sweep reports for each β, in nats per example (units: count)."""
SCORE_METRICS = ("test/mig", "test/factorvae_score", "test/dci_d", "test/sap")
"""The disentanglement scores a sweep reports for each β when its runs logged them."""


@dataclass
class RunResult:
    """One β of a sweep: its folder, its log, and its final validation metrics (None if failed)."""

    beta: float
    folder: Path
    log: Path
    returncode: int
    metrics: dict[str, float] | None = None
    error: str | None = None


def parse_betas(text: str) -> list[float]:
    """``"0.25,1,4,16"`` → [0.25, 1.0, 4.0, 16.0], refusing repeats and values <= 0."""
    try:
        betas = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--beta {text!r}: expected comma-separated numbers such as 0.25,1,4,16"
                         ) from None
    if not all(map(math.isfinite, betas)):
        raise ValueError(f"--beta {text!r}: every β must be a finite number (not nan or inf), "
                         "such as 0.25,1,4")
    if not betas or min(betas) <= 0 or len(set(betas)) != len(betas):
        raise ValueError(f"--beta {text!r}: expected distinct positive numbers such as 0.25,1,4")
    labels = {}  # runs are filed and named by f"{β:g}": equal labels would share a folder
    for beta in betas:
        if (other := labels.setdefault(f"{beta:g}", beta)) != beta:
            raise ValueError(f"--beta {text!r}: {other!r} and {beta!r} would share the run "
                             f"folder {run_folder(Path(), beta)}; give β values that differ "
                             "in their first 6 significant digits")
    return betas


def run_folder(out: Path, beta: float) -> Path:
    return out / f"beta_{beta:g}"


def fit_command(configs: Sequence[str], beta: float, folder: Path, fit_args: Sequence[str]
                ) -> list[str]:
    """The ``fit`` command of one run: the user's configs and arguments, then β and a CSVLogger
    writing ``<folder>/metrics.csv`` appended to the configured loggers (last, so they win)."""
    csv_logger = {"class_path": "pytorch_lightning.loggers.CSVLogger",
                  "init_args": {"save_dir": str(folder), "name": "", "version": ""}}
    return [
        sys.executable, "-m", "lightning_vae.cli", "fit",
        *(arg for config in configs for arg in ("--config", config)),
        *fit_args,
        f"--model.beta={beta!r}",
        f"--trainer.default_root_dir={folder}",
        f"--trainer.logger+={json.dumps(csv_logger)}",
    ]


def read_final_metrics(metrics_csv: Path) -> dict[str, float]:
    """The last logged value of each of :data:`SUMMARY_METRICS` in a CSVLogger's metrics.csv,
    and of those of :data:`SCORE_METRICS` the run logged."""
    if not metrics_csv.is_file():
        raise FileNotFoundError(
            f"{metrics_csv} is missing: the run wrote no CSV log (--trainer.fast_dev_run turns "
            "every logger off; for a short run use --trainer.limit_train_batches)")
    final: dict[str, float] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            final.update({key: float(row[key]) for key in (*SUMMARY_METRICS, *SCORE_METRICS)
                          if row.get(key)})
    if missing := [key for key in SUMMARY_METRICS if key not in final]:
        raise ValueError(
            f"{metrics_csv} has no {', '.join(missing)}: validation never ran (a run that stops "
            "at --trainer.max_steps inside its first epoch is not validated; use "
            "--trainer.limit_train_batches or --trainer.val_check_interval)")
    return final


def run_sweep(configs: Sequence[str], betas: Sequence[float], out: str | Path,
              fit_args: Sequence[str] = (), parallel: int | None = None,
              group: str | None = None, report: Callable[[str], object] | None = None
              ) -> list[RunResult]:
    """Train one model per β and return the results in the order of ``betas``.

    ``parallel`` runs at once (default: the number of GPUs, else 1); with GPUs each run sees one
    (``CUDA_VISIBLE_DEVICES``), taken in turn. Runs share the W&B group ``group`` (env
    ``WANDB_RUN_GROUP``, which wandb.init reads) and are named ``beta=<β>``. A run that fails
    keeps its log; the others go on. ``report`` receives a line as each run starts and ends
    (:func:`progress_line`).
    """
    out = Path(out)
    report = report or (lambda line: None)
    lock, finished = threading.Lock(), [0]
    gpus = torch.cuda.device_count()
    parallel = parallel or max(gpus, 1)
    free_gpus: queue.Queue[str | None] = queue.Queue()
    for gpu in gpu_slots(parallel, gpus, os.environ.get("CUDA_VISIBLE_DEVICES")):
        free_gpus.put(gpu)
    group = group or out.name

    def run(beta: float) -> RunResult:
        folder = run_folder(out, beta)
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "fit.log"
        env = dict(os.environ, WANDB_RUN_GROUP=group, WANDB_NAME=f"beta={beta:g}")
        env.pop("WANDB_SERVICE", None)  # not this process's wandb service: its own, as from a shell
        gpu = free_gpus.get()
        report(f"β={beta:g}: started, log in {log}")
        started = time.monotonic()
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        elif parallel > 1:  # share the CPU cores instead of each run taking all of them
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
        try:
            with log.open("w") as file:
                returncode = subprocess.run(fit_command(configs, beta, folder, fit_args),
                                            stdout=file, stderr=subprocess.STDOUT, env=env,
                                            check=False).returncode
        finally:
            free_gpus.put(gpu)
        result = RunResult(beta, folder, log, returncode)
        if returncode != 0:
            result.error = f"exited with status {returncode}"
        else:
            try:
                result.metrics = read_final_metrics(folder / "metrics.csv")
            except (OSError, ValueError) as error:
                result.error = str(error)
        with lock:
            finished[0] += 1
            report(progress_line(result, finished[0], len(betas), time.monotonic() - started))
        return result

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(run, betas))


def progress_line(result: RunResult, done: int, total: int, seconds: float) -> str:
    """``[2/4] β=1 finished in 35 s: val/elbo -107.32``, or why it failed and where its log is."""
    head = f"[{done}/{total}] β={result.beta:g}"
    if result.error is not None:
        return f"{head} failed after {seconds:.0f} s: {result.error}; log: {result.log}"
    return f"{head} finished in {seconds:.0f} s: val/elbo {result.metrics['val/elbo']:.2f}"


def gpu_slots(parallel: int, gpus: int, visible: str | None) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` value of each of ``parallel`` concurrent runs: the ``gpus``
    devices this process sees (named as in its own ``visible`` list, if any) in turn, or None
    for each without GPUs."""
    if not gpus:
        return [None] * parallel
    names = visible.split(",")[:gpus] if visible else [str(i) for i in range(gpus)]
    return [names[slot % gpus].strip() for slot in range(parallel)]


def write_summary(results: Sequence[RunResult], out: str | Path) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md``, (if any run succeeded) ``rate_distortion.png`` and
    (if any logged :data:`SCORE_METRICS`) ``disentanglement.png`` in ``out``; return their paths
    by kind ("csv", "markdown", "plot", "scores_plot")."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = [result for result in results if result.metrics]
    scores = [key for key in SCORE_METRICS if any(key in result.metrics for result in done)]
    columns = [*SUMMARY_METRICS, *scores]
    header = ["beta", *(key.replace("/", "_") for key in columns), "status"]
    rows = []
    for result in results:
        values = [_number(result.metrics[key]) if result.metrics and key in result.metrics
                  else "" for key in columns]
        status = "ok" if result.error is None else f"failed: {result.error} (log: {result.log})"
        rows.append([f"{result.beta:g}", *values, status])
    paths = {"csv": out / "summary.csv", "markdown": out / "summary.md"}
    with paths["csv"].open("w", newline="") as file:
        csv.writer(file).writerows([header, *rows])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    paths["markdown"].write_text("\n".join(lines) + "\n")
    if done:
        paths["plot"] = plot_rate_distortion(done, out / "rate_distortion.png")
    if scores:
        paths["scores_plot"] = plot_scores(done, scores, out / "disentanglement.png")
    return paths


def _number(value: float) -> str:
    if value.is_integer():
        return f"{value:g}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"  # scores lie in [0, 1]


def plot_scores(results: Sequence[RunResult], scores: Sequence[str], path: str | Path) -> Path:
    """Each of ``scores`` (disentanglement scores in [0, 1]) against β, one line per score over
    the runs that logged it, β on a log axis, as a PNG. Needs matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), dpi=100, layout="tight")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for key in scores:
        logged = sorted((result.beta, result.metrics[key]) for result in results
                        if key in result.metrics)
        axes.plot(*zip(*logged, strict=True), "o-", label=key.removeprefix("test/"))
    axes.set_xscale("log")
    axes.set_ylim(0, 1)
    axes.set_xlabel("β")
    axes.set_ylabel("score (test set)")
    axes.set_title("disentanglement by β")
    axes.legend()
    figure.savefig(path)
    return Path(path)


def plot_rate_distortion(results: Sequence[RunResult], path: str | Path) -> Path:
    """Rate (KL, x) against distortion (reconstruction, y) of each run, labelled with its β,
    as a PNG (Alemi et al. 2018, "Fixing a Broken ELBO"). Needs matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), dpi=100, layout="tight")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ordered = sorted(results, key=lambda result: result.beta)
    rates = [result.metrics["val/kl"] for result in ordered]
    distortions = [result.metrics["val/recon"] for result in ordered]
    axes.plot(rates, distortions, "o-", color="tab:blue")
    for result, rate, distortion in zip(ordered, rates, distortions, strict=True):
        axes.annotate(f"β={result.beta:g}", (rate, distortion), textcoords="offset points",
                      xytext=(5, 5), fontsize=9)
    axes.margins(0.2)  # room for the labels
    axes.set_xlabel("rate: KL(q(z|x) ‖ p(z)) (nats)")
    axes.set_ylabel("distortion: −log p(x|z) (nats)")
    axes.set_title("validation rate–distortion by β")
    figure.savefig(path)
    return Path(path)


def main(argv: list[str]) -> None:
    """``lightning-vae sweep``: arguments before ``--`` are the sweep's, after it ``fit``'s."""
    split = argv.index("--") if "--" in argv else len(argv)
    own, fit_args = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(
        prog="lightning-vae sweep",
        description="Train one model per β and summarise the rate–distortion trade-off. "
                    "Arguments after -- go to every `lightning-vae fit` run.")
    parser.add_argument("--config", action="append", required=True,
                        help="a fit configuration (recipe); repeat for several")
    parser.add_argument("--beta", required=True, type=_betas,
                        help="comma-separated β values, e.g. 0.25,1,4,16")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of the runs and the summary (default: sweeps/<group>)")
    parser.add_argument("--parallel", type=int, default=None,
                        help="runs at once (default: the number of GPUs, else 1)")
    parser.add_argument("--group", default=None,
                        help="W&B group of the runs (default: the name of --out)")
    args = parser.parse_args(own)
    if args.parallel is not None and args.parallel < 1:
        parser.error(f"--parallel {args.parallel}: expected at least 1")
    try:  # a mistyped recipe stops the sweep here, not in every run
        configs = [resolve_config(config) for config in args.config]
        fit_args = resolve_config_arguments(fit_args)
    except FileNotFoundError as error:
        parser.error(str(error))
    out = args.out or Path("sweeps") / (args.group or time.strftime("beta-%Y%m%d-%H%M%S"))
    results = run_sweep(configs, args.beta, out, fit_args, args.parallel, args.group,
                        report=lambda line: print(line, flush=True))
    paths = write_summary(results, out)
    print(paths["markdown"].read_text(), end="")
    print("wrote " + ", ".join(str(path) for path in paths.values()))
    if failed := [result for result in results if result.error]:
        for result in failed:
            print(f"β={result.beta:g} failed: {result.error}; log: {result.log}", file=sys.stderr)
        sys.exit(1)


def _betas(text: str) -> list[float]:
    try:
        return parse_betas(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
