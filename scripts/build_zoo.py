"""Train, test and export every zoo model (``lightning_vae.hub.zoo.ZOO``) with the package's own
commands, and record in each model card the exact commands, the hardware and the wall times.

    python scripts/build_zoo.py --mnist-dir /work/shared/data/mnist \\
        --fashion-mnist-dir /usr/share/datasets/fashion-mnist --dsprites-dir data \\
        [--only lightning-vae/mnist-vae]

For each model, from the repository root: ``lightning-vae fit`` (the recipe, its overrides
from ZOO, the data folder), ``lightning-vae test`` of the last checkpoint on the whole test
split (ELBO, the importance-weighted log-likelihood with the model's k unless k is 0, and on
dSprites the four disentanglement scores), then ``lightning-vae export`` with those numbers.
The folder replaces the zoo's copy only when every step succeeded. Nothing is edited by hand:
the numbers go from the test's metrics file to the export command, and the card gains a section
stating how the model was made.
"""

import argparse
import csv
import importlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import yaml

import lightning_vae
from lightning_vae.data import (
    DSpritesDataModule,
    IDXDataModule,
    ImageDataModule,
    locate_files,
    read_idx,
)
from lightning_vae.hub.card import DISENTANGLEMENT_SCORES, REPO_URL
from lightning_vae.hub.zoo import CARD_FILE, ZOO, ZOO_ROOT, ZooModel
from lightning_vae.training.checkpoints import datamodule_class, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "lightning-vae"
QUICK_TRIAL = ("--trainer.max_epochs 1 --trainer.limit_train_batches 20 "
               "--trainer.limit_val_batches 2 --trainer.limit_test_batches 2")
"""``--extra-args`` for a trial of the whole build in seconds (``--trainer.max_steps`` alone
stops before the first validation, whose ELBO the card states)."""


RENDERED_DSPRITES = (
    "The training and test images are lightning-vae's re-rendering of the dSprites factor "
    "grid (`lightning_vae.data.dsprites_render`: the official 737 280 combinations of shape, "
    "scale, orientation and position, with the official factor values, drawn by our own "
    "rasterizer), not DeepMind's original pixels (the zoo asks for the re-rendering so that "
    "it builds with no network); scores on the original images may differ.")
"""What a card says of a model trained on ``DSpritesDataModule(source="rendered")``."""


def recipe_data(recipe: str) -> type[ImageDataModule]:
    """The datamodule class a recipe trains on."""
    module_name, _, name = yaml.safe_load((ROOT / recipe).read_text())["data"]["class_path"]\
        .rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def data_dir_for(recipe: str, dirs: dict[str, str | None]) -> str:
    """The data folder given for the recipe's data set (``dirs``: dataset name → folder)."""
    name = recipe_data(recipe).dataset_name
    if not dirs.get(name):
        raise SystemExit(f"{recipe} trains on {name}: pass its folder with "
                         f"--{name.replace('_', '-')}-dir")
    return dirs[name]


def test_set_size(recipe: str, data_dir: str, state: dict) -> int:
    """The number of test images of the recipe's data set: the test labels of an MNIST-layout
    data set in ``data_dir``, or the ``test_size`` the checkpoint ``state``'s datamodule held
    out of a generated one (dSprites)."""
    data = recipe_data(recipe)
    if issubclass(data, IDXDataModule):
        files = locate_files(data.spec, data_dir, download=False)
        return len(read_idx(files["test_labels"]))
    return int(state["datamodule_hyper_parameters"]["test_size"])


def command_line() -> list[str]:
    """How to start ``lightning-vae``: its console script beside this Python, or, where the
    package is on the path without being installed (a GPU machine's copy of the repository),
    ``python -m lightning_vae.cli``, which is the same command."""
    script = Path(sys.executable).with_name(COMMAND)
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lightning_vae.cli"]


def run(args: list[str], env: dict[str, str], log: Path) -> float:
    """Run ``lightning-vae ARGS`` in the repository root, its output appended to ``log``;
    returns its wall time in seconds."""
    shown_command = shlex.join([COMMAND, *args])
    print("$", shown_command, flush=True)
    start = time.perf_counter()
    with log.open("a") as output:
        output.write(f"$ {shown_command}\n")
        output.flush()
        process = subprocess.run([*command_line(), *args], cwd=ROOT, env=os.environ | env,
                                 stdout=output, stderr=subprocess.STDOUT)
    if process.returncode:
        raise RuntimeError(f"{shlex.join([COMMAND, *args[:3]])} ... failed with exit status "
                           f"{process.returncode}; its output is in {log}")
    return time.perf_counter() - start


def last_metrics(metrics_csv: Path, names: tuple[str, ...]) -> dict[str, float]:
    """The last logged value of each metric in a CSVLogger file."""
    values: dict[str, float] = {}
    if not metrics_csv.is_file():
        raise RuntimeError(f"{metrics_csv} was not written: the run logged no {names}; a fit "
                           "must end an epoch (validation) for the card's numbers")
    with metrics_csv.open() as f:
        for row in csv.DictReader(f):
            values |= {name: float(row[name]) for name in names if row.get(name)}
    if missing := sorted(set(names) - set(values)):
        raise RuntimeError(f"{metrics_csv} logged no {missing}")
    return values


def hardware(threads: int | None) -> str:
    """The machine the build ran on, in one sentence."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    torch_threads = threads or torch.get_num_threads()
    load = f", load average {os.getloadavg()[0]:.1f} at the start"  # Unix; the zoo builds there
    threads_text = f"{torch_threads} torch thread" + ("s" if torch_threads > 1 else "")
    return (f"{cpu}, {os.cpu_count()} CPU cores ({threads_text}{load}), {gpu}; "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def evaluation_note(model: ZooModel) -> str:
    """What the card's test numbers are beyond the ELBO: the importance-weighted bound's k, or
    that there is none, and where the disentanglement scores come from."""
    if model.iw_samples:
        note = f"""The test ELBO uses one posterior sample per image; the test log-likelihood is the
importance-weighted bound of Burda et al. (2016) with k={model.iw_samples} samples per image
(the k=5000 of the literature costs {5000 // model.iw_samples} times as much and gives a slightly
higher, tighter, bound)."""
    else:
        note = """The test ELBO uses one posterior sample per image. No log-likelihood was computed
(`--model.iw_samples 0`): this model is for its latents, not its density."""
    if model.disentanglement:
        note += """
The disentanglement scores are those of the posterior means of the same test images, each
computed once on all of them with its seeded draws (seed 0)."""
    return note


def provenance(model: ZooModel, commands: list[tuple[str, list[str], float]], env_prefix: str,
               machine: str, n_test: int, trained: str, data_note: str) -> str:
    """The card section stating how the model was made."""
    lines = "\n".join(env_prefix + shlex.join([COMMAND, *args]) for _, args, _ in commands)
    times = "\n".join(f"| {step} | {duration(seconds)} |" for step, _, seconds in commands)
    total = sum(seconds for _, _, seconds in commands)
    data_note = f"\n{data_note}\n" if data_note else ""
    return f"""
## How this model was made

Built by `scripts/build_zoo.py` of lightning-vae {lightning_vae.__version__} with the package's
own commands and no hand edits, from the recipe
[`{model.recipe}`]({REPO_URL}/blob/main/{model.recipe}), run from the repository root:

```bash
{lines}
```

| Step | Wall time |
|---|---|
{times}
| total | {duration(total)} |

Hardware: {machine}. Trained for {trained}.
{data_note}
The test numbers are on all {n_test} test images, for the last checkpoint (the one exported).
{evaluation_note(model)}
"""


def training_length(state: dict) -> str:
    """How long the checkpoint ``state`` was trained, in epochs and optimizer steps (a fit
    limited by ``--trainer.max_time`` ends wherever the time runs out)."""
    epochs = state["epoch"] + 1
    return f"{epochs} epoch{'s' * (epochs > 1)} ({state['global_step']} optimizer steps)"


def data_note(state: dict) -> str:
    """What the card must say of the checkpoint ``state``'s data beyond its name and options:
    that re-rendered dSprites images are not the original ones."""
    data = state.get("datamodule_hyper_parameters") or {}
    rendered = datamodule_class(data) is DSpritesDataModule and data.get("source") == "rendered"
    return RENDERED_DSPRITES if rendered else ""


def test_metric_names(model: ZooModel) -> tuple[str, ...]:
    """The metrics the test run of ``model`` must log for its card."""
    return ("test/elbo", *(("test/nll_iw",) if model.iw_samples else ()),
            *(f"test/{score.metric}" for score in DISENTANGLEMENT_SCORES
              if model.disentanglement))


def card_arguments(model: ZooModel, scores: dict[str, float]) -> list[str]:
    """The export options that put the test run's ``scores`` on the card."""
    arguments = ["--test-elbo", f"{scores['test/elbo']:.4f}"]
    if model.iw_samples:
        arguments += ["--test-log-likelihood", f"{-scores['test/nll_iw']:.4f}"]
    arguments += ["--log-likelihood-samples", str(model.iw_samples)]
    for score in DISENTANGLEMENT_SCORES:
        if f"test/{score.metric}" in scores:
            arguments += [score.option, f"{scores[f'test/{score.metric}']:.4f}"]
    return arguments


def shown(path: Path) -> str:
    """``path`` as the commands show it: relative to the repository root when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def build(model: ZooModel, data_dir: str, work: Path, zoo_root: Path, threads: int | None,
          extra: list[str]) -> Path:
    """Fit, test and export ``model``, then put its folder into ``zoo_root``; returns it."""
    run_dir = work / model.folder.name
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    machine = hardware(threads)
    common = ["--data.init_args.data_dir", data_dir, "--data.init_args.download", "false",
              "--model.iw_samples", str(model.iw_samples),
              "--trainer.enable_progress_bar", "false", "--trainer.logger", "CSVLogger"]
    fit_dir, test_dir, hub = run_dir / "fit", run_dir / "test", run_dir / "hub"
    fit = ["fit", "--config", model.recipe, *model.overrides, *model.data_overrides, *common,
           "--trainer.default_root_dir", shown(fit_dir),
           "--trainer.logger.save_dir", shown(fit_dir), *extra]
    checkpoint = fit_dir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    test = ["test", "--config", model.recipe, *model.data_overrides, *common,
            "--ckpt_path", shown(checkpoint),
            "--trainer.default_root_dir", shown(test_dir),
            "--trainer.logger.save_dir", shown(test_dir), *extra]
    log = run_dir.with_suffix(".log")
    run_dir.mkdir(parents=True)
    log.unlink(missing_ok=True)
    commands = [("fit", fit, run(fit, env, log)), ("test", test, run(test, env, log))]
    val = last_metrics(fit_dir / "lightning_logs" / "version_0" / "metrics.csv", ("val/elbo",))
    scores = last_metrics(test_dir / "lightning_logs" / "version_0" / "metrics.csv",
                          test_metric_names(model))
    export = ["export", shown(checkpoint), shown(hub), "--repo-id", model.name,
              "--val-elbo", f"{val['val/elbo']:.4f}", *card_arguments(model, scores),
              "--trust-checkpoint"]  # written by this fit: its validation images may be read
    commands.append(("export", export, run(export, env, log)))
    prefix = "".join(f"{name}={value} " for name, value in env.items())
    state = load_checkpoint(checkpoint)
    with (hub / CARD_FILE).open("a", encoding="utf-8") as card:
        card.write(provenance(model, commands, prefix, machine,
                              test_set_size(model.recipe, data_dir, state),
                              training_length(state),
                              data_note(state)))
    target = zoo_root / model.folder.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(hub, target)
    print(f"wrote {target}: " + ", ".join(f"{name} {value:.4f}" for name, value in scores.items()),
          flush=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist-dir", help="folder holding the four MNIST IDX files")
    parser.add_argument("--fashion-mnist-dir", help="folder holding the Fashion-MNIST IDX files")
    parser.add_argument("--dsprites-dir",
                        help="data_dir of dSprites: the official .npz, or the re-rendering's "
                        "cache in its dsprites/ folder (made by the fit when missing: 3 GB, "
                        "or once with DSpritesDataModule(DIR, source='rendered').prepare_data())")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[m.name for m in ZOO],
                        help="build only these zoo models (default: all)")
    parser.add_argument("--threads", type=int,
                        help="torch threads (OMP_NUM_THREADS) of the commands; on a shared "
                             "machine 1 can be faster than all cores")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "zoo",
                        help="folder for the runs' logs and checkpoints")
    parser.add_argument("--zoo-root", type=Path, default=ZOO_ROOT,
                        help="where the finished model folders go (default: the package's zoo)")
    parser.add_argument("--extra-args", default="",
                        help="more arguments for every fit and test command, for a quick trial "
                             "(whole epochs: the card needs the validation ELBO of the epoch's "
                             f"end): --extra-args='{QUICK_TRIAL}'")
    parser.add_argument("--jobs", type=int, default=1,
                        help="models built at once (on one GPU, small models leave it idle "
                             "between their steps, so several share it well)")
    args = parser.parse_args(argv)
    dirs = {"mnist": args.mnist_dir, "fashion_mnist": args.fashion_mnist_dir,
            "dsprites": args.dsprites_dir}
    models = [model for model in ZOO if not args.only or model.name in args.only]
    data_dirs = [data_dir_for(model.recipe, dirs) for model in models]  # fail before training
    def build_one(model: ZooModel, data_dir: str) -> None:
        build(model, data_dir, args.work.resolve(), args.zoo_root.resolve(), args.threads,
              shlex.split(args.extra_args))

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        builds = {model.name: pool.submit(build_one, model, data_dir)
                  for model, data_dir in zip(models, data_dirs, strict=True)}
    failed = {name: future.exception() for name, future in builds.items() if future.exception()}
    for name, error in failed.items():
        print(f"{name}: not built: {error}", file=sys.stderr)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
