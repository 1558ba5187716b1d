"""Training speed: the package's fast path against the pytorch/examples VAE pipeline.

Both train the same model (the default recipe's architecture, or ``--model mlp``), at the same
batch size, with Adam at the recipe's learning rate, on the real MNIST training images:

- example (a): pytorch/examples' ``vae/main.py`` pipeline, without torchvision: a per-sample
  ``Dataset`` (uint8 image → PIL image → float tensor / 255, as ``datasets.MNIST`` with
  ``transforms.ToTensor()``), a ``DataLoader`` with one worker (``--example-workers``), pinned
  memory on CUDA, shuffling, and a plain loop: ``zero_grad``, forward, loss, ``backward``,
  ``train_loss += loss.item()``, ``optimizer.step()``. Torch's default Adam, grey-level images;
  the loss (Bernoulli from logits plus KL) is averaged over the batch as the package does.
- package (b): ``lightning-vae`` itself, built from ``recipes/mnist_vae.yaml`` (plus ``--config``
  fragments; on CUDA ``recipes/trainer/gpu_fast.yaml`` by default) with the batch size set:
  ``VAE`` + ``MNISTDataModule`` (device-resident batches, dynamic binarization) + ``Trainer``
  with the recipe's callbacks, logging and progress bar. Validation is off (not timed in (a)).
- with ``--loop``, (a'): (b)'s model, settings (precision, compilation) and device-resident
  batches stepped by a hand-written loop instead of the Trainer: the floor under (b), so the
  difference is what the Trainer costs per step.
- variants, ``--variant "NAME:SETTING,..."``: (b), or (a) with ``base=a``, or (a') with
  ``base=loop``, with settings changed: CLI overrides of (b) (``model.channels_last=false``),
  ``threads=N`` (torch threads), ``workers=N`` ((a)'s DataLoader workers), ``env.NAME=VALUE`` or
  ``drop=CALLBACK`` (a recipe callback of (b), by class name, such as ``ReuseFreedMemory``).

``--model tiny`` (an MLP with 8 hidden units and 2 latents) makes a step almost all overhead:
run on the CPU with a small batch, it shows what the per-step Python of each path costs, which
is what bounds the default model's steps on a GPU.

Each measurement runs in a fresh process: a warm-up epoch, then ``--epochs`` timed epochs, the
device synchronised at both ends of each. A round runs every pipeline once, in an order that
rotates between rounds; the speed-up b/a (images per second) is taken within each round, so
slow phases of a shared machine hit both sides. On the CPU, "best b/a" compares the fastest
windows of 5 batches over all rounds: an estimate for a machine without other users. Seconds
per epoch are for 60 000 images (the example's epoch; the recipe holds 5 000 out for
validation). Peak memory: the process's maximum resident set (``getrusage``; ``+N w``: (a)'s
worker process), and on CUDA ``torch.cuda.max_memory_allocated``. ``--quick`` times
``--limit-batches`` batches per epoch (default 25) instead of whole epochs: about a minute on
two CPU cores, with (a)'s worker start-up at each epoch weighing a little more than in whole
epochs. ``--threads N`` sets torch's threads in every pipeline. A measurement that fails, or
outlasts ``--child-timeout`` seconds, is reported and left out; the others still are.

Usage::

    python benchmarks/train_throughput.py --quick                     # CPU, about a minute
    python benchmarks/train_throughput.py --epochs 2 --rounds 2       # CPU, whole epochs
    python benchmarks/train_throughput.py --device cuda --epochs 3    # GPU: gpu_fast.yaml
    python benchmarks/train_throughput.py --device cuda --epochs 1 --no-example  # b/a' only
    python benchmarks/train_throughput.py --quick --variant "no-fused:model.fused_optimizer=false"
    python benchmarks/train_throughput.py --quick --variant "(a) 0 workers:base=a,workers=0"
    python benchmarks/train_throughput.py --model tiny --batch-size 16 --threads 1 --quick \
        --limit-batches 300 --loop                                    # per-step overhead
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from flops import device_peak, step_flops
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
RECIPE = ROOT / "recipes" / "mnist_vae.yaml"
GPU_FRAGMENT = ROOT / "recipes" / "trainer" / "gpu_fast.yaml"
MODELS = {  # --model: changes to the recipe's conv model
    "conv": {},
    "mlp": {"arch": "mlp", "arch_options": None},
    "tiny": {"arch": "mlp", "arch_options": {"hidden_dims": [8]}, "latent_dim": 2},
    "ladder": {"arch": "ladder", "arch_options": yaml.safe_load(
        (ROOT / "recipes" / "mnist_hvae.yaml").read_text())["model"]["arch_options"]},
    "iwae5": {"objective": {"name": "iwae", "samples": 5}},
    "iwae50": {"objective": {"name": "iwae", "samples": 50}},
}
EXAMPLE_MODELS = ("conv", "mlp", "tiny")
"""The models the pytorch/examples pipeline (a) can train: one stochastic layer, the ELBO. For
the others (the hierarchical VAE, the IWAE objective) the ratios are against (a')."""
EPOCH_IMAGES = 60_000
WINDOW = 5  # batches
LOOP_RATIO = "b/a'"  # column title: the framework's cost per step


@dataclass
class Spec:
    """One pipeline to measure in a child process."""

    name: str
    kind: str  # "example", "loop" or "package"
    model: str
    batch_size: int
    epochs: int
    limit_batches: int | None
    device: str
    data_dir: str
    example_workers: int = 1
    configs: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    threads: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    drop_callbacks: list[str] = field(default_factory=list)  # class names, removed from (b)


@dataclass
class Measurement:
    """What a child reports: timed epochs and peak memory."""

    seconds: list[float]
    images: list[int]
    best_images_per_second: float | None  # of the fastest window of WINDOW batches (CPU only)
    rss_mb: float
    children_rss_mb: float
    cuda_peak_mb: float | None

    @property
    def images_per_second(self) -> float:
        return sum(self.images) / sum(self.seconds)


# --- the clock -------------------------------------------------------------------------------


class EpochClock:
    """Seconds and images of each epoch after the first (the warm-up), device synchronised;
    on the CPU also the speed of the fastest window of ``WINDOW`` batches, an estimate of what
    the machine gives without other users."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: list[float] = []
        self.images: list[int] = []
        self.windows: list[float] = []  # images per second
        self._start = self._window_start = 0.0
        self._count = self._window_count = self._batches = 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        self._sync()
        self._start = self._window_start = time.perf_counter()
        self._count = self._window_count = self._batches = 0

    def add(self, images: int) -> None:
        self._count += images
        self._window_count += images
        self._batches += 1
        if self.device.type == "cpu" and self.seconds and self._batches % WINDOW == 0:
            now = time.perf_counter()
            self.windows.append(self._window_count / (now - self._window_start))
            self._window_start, self._window_count = now, 0

    def stop(self) -> None:
        self._sync()
        self.seconds.append(time.perf_counter() - self._start)
        self.images.append(self._count)

    def measurement(self) -> Measurement:
        cuda = self.device.type == "cuda"
        return Measurement(
            seconds=self.seconds[1:],
            images=self.images[1:],
            best_images_per_second=max(self.windows, default=None),
            rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            children_rss_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            cuda_peak_mb=torch.cuda.max_memory_allocated(self.device) / 2**20 if cuda else None,
        )


# --- (a) the pytorch/examples pipeline -------------------------------------------------------


def to_tensor(picture: Image.Image) -> Tensor:
    """torchvision's ``transforms.ToTensor`` for a grey PIL image: (1, H, W) float32 in [0, 1]."""
    array = np.array(picture, np.uint8, copy=True)
    image = torch.from_numpy(array).view(picture.size[1], picture.size[0], 1)
    return image.permute(2, 0, 1).contiguous().to(torch.float32).div(255)


class ExampleMNIST(Dataset):
    """torchvision's ``datasets.MNIST`` item access: a PIL image per sample, then ToTensor."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.data, self.targets = images, labels

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, target = self.data[index], int(self.targets[index])
        return to_tensor(Image.fromarray(image.numpy())), target


class ExampleVAE(nn.Module):
    """The example's VAE class around the package's encoder and decoder (the same model)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return self.decoder(self.reparameterize(mu, logvar)), mu, logvar


def example_loss(logits: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """The example's BCE + KLD, from logits, in nats per example."""
    bce = functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kld) / len(x)


def recipe_model(model: str) -> dict:
    """The recipe's model arguments, with ``--model mlp`` swapping in the MLP's defaults and
    ``--model tiny`` an MLP so small (8 hidden units, 2 latents) that a step is all overhead."""
    args = yaml.safe_load(RECIPE.read_text())["model"]
    return {**args, **MODELS.get(model, {})}


def merge(base: dict, changes: dict) -> dict:
    """``base`` updated by ``changes``, nested dictionaries merged key by key."""
    merged = dict(base)
    for key, value in changes.items():
        both_dicts = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if both_dicts else value
    return merged


def package_settings(spec: Spec) -> dict:
    """The settings (b) runs with: the recipe, its fragments and the overrides, merged."""
    settings = yaml.safe_load(RECIPE.read_text())
    settings["model"] = recipe_model(spec.model)
    for config in spec.configs:
        settings = merge(settings, yaml.safe_load(Path(config).read_text()))
    for override in spec.overrides:
        dotted, _, value = override.partition("=")
        *parents, leaf = dotted.split(".")
        change = {leaf: yaml.safe_load(value)}
        for parent in reversed(parents):
            change = {parent: change}
        settings = merge(settings, change)
    return settings


def run_example(spec: Spec) -> Measurement:
    from lightning_vae.data.idx import read_idx
    from lightning_vae.model.nets import build_architecture

    device = torch.device(spec.device)
    data_dir = Path(spec.data_dir)
    images = torch.from_numpy(read_idx(data_dir / "train-images-idx3-ubyte.gz"))
    labels = torch.from_numpy(read_idx(data_dir / "train-labels-idx1-ubyte.gz")).long()
    loader = DataLoader(
        ExampleMNIST(images, labels),
        batch_size=spec.batch_size,
        shuffle=True,
        num_workers=spec.example_workers,
        pin_memory=device.type == "cuda",
    )
    args = recipe_model(spec.model)
    torch.manual_seed(0)
    encoder, decoder = build_architecture(args["arch"], (1, 28, 28), args["latent_dim"],
                                          out_channels=1, options=args.get("arch_options"))
    model = ExampleVAE(encoder, decoder).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args["lr"])
    clock = EpochClock(device)
    for _ in range(1 + spec.epochs):
        model.train()
        train_loss = 0.0
        clock.start()
        for data, _ in itertools.islice(loader, spec.limit_batches):
            data = data.to(device)
            optimizer.zero_grad()
            logits, mu, logvar = model(data)
            loss = example_loss(logits, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            clock.add(len(data))
        clock.stop()
    return clock.measurement()


# --- (a') a hand-written loop over the package's batches -------------------------------------


@dataclass
class LoopPipeline:
    """What (a') steps: its batches, the step itself (a function of the batch's images, or
    the :class:`GraphedTrainingPass` that is one where (b) sets ``cuda_graph``) and the
    autocast it runs under."""

    loader: Iterable[tuple[Tensor, Tensor]]
    training_step: Callable[[Tensor], object]
    device: torch.device
    bf16: bool

    def step(self, x: Tensor) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            self.training_step(x)


def loop_pipeline(spec: Spec) -> LoopPipeline:
    """The floor under (b): (b)'s model, optimizer, speed options, precision and batches
    (device-resident, dynamically binarized), stepped by a plain loop instead of the Trainer.
    Each step computes what ``VAE.training_step`` does (``_training_terms``, compiled when
    (b) is, then ``_objective``; replayed as a CUDA graph with the optimizer's step when (b)
    sets ``cuda_graph``), without the logging and the reseeding of the noise generator around it."""
    from lightning_vae import VAE
    from lightning_vae.data.device_loader import DeviceLoader
    from lightning_vae.data.idx import read_idx
    from lightning_vae.training.cuda_graph import GraphedTrainingPass
    from lightning_vae.training.noise import noise_generator

    settings = package_settings(spec)
    device = torch.device(spec.device)
    images = torch.from_numpy(read_idx(Path(spec.data_dir) / "train-images-idx3-ubyte.gz"))
    data = settings["data"]["init_args"]
    loader = DeviceLoader(images[:, None], torch.zeros(len(images), dtype=torch.long),
                          spec.batch_size, shuffle=True, drop_last=data.get("drop_last", False),
                          binarize=data.get("binarize") == "dynamic", device=device)
    torch.manual_seed(0)
    model = VAE(**settings["model"]).to(device).train()
    optimizer = model.configure_optimizers()
    model._train_generator = noise_generator(device).manual_seed(0)
    bf16 = str(settings["trainer"].get("precision")).startswith("bf16")

    def training_pass(x: Tensor) -> dict[str, Tensor]:
        return model._objective(model._training_terms(x))

    def forward_backward(x: Tensor) -> None:
        optimizer.zero_grad()
        training_pass(x)["loss"].backward()

    def training_step(x: Tensor) -> None:
        forward_backward(x)
        optimizer.step()

    if settings["model"].get("cuda_graph"):  # the optimizer's step inside the graph, as in (b)
        training_step = GraphedTrainingPass(training_pass, model.parameters(),
                                            optimizer=optimizer)
    return LoopPipeline(loader, training_step, device, bf16)


def run_loop(spec: Spec) -> Measurement:
    """Time (a'), :func:`loop_pipeline`."""
    loop = loop_pipeline(spec)
    clock = EpochClock(loop.device)
    for _ in range(1 + spec.epochs):
        clock.start()
        for x, _ in itertools.islice(loop.loader, spec.limit_batches):
            loop.step(x)
            clock.add(len(x))
        clock.stop()
    return clock.measurement()


# --- (b) the package -------------------------------------------------------------------------


def package_argv(spec: Spec, root: str) -> list[str]:
    """``lightning-vae`` arguments: the recipe, fragments, then this measurement's settings."""
    argv = ["--config", str(RECIPE)]
    for config in spec.configs:
        argv += ["--config", config]
    argv += [
        f"--data.init_args.data_dir={spec.data_dir}",
        "--data.init_args.download=false",
        f"--data.init_args.batch_size={spec.batch_size}",
        f"--trainer.accelerator={'gpu' if spec.device.startswith('cuda') else spec.device}",
        f"--trainer.max_epochs={1 + spec.epochs}",
        "--trainer.limit_val_batches=0",
        f"--trainer.default_root_dir={root}",
    ]
    if spec.limit_batches:
        argv.append(f"--trainer.limit_train_batches={spec.limit_batches}")
    if spec.model in MODELS:
        model = recipe_model(spec.model)
        argv += [f"--model.arch={model['arch']}", f"--model.latent_dim={model['latent_dim']}",
                 f"--model.arch_options={json.dumps(model['arch_options'])}"]
        if "objective" in model:
            argv.append(f"--model.objective={json.dumps(model['objective'])}")
    return argv + [f"--{override}" for override in spec.overrides]


def run_package(spec: Spec) -> Measurement:
    import pytorch_lightning as pl

    from lightning_vae.cli import run_lightning

    class Clock(pl.Callback):
        def __init__(self, clock: EpochClock) -> None:
            self.clock = clock

        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.clock.start()

        def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                               outputs: object, batch: tuple[Tensor, Tensor], batch_idx: int
                               ) -> None:
            self.clock.add(len(batch[0]))
            if batch_idx + 1 == trainer.num_training_batches:
                self.clock.stop()

    with tempfile.TemporaryDirectory() as root:
        cli = run_lightning(package_argv(spec, root), run=False)
        clock = EpochClock(cli.trainer.strategy.root_device)
        cli.trainer.callbacks = [callback for callback in cli.trainer.callbacks
                                 if type(callback).__name__ not in spec.drop_callbacks]
        cli.trainer.callbacks.append(Clock(clock))
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return clock.measurement()


# --- rounds of child processes ---------------------------------------------------------------


def parse_variant(text: str, example: Spec, package: Spec, loop: Spec) -> Spec:
    """``"NAME:SETTING,..."`` → a copy of (b), or of (a) with ``base=a`` or of (a') with
    ``base=loop``, changed by each setting: ``threads=N``, ``workers=N`` (of (a)),
    ``env.NAME=VALUE``, ``drop=CALLBACK`` (a recipe callback's class name, taken out of (b)) or a
    CLI override of (b) such as ``model.channels_last=false``."""
    name, _, settings = text.partition(":")
    pairs = [s.strip().partition("=") for s in settings.split(",") if s.strip()]
    if bad := [key for key, sep, _ in pairs if not sep]:
        raise SystemExit(f"--variant {text!r}: {bad} not KEY=VALUE")
    bases = {"a": example, "loop": loop, "b": package}
    base = bases[next((value for key, _, value in pairs if key == "base"), "b")]
    spec = Spec(**{**asdict(base), "name": name, "env": dict(base.env)})
    for key, _, value in pairs:
        if key == "threads":
            spec.threads = int(value)
        elif key == "workers":
            spec.example_workers = int(value)
        elif key.startswith("env."):
            spec.env[key[4:]] = value
        elif key == "drop":
            spec.drop_callbacks.append(value)
        elif key != "base":
            spec.overrides.append(f"{key}={value}")
    return spec


def measure(spec: Spec, timeout: float | None) -> Measurement | None:
    """Run ``spec`` in a fresh Python process and read back its measurement; None, with the
    reason printed, when it fails or outlasts ``timeout`` seconds, so that one broken variant
    does not cost the measurements of the others."""
    env = {**os.environ, **spec.env, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, __file__, "--child", json.dumps(asdict(spec))]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{spec.name}: stopped after --child-timeout {timeout:g} s", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"{spec.name} failed (exit {done.returncode}):\n{done.stderr[-4000:]}",
              file=sys.stderr)
        return None
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def child(spec_json: str) -> None:
    spec = Spec(**json.loads(spec_json))
    if spec.threads:
        torch.set_num_threads(spec.threads)
    if spec.kind == "loop":  # (b)'s CPU setting, which lightning-vae makes when it starts
        from lightning_vae.training.subnormals import flush_subnormals

        flush_subnormals()
    run = {"example": run_example, "loop": run_loop, "package": run_package}[spec.kind]
    result = run(spec)
    print(json.dumps(asdict(result)))


def describe_machine(device: str, threads: int | None) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}"
    return (f"CPU: {os.cpu_count()} cores ({torch.backends.cpu.get_cpu_capability()}), "
            f"torch {torch.__version__}, {threads or torch.get_num_threads()} torch threads")


def ratio_to(results: list[Measurement | None], base: list[Measurement | None] | None) -> str:
    """The median over rounds of images/s against ``base`` of the same round, or "-"."""
    if base is None:
        return f"{'-':>6s}"
    ratios = [m.images_per_second / b.images_per_second
              for m, b in zip(results, base, strict=True) if m and b]
    return f"{statistics.median(ratios):5.2f}x" if ratios else f"{'-':>6s}"


def report(specs: list[Spec], results: dict[str, list[Measurement | None]],
           flops_per_image: float, peak: float | None) -> None:
    """One line per pipeline: medians over rounds (and the time per step they give), achieved
    FLOP/s and the fraction of the device's peak, speed-ups against (a) and (a') of the same
    round (the latter is the framework's cost per step: ours / a'), the fastest windows'
    speed-up, and peak memory (``+N w``: (a)'s worker process). Rounds where either side
    failed are left out of that line."""
    baseline = results[specs[0].name]
    loop = next((results[s.name] for s in specs if s.kind == "loop" and s.name.startswith("(a')")),
                None)
    best_baseline = max((m.best_images_per_second or 0) for m in baseline if m)
    print(f"{'pipeline':36s} {'s/epoch':>8s} {'images/s':>9s} {'ms/step':>8s} {'GFLOP/s':>8s} "
          f"{'% peak':>6s} {'b/a':>6s} {'b/a range':>12s} {LOOP_RATIO:>6s} {'best b/a':>8s} "
          f"{'peak RSS MB':>15s} {'CUDA MB':>8s}")
    for spec in specs:
        pairs = [(m, a) for m, a in zip(results[spec.name], baseline, strict=True) if m and a]
        if not pairs:
            print(f"{spec.name:36s} failed in every round (see above)")
            continue
        runs = [m for m, _ in pairs]
        speed = statistics.median(m.images_per_second for m in runs)
        ratios = [m.images_per_second / a.images_per_second for m, a in pairs]
        best = max((m.best_images_per_second or 0) for m in runs)
        best_ratio = f"{best / best_baseline:7.2f}x" if best_baseline else f"{'-':>8s}"
        memory = f"{max(m.rss_mb for m in runs):.0f}"
        if spec.kind == "example" and spec.example_workers:
            memory += f" (+{max(m.children_rss_mb for m in runs):.0f} w)"
        cuda = runs[0].cuda_peak_mb
        achieved = speed * flops_per_image
        fraction = f"{100 * achieved / peak:5.1f}%" if peak else f"{'-':>6s}"
        print(f"{spec.name:36s} {EPOCH_IMAGES / speed:8.1f} {speed:9.0f} "
              f"{1000 * spec.batch_size / speed:8.2f} {achieved / 1e9:8.1f} {fraction} "
              f"{statistics.median(ratios):5.2f}x {min(ratios):5.2f}-{max(ratios):.2f}x "
              f"{ratio_to(results[spec.name], loop)} "
              f"{best_ratio} {memory:>15s} {'-' if cuda is None else f'{cuda:.0f}':>8s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(MODELS), default="conv")
    parser.add_argument("--loop", action=argparse.BooleanOptionalAction, default=True,
                        help="time (a'): (b)'s model and batches in a hand-written loop "
                             "(default; --no-loop leaves it out)")
    parser.add_argument("--example", action=argparse.BooleanOptionalAction, default=True,
                        help="time (a), the pytorch/examples pipeline (default; --no-example "
                             "leaves it out, and b/a is then against (a'))")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after a warm-up")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="time --limit-batches per epoch")
    parser.add_argument("--limit-batches", type=int, default=25)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", type=Path, default=SHARED_MNIST)
    parser.add_argument("--example-workers", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads of every pipeline")
    parser.add_argument("--config", action="append", type=Path,
                        help="recipe fragments for (b); default on CUDA: gpu_fast.yaml")
    parser.add_argument("--variant", action="append", default=[],
                        help='another (b), or (a) with base=a: "NAME:model.channels_last='
                             'false,threads=1,env.X=V"')
    parser.add_argument("--child-timeout", type=float,
                        help="seconds after which one measurement is stopped and left out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    if not (args.data_dir / "train-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"no MNIST in {args.data_dir}; pass --data-dir with the four .gz files")
    configs = args.config
    if configs is None:
        configs = [GPU_FRAGMENT] if args.device.startswith("cuda") else []
    common = dict(model=args.model, batch_size=args.batch_size, epochs=args.epochs,
                  limit_batches=args.limit_batches if args.quick else None, device=args.device,
                  data_dir=str(args.data_dir), example_workers=args.example_workers,
                  threads=args.threads)
    fragments = "+".join(Path(c).stem for c in configs)
    example = Spec(name=f"(a) pytorch/examples, {args.example_workers} worker",
                   kind="example", **common)
    loop = Spec(name="(a') hand-written loop, (b)'s batches", kind="loop",
                configs=[str(c) for c in configs], **common)
    package = Spec(name="(b) lightning-vae" + (f" +{fragments}" if fragments else ""),
                   kind="package", configs=[str(c) for c in configs], **common)
    specs = [example, loop, package] if args.loop else [example, package]
    if args.model not in EXAMPLE_MODELS or not args.example:
        why = ("--no-example" if args.model in EXAMPLE_MODELS
               else f"the pytorch/examples pipeline has no {args.model} model")
        print(f"(a) not run: {why}; b/a is against (a')")
        specs = [loop, package]
    specs += [parse_variant(text, example, package, loop) for text in args.variant]

    results: dict[str, list[Measurement | None]] = {spec.name: [] for spec in specs}
    for round_ in range(args.rounds):
        shift = round_ % len(specs)
        for spec in specs[shift:] + specs[:shift]:
            result = measure(spec, args.child_timeout)
            results[spec.name].append(result)
            speed = f"{result.images_per_second:.0f} images/s" if result else "failed"
            print(f"  round {round_ + 1}: {spec.name}: {speed}", flush=True)
    if not any(results[specs[0].name]):
        raise SystemExit(f"{specs[0].name} failed in every round: nothing to compare against")

    timed = (f"{args.limit_batches} batches per epoch, extrapolated" if args.quick
             else "whole epochs")
    settings = package_settings(package)
    flops = step_flops(settings["model"], args.batch_size)
    bf16 = str(settings["trainer"].get("precision")).startswith("bf16")
    peak, peak_how = device_peak(args.device, bf16)
    print(f"\nMNIST, {args.model} VAE, batch {args.batch_size}, {args.epochs} timed epochs after "
          f"a warm-up ({timed}), {args.rounds} rounds; "
          f"{describe_machine(args.device, args.threads)}")
    print(f"model: {flops / 1e9:.2f} GFLOP per training step (forward + backward, "
          f"FlopCounterMode); peak: {peak_how}")
    report(specs, results, flops / args.batch_size, peak)


if __name__ == "__main__":
    main()
